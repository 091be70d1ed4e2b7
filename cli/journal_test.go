package cli_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/cli"
	"github.com/mailchaos/mailchaos/experiments/journal"
)

// secretExperiment is a short run on the embedded stack whose probes log in
// with passwords given as parameters and set in the stack's configuration.
const secretExperiment = `version: 1
title: secrets stay out of journals
target:
  kind: mailstack
  config:
    users:
      - { address: alice@example.test, password: alice-S3cret-1 }
      - { address: bob@example.test, password: bob-S3cret-2 }
    quarantine: { address: quarantine@example.test, password: quarantine-S3cret-3 }
    access:
      health:
        mode: deep
        login: { address: bob@example.test, password: bob-S3cret-2 }
baseline: 600ms
steady-state:
  - name: login
    probe: imap-login
    interval: 200ms
    params: { user: alice@example.test, password: alice-S3cret-1, measure: success }
    tolerance: { min: 0 }
  - name: banner
    probe: banner
    interval: 200ms
    params: { endpoint: smtp }
    tolerance: { max: 5s }
method:
  - fault: gray-failure
    at: 0s
    for: 300ms
    link: av-engine-1
    params: { mode: blackhole }
recovery: { within: 5s }
`

// writeExperiment writes secretExperiment into dir.
func writeExperiment(t testing.TB, dir string) string {
	t.Helper()
	exp := filepath.Join(dir, "secrets.yaml")
	require.NoError(t, os.WriteFile(exp, []byte(secretExperiment), 0o600))
	return exp
}

// stateEnv is the environment with XDG_STATE_HOME set to dir.
func stateEnv(dir string) func(string) string {
	return func(k string) string {
		if k == "XDG_STATE_HOME" {
			return dir
		}
		return os.Getenv(k)
	}
}

func runEnv(t *testing.T, getenv func(string) string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb syncBuffer
	code := runCLI(t, cli.Env{Stdout: &out, Stderr: &errb, Getenv: getenv}, args...)
	return code, out.String(), errb.String()
}

func TestJournalAndReportsHoldNoSecrets(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	exp := writeExperiment(t, dir)
	jpath, junit, summary := filepath.Join(dir, "j.jsonl"), filepath.Join(dir, "junit.xml"), filepath.Join(dir, "summary.md")
	code, out, errb := run(t, "--log-level", "warn", "--builtins", "in-process", "run", "--journal", jpath,
		"--junit", junit, "--summary", summary, exp)
	require.Equal(t, cli.ExitOK, code, "%s\n%s", out, errb)

	evs, err := journal.ReadFile(jpath)
	require.NoError(t, err)
	require.Equal(t, journal.TypeVerdict, evs[len(evs)-1].Type)
	require.Contains(t, string(evs[0].Experiment), "(redacted)")
	require.Contains(t, string(evs[0].Experiment), "alice@example.test", "only the passwords are hidden")

	code, again, errb2 := run(t, "report", jpath)
	require.Equal(t, cli.ExitOK, code, errb2)
	files := map[string]string{"terminal": out + errb, "terminal (report)": again}
	for _, p := range []string{jpath, junit, summary} {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		files[filepath.Base(p)] = string(b)
	}
	for name, text := range files {
		require.NotEmpty(t, text, name)
		for _, s := range []string{"alice-S3cret-1", "bob-S3cret-2", "quarantine-S3cret-3"} {
			require.NotContains(t, text, s, "%s holds a password", name)
		}
	}
}

func TestDefaultJournalInStateDir(t *testing.T) {
	t.Parallel()
	state := t.TempDir()
	exp := writeExperiment(t, t.TempDir())
	code, out, errb := runEnv(t, stateEnv(state), "--builtins", "in-process", "run", exp)
	require.Equal(t, cli.ExitOK, code, "%s\n%s", out, errb)

	dir := filepath.Join(state, "mailchaos")
	fi, err := os.Lstat(dir)
	require.NoError(t, err)
	require.True(t, fi.IsDir())
	require.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
	names, err := filepath.Glob(filepath.Join(dir, "journal-*.jsonl"))
	require.NoError(t, err)
	require.Len(t, names, 1)
	require.Regexp(t, `^journal-\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{8}\.jsonl$`, filepath.Base(names[0]))
	fi, err = os.Stat(names[0])
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	// Said before the run (for a run that crashes) and after it.
	lines := regexp.MustCompile(`(?m)^journal: (.*)$`).FindAllStringSubmatch(out, -1)
	require.Len(t, lines, 2, out)
	for _, l := range lines {
		require.Equal(t, names[0], l[1])
	}
	require.True(t, strings.Index(out, "journal: ") < strings.Index(out, "time to recover"), out)
	evs, err := journal.ReadFile(names[0])
	require.NoError(t, err)
	require.Equal(t, journal.TypeVerdict, evs[len(evs)-1].Type)

	// -q prints the summary only: the journal is still written, in the
	// same folder, and its path is not printed.
	code, out, errb = runEnv(t, stateEnv(state), "--builtins", "in-process", "run", "-q", exp)
	require.Equal(t, cli.ExitOK, code, "%s\n%s", out, errb)
	require.NotContains(t, out, "journal: ")
	names, err = filepath.Glob(filepath.Join(dir, "journal-*.jsonl"))
	require.NoError(t, err)
	require.Len(t, names, 2)
	evs, err = journal.ReadFile(names[1])
	require.NoError(t, err)
	require.Equal(t, journal.TypeVerdict, evs[len(evs)-1].Type)
}

