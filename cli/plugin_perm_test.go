package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/cli"
)

// markerPlugin puts the test plugin into a new directory; the marker
// file it returns appears once the plugin has been started.
func markerPlugin(t *testing.T) (dir, marker string) {
	t.Helper()
	marker = filepath.Join(t.TempDir(), "started")
	dir = misbehaveDir(t, "MISBEHAVE_PIDFILE="+marker)
	return dir, marker
}

func started(marker string) bool {
	_, err := os.Stat(marker)
	return err == nil
}

// TestUnsafePluginsAreRefused: a plugin anyone else could change is not
// started, with an error naming the file, its mode and owner and the fix;
// the other faults still work.
func TestUnsafePluginsAreRefused(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds a plugin")
	}
	cases := []struct {
		name string
		prep func(t *testing.T, dir, exe string)
		want []string
	}{{
		name: "world-writable file",
		prep: func(t *testing.T, _, exe string) { require.NoError(t, os.Chmod(exe, 0o777)) },
		want: []string{"file", "writable by its group and others", "-rwxrwxrwx", "fix: chmod go-w "},
	}, {
		name: "group-writable directory",
		prep: func(t *testing.T, dir, _ string) { require.NoError(t, os.Chmod(dir, 0o770)) },
		want: []string{"directory", "writable by its group", "fix: chmod go-w "},
	}, {
		name: "file of another user",
		prep: func(t *testing.T, _, exe string) {
			if os.Geteuid() != 0 {
				t.Skip("skipped: chown to uid 65534 needs root")
			}
			require.NoError(t, os.Chown(exe, 65534, 65534))
		},
		want: []string{"file", "owned by", "uid 65534", "neither root nor the user running mailchaos", "fix: chown "},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir, marker := markerPlugin(t)
			exe := filepath.Join(dir, "mailchaos-fault-misbehave")
			tc.prep(t, dir, exe)
			code, out, errb := runIn(t, dir, "--log-level", "warn", "validate", "../experiments/catalog/av-latency-remediated.yaml")
			require.Equal(t, cli.ExitOK, code, "other faults are not affected:\n%s\n%s", out, errb)
			require.False(t, started(marker), "the unsafe plugin was started")
			for _, w := range append(tc.want, exe) {
				require.Contains(t, errb, w)
			}

			code, out, errb = runIn(t, dir, "plugins", "list")
			require.Equal(t, cli.ExitOK, code, "%s\n%s", out, errb)
			require.Contains(t, out, "not usable: plugin misbehave")
			require.Contains(t, out, "refused:")
			require.False(t, started(marker), "the unsafe plugin was started")

			code, _, errb = runIn(t, dir, "inject", "misbehave", "--upstream", "127.0.0.1:1", "--for", "1s")
			require.NotEqual(t, cli.ExitOK, code)
			require.Contains(t, errb, "refused:")
			require.False(t, started(marker), "the unsafe plugin was started")
		})
	}
}

// TestSafePluginRuns: a plugin owned by root (or the user), not writable by
// others, in a directory alike, is started.
func TestSafePluginRuns(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds a plugin")
	}
	dir, marker := markerPlugin(t)
	code, out, errb := runIn(t, dir, "faults", "misbehave")
	require.Equal(t, cli.ExitOK, code, "%s\n%s", out, errb)
	require.Contains(t, out, "misbehave:")
	require.True(t, started(marker))
}

// TestCommandsWithoutFaultsStartNoPlugin: commands that do not use faults
// start no plugin.
func TestCommandsWithoutFaultsStartNoPlugin(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds a plugin")
	}
	dir, marker := markerPlugin(t)
	jdir := t.TempDir()
	journal := filepath.Join(jdir, "j.jsonl")
	require.NoError(t, os.WriteFile(journal, nil, 0o644))
	for _, args := range [][]string{
		{"schema"}, {"version"}, {"--version"}, {"help"}, {"report", journal},
	} {
		_, out, errb := runIn(t, dir, args...)
		require.False(t, started(marker), "mailchaos %s started a plugin:\n%s\n%s", strings.Join(args, " "), out, errb)
	}
}
