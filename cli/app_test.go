package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/cli"
)

// TestMisspeltCommandsAndFlagsAreSuggested: at every level, a misspelt
// command or flag names the nearest one and exits 2.
func TestMisspeltCommandsAndFlagsAreSuggested(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"rnu"}, `unknown command "rnu"; did you mean "run"?`},
		{[]string{"run", "--jnuit", "x.yaml"}, `unknown flag --jnuit for "mailchaos run"; did you mean --junit?`},
		{[]string{"run", "x.yaml", "--jnuit", "j.xml"}, `did you mean --junit?`},
		{[]string{"--log-levle", "debug", "faults"}, `unknown flag --log-levle for "mailchaos"; did you mean --log-level?`},
		{[]string{"proxy", "lnks"}, `unknown command "lnks" for "mailchaos proxy"; did you mean "links"?`},
		{[]string{"proxy", "links", "snyc"}, `unknown command "snyc" for "mailchaos proxy links"; did you mean "sync"?`},
		{[]string{"target", "serve", "mailstak"}, `unknown command "mailstak" for "mailchaos target serve"; did you mean "mailstack"?`},
		{[]string{"target", "serve", "clamd", "--delya", "1s"}, `unknown flag --delya for "mailchaos target serve clamd"; did you mean --delay?`},
		{[]string{"plugins", "lsit"}, `did you mean "list"?`},
		{[]string{"help", "rnu"}, `unknown command "rnu"; did you mean "run"?`},
		{[]string{"help", "proxy", "lnks"}, `unknown command "lnks" for "mailchaos proxy"; did you mean "links"?`},
		{[]string{"inject", "av-latency", "--for"}, `flag --for of "mailchaos inject" needs a value`},
		{[]string{"inject", "av-latency", "--for", "soon"}, `flag --for of "mailchaos inject": invalid value "soon"`},
		{[]string{"completion", "bsh"}, `unknown shell "bsh"; did you mean "bash"?`},
		{[]string{"xyzzyplugh"}, `unknown command "xyzzyplugh"; valid: init, run,`},
	} {
		code, out, errb := run(t, tc.args...)
		require.Equal(t, cli.ExitInvalid, code, "%v: %s %s", tc.args, out, errb)
		require.Contains(t, errb, tc.want, "%v", tc.args)
		require.NotContains(t, errb, "flag provided but not defined", "%v", tc.args)
	}
}

// TestHelpListsSubcommands: every way of asking for a command group's help
// lists its subcommands, at every depth.
func TestHelpListsSubcommands(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"help", "target"}, []string{"mailchaos target - serve the embedded reference mail stack", "serve  "}},
		{[]string{"target", "--help"}, []string{"COMMANDS:", "serve  "}},
		{[]string{"help", "target", "serve"}, []string{"mailstack  ", "clamd  "}},
		{[]string{"target", "serve", "--help"}, []string{"mailstack  ", "clamd  "}},
		{[]string{"help", "proxy"}, []string{"serve  ", "links  "}},
		{[]string{"proxy", "links", "--help"}, []string{"mailchaos proxy links COMMAND", "sync  ", "list  "}},
		{[]string{"help", "proxy", "links"}, []string{"sync  ", "list  "}},
		{[]string{"help", "plugins"}, []string{"list  ", "describe  ", "lock  ", "init  "}},
		{[]string{"help", "plugin"}, []string{"init  "}},
		{[]string{"help", "proxy", "links", "sync"}, []string{"mailchaos proxy links sync", "--prune"}},
		{[]string{"--help"}, []string{"init  ", "version  ", "completion  ", "--verbose, -v", "--version, -V"}},
		{[]string{"help"}, []string{"plugins  "}},
	} {
		code, out, errb := run(t, tc.args...)
		require.Equal(t, cli.ExitOK, code, "%v: %s", tc.args, errb)
		for _, w := range tc.want {
			require.Contains(t, out, w, "%v", tc.args)
		}
	}
	// The alias is hidden; the one plugins command is listed.
	_, out, _ := run(t, "--help")
	require.NotRegexp(t, `(?m)^\s+plugin\s`, out)
}