func TestDefaultJournalDirRefused(t *testing.T) {
	t.Parallel()
	exp := writeExperiment(t, t.TempDir())
	t.Run("symlink", func(t *testing.T) {
		state, elsewhere := t.TempDir(), t.TempDir()
		require.NoError(t, os.Symlink(elsewhere, filepath.Join(state, "mailchaos")))
		code, _, errb := runEnv(t, stateEnv(state), "run", exp)
		require.Equal(t, cli.ExitAborted, code, errb)
		require.Contains(t, errb, "is a symbolic link")
		require.Contains(t, errb, "--journal")
		left, err := os.ReadDir(elsewhere)
		require.NoError(t, err)
		require.Empty(t, left)
	})
	t.Run("writable by others", func(t *testing.T) {
		state := t.TempDir()
		dir := filepath.Join(state, "mailchaos")
		require.NoError(t, os.Mkdir(dir, 0o700))
		require.NoError(t, os.Chmod(dir, 0o777))
		code, _, errb := runEnv(t, stateEnv(state), "run", exp)
		require.Equal(t, cli.ExitAborted, code, errb)
		require.Contains(t, errb, "writable by others")
		left, err := os.ReadDir(dir)
		require.NoError(t, err)
		require.Empty(t, left)
	})
}

func TestExplicitJournalNeverOverwritten(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	exp := writeExperiment(t, dir)
	victim := filepath.Join(dir, "victim")
	require.NoError(t, os.WriteFile(victim, []byte("keep me\n"), 0o644))
	link := filepath.Join(dir, "link.jsonl")
	require.NoError(t, os.Symlink(victim, link))
	dangling := filepath.Join(dir, "dangling.jsonl")
	require.NoError(t, os.Symlink(filepath.Join(dir, "created-through-link"), dangling))

	for _, p := range []string{victim, link, dangling} {
		t.Run(filepath.Base(p), func(t *testing.T) {
			code, out, errb := run(t, "run", "--journal", p, exp)
			require.Equal(t, cli.ExitInvalid, code, "%s\n%s", out, errb)
			require.Contains(t, errb, "flag --journal: "+p+" already exists")
			require.Contains(t, errb, "choose another name")
			b, err := os.ReadFile(victim)
			require.NoError(t, err)
			require.Equal(t, "keep me\n", string(b))
			_, err = os.Lstat(filepath.Join(dir, "created-through-link"))
			require.ErrorIs(t, err, os.ErrNotExist)
		})
	}
}

func TestReportsDoNotFollowLinks(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	jpath := filepath.Join(dir, "j.jsonl")
	jw, err := journal.Create(jpath, "run-1")
	require.NoError(t, err)
	require.NoError(t, jw.Write(journal.Event{Type: journal.TypeRunStart, Title: "t"}))
	require.NoError(t, jw.Write(journal.Event{Type: journal.TypeVerdict, Status: journal.StatusCompleted}))
	require.NoError(t, jw.Close())

	victim := filepath.Join(dir, "victim")
	require.NoError(t, os.WriteFile(victim, []byte("keep me\n"), 0o644))
	for _, flag := range []string{"--junit", "--summary"} {
		t.Run(flag, func(t *testing.T) {
			link := filepath.Join(dir, "link"+flag)
			require.NoError(t, os.Symlink(victim, link))
			code, _, errb := run(t, "report", flag, link, jpath)
			require.NotEqual(t, cli.ExitOK, code)
			require.Contains(t, errb, "is a symbolic link")
			b, err := os.ReadFile(victim)
			require.NoError(t, err)
			require.Equal(t, "keep me\n", string(b))

			// A regular file is replaced: CI reuses report paths.
			reused := filepath.Join(dir, "reused"+flag)
			require.NoError(t, os.WriteFile(reused, []byte(strings.Repeat("old ", 10000)), 0o644))
			code, _, errb = run(t, "report", flag, reused, jpath)
			require.Equal(t, cli.ExitOK, code, errb)
			b, err = os.ReadFile(reused)
			require.NoError(t, err)
			require.NotContains(t, string(b), "old ")
		})
	}
}
