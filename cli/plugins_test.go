package cli_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/cli"
	"github.com/mailchaos/mailchaos/targets/proxy"
)

// pluginPath is the environment with MAILCHAOS_PLUGIN_PATH set to dir.
func pluginPath(dir string) func(string) string {
	return func(k string) string {
		if k == "MAILCHAOS_PLUGIN_PATH" {
			return dir
		}
		return os.Getenv(k)
	}
}

// runIn runs the command line with MAILCHAOS_PLUGIN_PATH set to dir.
func runIn(t *testing.T, dir string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb syncBuffer
	code := runCLI(t, cli.Env{Stdout: &out, Stderr: &errb, Getenv: pluginPath(dir)}, args...)
	return code, out.String(), errb.String()
}

// pluginDir puts the plugin NAME, built from pkgDir once for all the
// tests, into a new directory as mailchaos-fault-NAME, and returns the
// directory.
func pluginDir(t *testing.T, name, pkgDir string) string {
	t.Helper()
	exe := "mailchaos-fault-" + name
	data, err := os.ReadFile(binary(t, exe, pkgDir))
	require.NoError(t, err)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, exe), data, 0o755))
	return dir
}

// TestScaffoldedPluginEndToEnd is what a plugin author does: scaffold a
// plugin outside the repository, test and build it as generated, and use it
// from mailchaos: listed, described, locked and run in an experiment.
func TestScaffoldedPluginEndToEnd(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds a plugin module")
	}
	repo, err := filepath.Abs("..")
	require.NoError(t, err)
	work := t.TempDir()
	src := filepath.Join(work, "mailchaos-fault-slow-smtp")
	code, out, errb := run(t, "plugin", "init", "slow-smtp", src, "--sdk", repo)
	require.Equal(t, cli.ExitOK, code, "%s %s", out, errb)
	for _, f := range []string{"go.mod", "go.sum", "main.go", "fault.go", "fault_test.go", "Makefile", "README.md"} {
		require.FileExists(t, filepath.Join(src, f))
	}
	// As generated: the tests pass and it builds.
	test := exec.Command("make", "test", "build")
	test.Dir = src
	b, err := test.CombinedOutput()
	require.NoError(t, err, "%s", b)

	dir := filepath.Join(work, "plugins")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	bin := filepath.Join(dir, "mailchaos-fault-slow-smtp")
	require.NoError(t, os.Rename(filepath.Join(src, "bin", "mailchaos-fault-slow-smtp"), bin))

	lock := filepath.Join(work, "plugins.lock")
	code, out, errb = runIn(t, dir, "--plugins-lock", lock, "plugins", "list")
	require.Equal(t, cli.ExitOK, code, errb)
	require.Regexp(t, `slow-smtp\s+plugin\s+1\s+0\.\d+\.\d+\s+unlocked\s+`+regexp.QuoteMeta(bin), out)
	require.Regexp(t, `av-latency\s+built-in`, out)
	code, out, _ = runIn(t, dir, "--plugins-lock", lock, "plugins", "describe", "slow-smtp")
	require.Equal(t, cli.ExitOK, code)
	require.Contains(t, out, "latency      delay added to every reply (duration, default 500ms")

	// Locked, then used in an experiment on the embedded stack.
	code, out, errb = runIn(t, dir, "--plugins-lock", lock, "plugins", "lock")
	require.Equal(t, cli.ExitOK, code, errb)
	require.Contains(t, out, "wrote "+lock+": 1 plugins")
	exp := filepath.Join(work, "slow-smtp.yaml")
	require.NoError(t, os.WriteFile(exp, []byte(`version: 1
title: slow SMTP replies from a plugin
target: { kind: mailstack }
baseline: 2s
steady-state:
  - name: delivery
    probe: smtp-canary
    interval: 500ms
    timeout: 20s
    tolerance: { max: 5s }
method:
  - fault: slow-smtp
    at: 0s
    for: 4s
    link: smtp-ingress
    params: { latency: 100ms }
recovery: { within: 10s, hold: 1s }
invariants: [no-mail-lost, no-duplicates]
safety: { max-duration: 60s }
`), 0o644))
	jpath := filepath.Join(work, "j.jsonl")
	code, out, errb = runIn(t, dir, "--plugins-lock", lock, "--log-level", "warn", "run", "-q", "--journal", jpath, exp)
	require.Equal(t, cli.ExitOK, code, "%s\n%s", out, errb)
	j, err := os.ReadFile(jpath)
	require.NoError(t, err)
	require.Contains(t, string(j), `"fault":"slow-smtp"`)

	// A plugin that no longer matches the lock is refused.
	f, err := os.OpenFile(bin, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString("tampered")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	code, _, errb = runIn(t, dir, "--plugins-lock", lock, "validate", exp)
	require.Equal(t, cli.ExitInvalid, code)
	require.Contains(t, errb, "slow-smtp.yaml:12:5: method[0].fault: plugin slow-smtp")
	require.Contains(t, errb, "checksum differs from plugins.lock")
	// Faults of other plugins are not affected.
	code, _, errb = runIn(t, dir, "--plugins-lock", lock, "validate", "../experiments/catalog/av-latency-remediated.yaml")
	require.Equal(t, cli.ExitOK, code, errb)
}

// misbehaveDir puts the misbehaving test plugin into a new directory. Its
// MISBEHAVE_* settings (NAME=VALUE) are given by a script in its place that
// sets them and execs the plugin (the same process), not through the
// environment of the test process, which tests running side by side share.
func misbehaveDir(t *testing.T, env ...string) string {
	t.Helper()
	if len(env) == 0 {
		return pluginDir(t, "misbehave", "../plugins/internal/misbehave")
	}
	script := "#!/bin/sh\nexec env"
	for _, s := range append(env, binary(t, "mailchaos-fault-misbehave", "../plugins/internal/misbehave")) {
		script += " '" + strings.ReplaceAll(s, "'", `'\''`) + "'"
	}
	script += ` "$@"` + "\n"
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "mailchaos-fault-misbehave"), []byte(script), 0o755))
	return dir
}