// TestPluginAliasStillWorks: "plugin init" (and the rest) of earlier
// versions still work, through the hidden alias of "plugins".
func TestPluginAliasStillWorks(t *testing.T) {
	t.Parallel()
	repo, err := filepath.Abs("..")
	require.NoError(t, err)
	dir := t.TempDir()
	code, out, errb := run(t, "plugin", "init", "slow-smtp", filepath.Join(dir, "p"), "--no-tidy", "--sdk", repo)
	require.Equal(t, cli.ExitOK, code, errb)
	require.Contains(t, out, "wrote "+filepath.Join(dir, "p", "main.go"))
	code, _, errb = run(t, "plugins", "init", "slow-imap", filepath.Join(dir, "q"), "--no-tidy", "--sdk", repo)
	require.Equal(t, cli.ExitOK, code, errb)
	require.FileExists(t, filepath.Join(dir, "q", "go.mod"))
	code, out, errb = run(t, "plugin", "list")
	require.Equal(t, cli.ExitOK, code, errb)
	require.Regexp(t, `av-latency\s+built-in`, out)
}

// TestVerboseIsDebugLogs: -v turns on debug logs like --log-level debug;
// -V prints the version.
func TestVerboseIsDebugLogs(t *testing.T) {
	t.Parallel()
	_, _, quiet := run(t, "faults", "av-latency")
	require.NotContains(t, quiet, "level=DEBUG")
	code, _, errb := run(t, "-v", "faults", "av-latency")
	require.Equal(t, cli.ExitOK, code, errb)
	require.Contains(t, errb, "level=DEBUG")
	code, out, _ := run(t, "-V")
	require.Equal(t, cli.ExitOK, code)
	require.Regexp(t, `^mailchaos \S+\ngo: go1\.\d+`, out)
}

// TestFaultsPrintsOneSidedRanges: a bound on one side only reads ">= x",
// both sides "[x, y]".
func TestFaultsPrintsOneSidedRanges(t *testing.T) {
	t.Parallel()
	code, out, errb := run(t, "faults")
	require.Equal(t, cli.ExitOK, code, errb)
	require.NotContains(t, out, ", ]")
	require.NotContains(t, out, "[, ")
	require.Contains(t, out, "(fraction, default 1, >= 0.001)")
	require.Contains(t, out, "range [0s, 1h]")
}

// lockedOutPlugin is a directory with a plugin executable that an empty
// plugins.lock refuses, and that lock file.
func lockedOutPlugin(t *testing.T) (dir, lock string) {
	t.Helper()
	dir = t.TempDir()
	// Never started: the lock refuses it first.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "mailchaos-fault-locked-out"), []byte("#!/bin/sh\nexit 1\n"), 0o755))
	lock = filepath.Join(t.TempDir(), "plugins.lock")
	require.NoError(t, os.WriteFile(lock, []byte("# nothing trusted\n"), 0o600))
	return dir, lock
}

// TestPluginsLockRefusalExitsTwoEverywhere: a fault whose plugin
// plugins.lock refuses is invalid input in every command that uses it,
// and the refusal is said once.
func TestPluginsLockRefusalExitsTwoEverywhere(t *testing.T) {
	t.Parallel()
	dir, lock := lockedOutPlugin(t)
	exp := filepath.Join(t.TempDir(), "e.yaml")
	require.NoError(t, os.WriteFile(exp, []byte(`version: 1
title: a refused plugin
target: { kind: mailstack }
steady-state:
  - name: delivery
    probe: smtp-canary
    interval: 500ms
    tolerance: { max: 5s }
method:
  - fault: locked-out
    at: 0s
    for: 1s
    link: smtp-ingress
recovery: { within: 5s, hold: 1s }
`), 0o600))
	const refusal = "is not in " // ... plugins.lock: refused
	for _, args := range [][]string{
		{"run", "--journal", filepath.Join(t.TempDir(), "j.jsonl"), exp},
		{"validate", exp},
		{"check", exp},
		{"inject", "locked-out", "--for", "1s"},
		{"faults", "locked-out"},
		{"plugins", "describe", "locked-out"},
	} {
		code, out, errb := runIn(t, dir, append([]string{"--plugins-lock", lock}, args...)...)
		require.Equal(t, cli.ExitInvalid, code, "%v: %s %s", args, out, errb)
		require.Equal(t, 1, strings.Count(out+errb, refusal), "%v: said once:\n%s\n%s", args, out, errb)
	}
	// Unused, it is a warning, once; other faults work.
	code, _, errb := runIn(t, dir, "--plugins-lock", lock, "validate", "../experiments/catalog/gray-av-link.yaml")
	require.Equal(t, cli.ExitOK, code, errb)
	require.Equal(t, 1, strings.Count(errb, refusal), errb)
	require.Contains(t, errb, "fault plugin left out")
	// Listing every fault says it too (once), and is not an error.
	code, out, errb := runIn(t, dir, "--plugins-lock", lock, "faults")
	require.Equal(t, cli.ExitOK, code, errb)
	require.Contains(t, out, "not usable: plugin locked-out")
	require.Equal(t, 1, strings.Count(out+errb, refusal), errb)
}
