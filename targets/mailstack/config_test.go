package mailstack_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/targets/mailstack"
)

func TestProfiles(t *testing.T) {
	t.Parallel()
	rem := mailstack.DefaultConfig()
	require.Equal(t, mailstack.ProfileRemediated, rem.Profile)
	require.True(t, rem.Scan.Defer.Enabled)
	require.Len(t, rem.Engines, 3)
	require.Equal(t, "av-engine-2", rem.Engines[1].Name)
	require.Equal(t, "127.0.0.1:2525", rem.SMTP.Listen)

	inc, err := mailstack.ProfileConfig(mailstack.ProfileIncident)
	require.NoError(t, err)
	require.False(t, inc.Scan.Defer.Enabled)
	require.Greater(t, inc.Scan.Timeout, rem.Scan.Timeout)
	require.Greater(t, inc.Scan.Retries, rem.Scan.Retries)

	_, err = mailstack.ProfileConfig("remidiated")
	require.EqualError(t, err, `unknown profile "remidiated"; did you mean "remediated"?`)
}

func TestParseConfigOverridesTheProfile(t *testing.T) {
	t.Parallel()
	cfg, err := mailstack.ParseConfig("c.yaml", []byte(`
profile: incident
scan:
  workers: 4
  timeout: 45s
engines:
  - name: fast
  - name: slow
    delay: 2s
    delay-match: EICAR
`), "")
	require.NoError(t, err)
	require.Equal(t, mailstack.ProfileIncident, cfg.Profile)
	require.Equal(t, 4, cfg.Scan.Workers)
	require.Equal(t, 45*time.Second, cfg.Scan.Timeout)
	require.Equal(t, 5, cfg.Scan.Retries, "unset fields keep the profile's value")
	require.Len(t, cfg.Engines, 2)
	require.Equal(t, "127.0.0.1:0", cfg.Engines[0].Listen)
	require.Equal(t, 2*time.Second, cfg.Engines[1].Delay)

	// A profile given by the caller (the --profile flag) wins over the file's.
	cfg, err = mailstack.ParseConfig("c.yaml", []byte("profile: incident\n"), mailstack.ProfileRemediated)
	require.NoError(t, err)
	require.True(t, cfg.Scan.Defer.Enabled)

	cfg, err = mailstack.ParseConfig("empty.yaml", nil, "")
	require.NoError(t, err)
	require.Equal(t, mailstack.DefaultConfig(), cfg)
}

// TestInvalidConfigFiles checks the exact error for every file in
// testdata/invalid: the file, line, column and field, and a suggestion.
func TestInvalidConfigFiles(t *testing.T) {
	t.Parallel()
	want := map[string]string{
		"unknown-field.yaml":   `testdata/invalid/unknown-field.yaml:3:3: scan.wrokers: unknown field "wrokers"; valid fields here: workers, timeout, retries, defer, interceptor, on-unscannable; did you mean "workers"?`,
		"bad-duration.yaml":    `testdata/invalid/bad-duration.yaml:2:12: scan.timeout: "fast" is not a duration; use a number with a unit, such as 500ms, 30s or 2m`,
		"wrong-type.yaml":      `testdata/invalid/wrong-type.yaml:3:12: scan.workers: cannot use string "many" here: want a whole number`,
		"bad-profile.yaml":     `testdata/invalid/bad-profile.yaml:1:1: profile: unknown profile "incidnet"; did you mean "incident"?`,
		"bad-values.yaml":      "2 errors:\n  testdata/invalid/bad-values.yaml:3:3: scan.workers: must be at least 1, got 0\n  testdata/invalid/bad-values.yaml:7:5: engines[1].name: engine \"e\" is defined twice",
		"bad-unscannable.yaml": `testdata/invalid/bad-unscannable.yaml:2:3: scan.on-unscannable: "quarantne" is not one of quarantine, bounce; did you mean "quarantine"?`,
		"syntax.yaml":          "testdata/invalid/syntax.yaml:2:",
		"bad-user.yaml":        `testdata/invalid/bad-user.yaml:2:5: users[0].address: domain "other.test" of carol@other.test is not in domains [example.test]`,
		"bad-access.yaml": "6 errors:\n" +
			"  testdata/invalid/bad-access.yaml:2:3: access.placement: \"least-conections\" is not one of least-connections, round-robin; did you mean \"least-connections\"?\n" +
			"  testdata/invalid/bad-access.yaml:5:7: access.sites[1].name: site \"site-a\" is defined twice\n" +
			"  testdata/invalid/bad-access.yaml:6:7: access.sites[1].listen: \"nowhere\" is not a host:port address\n" +
			"  testdata/invalid/bad-access.yaml:8:5: access.health.mode: \"deeep\" is not one of none, shallow, deep; did you mean \"deep\"?\n" +
			"  testdata/invalid/bad-access.yaml:9:5: access.health.interval: must be positive, got 0s\n" +
			"  testdata/invalid/bad-access.yaml:11:5: access.passive.max-ejection: must be at least ejection (10s), got 1s",
	}
	files, err := filepath.Glob("testdata/invalid/*.yaml")
	require.NoError(t, err)
	require.Len(t, files, len(want))
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := mailstack.LoadConfig(f, "")
			require.Error(t, err)
			var ce mailstack.ConfigErrors
			require.True(t, errors.As(err, &ce), "%T", err)
			require.True(t, ce.InvalidInput())
			w := want[filepath.Base(f)]
			if filepath.Base(f) == "syntax.yaml" {
				require.Contains(t, err.Error(), w)
				return
			}
			require.Equal(t, w, err.Error())
		})
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	t.Parallel()
	_, err := mailstack.LoadConfig(filepath.Join(t.TempDir(), "nope.yaml"), "")
	var ce *mailstack.ConfigError
	require.ErrorAs(t, err, &ce)
	require.Contains(t, err.Error(), "nope.yaml: cannot read: no such file or directory")
}

func TestNewRejectsAnInvalidConfig(t *testing.T) {
	t.Parallel()
	cfg := mailstack.DefaultConfig()
	cfg.Scan.Workers = 0
	cfg.Engines = nil
	_, err := mailstack.New(cfg, mailstack.Options{})
	require.EqualError(t, err, "2 errors:\n  engines: at least one engine is needed\n  scan.workers: must be at least 1, got 0")
}

func FuzzParseConfig(f *testing.F) {
	files, _ := filepath.Glob("testdata/*/*.yaml")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("scan: {workers: 3}\n"))
	f.Add([]byte("access: {placement: round-robin, sites: [{name: east}, {}], health: {mode: shallow, interval: 2s}, passive: {enabled: false}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := mailstack.ParseConfig("fuzz.yaml", data, "")
		if err != nil {
			var ce mailstack.ConfigErrors
			if !errors.As(err, &ce) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		if errs := cfg.Validate(); len(errs) > 0 {
			t.Fatalf("accepted an invalid configuration: %v", errs)
		}
	})
}

func TestFullConfigFileIsTheDefault(t *testing.T) {
	t.Parallel()
	cfg, err := mailstack.LoadConfig("testdata/valid/full.yaml", "")
	require.NoError(t, err)
	require.Empty(t, cfg.Scan.Interceptor.Block)
	cfg.Scan.Interceptor.Block = nil // the file's [] is the default's nil
	require.Equal(t, mailstack.DefaultConfig(), cfg)
}