// externalExperiment writes an experiment on an external target: a link
// "banner" on srv in front of a greeting server, probed through the link,
// with the misbehave fault (1 s of latency) on it for fault.
func externalExperiment(t *testing.T, srv *proxy.Server, fault time.Duration) string {
	t.Helper()
	up := lineServer(t)
	listen, err := srv.Link(context.Background(), "banner", "127.0.0.1:0", up)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "exp.yaml")
	require.NoError(t, os.WriteFile(path, []byte(fmt.Sprintf(`version: 1
title: a plugin that fails mid-run
target:
  kind: external
  toxiproxy: %s
  endpoints: { banner: %q }
  links: [{ name: banner, listen: %q, upstream: %q }]
baseline: 1s
steady-state:
  - name: greeting
    probe: banner
    interval: 200ms
    params: { endpoint: banner }
    tolerance: { max: 500ms }
method:
  - fault: misbehave
    at: 0s
    for: %s
    link: banner
    params: { latency: 1s }
recovery: { within: 5s, hold: 1s }
safety: { max-duration: 2m }
`, srv.URL(), listen, listen, up, fault)), 0o644))
	return path
}

// greetingFast checks that the link carries traffic normally.
func greetingFast(t *testing.T, srv *proxy.Server) {
	t.Helper()
	p, err := srv.Client().Proxy(context.Background(), "banner")
	require.NoError(t, err)
	require.Empty(t, p.Toxics, "the link has no toxic left")
	start := time.Now()
	c, err := net.DialTimeout("tcp", p.Listen, 5*time.Second)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	buf := make([]byte, 8)
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	require.Equal(t, "220 hi\r\n", string(buf))
	require.Less(t, time.Since(start), time.Second, "no latency toxic acts on the link")
}

func TestPluginKilledMidRun(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds a plugin")
	}
	pidfile := filepath.Join(t.TempDir(), "pid")
	dir := misbehaveDir(t, "MISBEHAVE_PIDFILE="+pidfile)
	srv, err := proxy.StartServer(context.Background(), "127.0.0.1:0", nil)
	require.NoError(t, err)
	defer srv.Close()
	exp := externalExperiment(t, srv, time.Minute)

	var out, errb syncBuffer
	done := goCLI(t, cli.Env{Stdout: &out, Stderr: &errb, Getenv: pluginPath(dir)}, "--log-level", "warn", "run", exp)
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "inject misbehave") },
		waitFor, 10*time.Millisecond, "%s %s", out.String(), errb.String())
	data, err := os.ReadFile(pidfile)
	require.NoError(t, err)
	pid, err := strconv.Atoi(string(data))
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))

	code := waitExit(t, done)
	require.Equal(t, cli.ExitAborted, code, "%s\n%s", out.String(), errb.String())
	all := out.String() + errb.String()
	require.Contains(t, all, "plugin misbehave")
	require.Contains(t, all, "exited unexpectedly")
	greetingFast(t, srv)
}

func TestPluginHungMidRun(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds a plugin")
	}
	dir := misbehaveDir(t, "MISBEHAVE_HANG=remove")
	srv, err := proxy.StartServer(context.Background(), "127.0.0.1:0", nil)
	require.NoError(t, err)
	defer srv.Close()
	exp := externalExperiment(t, srv, 2*time.Second)

	code, out, errb := runIn(t, dir, "--log-level", "warn", "--plugin-timeout", "2s", "run", exp)
	require.Equal(t, cli.ExitAborted, code, "%s\n%s", out, errb)
	all := out + errb
	require.Contains(t, all, "plugin misbehave")
	require.Contains(t, all, "hung: remove did not answer")
	greetingFast(t, srv)
}

func TestPluginVersionMismatchIsClear(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds a plugin")
	}
	dir := misbehaveDir(t, "MISBEHAVE_PROTOCOL=7")
	code, _, errb := runIn(t, dir, "inject", "misbehave", "--upstream", "127.0.0.1:1", "--for", "1s")
	require.Equal(t, cli.ExitAborted, code)
	require.Contains(t, errb, "plugin misbehave")
	require.Contains(t, errb, "speaks fault-plugin protocol 7, this mailchaos speaks protocol 1")
}

// TestCatalogPluginExperiment runs the catalog experiment that uses the
// example plugin smtp-reply-faults, built as `make plugins` builds it.
func TestCatalogPluginExperiment(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds a plugin and runs a 25-second experiment")
	}
	dir := pluginDir(t, "smtp-reply-faults", "../plugins/examples/smtp-reply-faults")
	exp := "../experiments/catalog/smtp-ingress-tempfail.yaml"
	code, out, errb := runIn(t, dir, "validate", exp)
	require.Equal(t, cli.ExitOK, code, "%s %s", out, errb)
	code, out, errb = runIn(t, dir, "--log-level", "warn", "run", "-q", exp)
	require.Equal(t, cli.ExitOK, code, "%s\n%s", out, errb)
	require.Regexp(t, `smtp-reply-faults: [1-9]\d* of \d+ matching commands answered with the fault`, out)

	code, _, errb = run(t, "validate", exp)
	require.Equal(t, cli.ExitInvalid, code, "without the plugin the fault is unknown")
	require.Contains(t, errb, `unknown fault "smtp-reply-faults"`)
}
