package cli_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/cli"
	"github.com/mailchaos/mailchaos/faults/network"
	"github.com/mailchaos/mailchaos/internal/testnet"
)

// greeterUpstream is a server that greets with "220 NAME" and holds the
// connection.
func greeterUpstream(t *testing.T, name string) string {
	t.Helper()
	return testnet.Serve(t, func(ctx context.Context, c net.Conn) {
		if _, err := io.WriteString(c, "220 "+name+"\r\n"); err == nil {
			testnet.Hold(ctx, c)
		}
	}).Addr
}

// greeting connects to addr and returns the first line it reads.
func greeting(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, waitFor)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(waitFor)))
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err, "no greeting through %s", addr)
	return strings.TrimSpace(line)
}

// serveKept runs `mailchaos proxy serve --listen 127.0.0.1:0 args...` in
// this process until it has printed a line containing each of want, and
// returns its API URL, its output and a function that stops it with
// SIGINT and checks that it exited 0 (called at the end of the test too).
func serveKept(t *testing.T, args []string, want ...string) (string, *syncBuffer, func()) {
	t.Helper()
	out, errb, signal, done := startCLI(t, append([]string{"--log-level", "warn", "proxy", "serve", "--listen", "127.0.0.1:0"}, args...)...)
	require.Eventually(t, func() bool {
		for _, w := range append(want, "toxiproxy=") {
			if !strings.Contains(out.String(), w) {
				return false
			}
		}
		return true
	}, waitFor, 5*time.Millisecond, "proxy serve did not start:\n%s\n%s", out, errb)
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			signal(os.Interrupt)
			require.Equal(t, cli.ExitOK, waitExit(t, done), errb.String())
		}
	}
	t.Cleanup(stop)
	return endpoints(t, out, "toxiproxy")["toxiproxy"], out, stop
}

// servedLink is the listen address `proxy serve` printed for a link.
func servedLink(t *testing.T, out, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^link ` + regexp.QuoteMeta(name) + `: (\S+) -> `).FindStringSubmatch(out)
	require.NotNil(t, m, "no link %s in:\n%s", name, out)
	return m[1]
}

// startService starts cmd, a long-running mailchaos process whose output
// goes to out, and stops it at the end of the test as systemctl stop
// does: SIGTERM, after which it must exit 0. It dies with the test process.
func startService(t *testing.T, cmd *exec.Cmd, out *syncBuffer) {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			require.NoError(t, err, "%s does not stop cleanly on SIGTERM:\n%s", cmd.Args, out.String())
		case <-time.After(waitFor):
			_ = cmd.Process.Kill()
			t.Errorf("%s did not stop on SIGTERM", cmd.Args)
		}
	})
}

// writeAt writes content to path, which the test owns.
func writeAt(t *testing.T, path, content string) string {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

func TestProxyServeLinksAndState(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	up := greeterUpstream(t, "clamd")
	links := writeAt(t, filepath.Join(dir, "links.yaml"), fmt.Sprintf(`name: mx1
links:
  - name: clamd
    listen: 127.0.0.1:0
    upstream: %s
  - name: elsewhere
    toxiproxy: http://127.0.0.1:1
    upstream: %s
`, up, up))
	state := filepath.Join(dir, "state.json")
	args := []string{"--links", links, "--state", state}

	api, out, stop := serveKept(t, args, "skipped link elsewhere")
	require.Contains(t, out.String(), "skipped link elsewhere: it belongs to the server at http://127.0.0.1:1")
	clamd := servedLink(t, out.String(), "clamd")
	require.Equal(t, "220 clamd", greeting(t, clamd), "the link exists as soon as serve says so")

	ctx := context.Background()
	c := network.NewClient(api)
	made, err := c.CreateProxy(ctx, "api-made", "127.0.0.1:0", up)
	require.NoError(t, err)
	require.NoError(t, c.AddToxic(ctx, "clamd", network.Toxic{Name: "slow", Type: "latency", Stream: network.Downstream,
		Attributes: map[string]any{"latency": 1000}}))
	stop()

	api, out, _ = serveKept(t, args, "link api-made", "skipped link elsewhere")
	require.Equal(t, clamd, servedLink(t, out.String(), "clamd"), "the port chosen at the first start is kept")
	require.Equal(t, made.Listen, servedLink(t, out.String(), "api-made"), "a link made through the API is restored")
	ps, err := network.NewClient(api).Proxies(ctx)
	require.NoError(t, err)
	require.Empty(t, ps["clamd"].Toxics, "faults do not survive a restart")
	require.Equal(t, "220 clamd", greeting(t, clamd))
	require.Equal(t, "220 clamd", greeting(t, made.Listen))
}

func TestProxyServeBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	corrupt := writeAt(t, filepath.Join(dir, "corrupt.json"), `{"version": 1, "links": [`)
	elsewhere := writeAt(t, filepath.Join(dir, "elsewhere.json"), `{"version": 1, "links": []}`)
	symlink := filepath.Join(dir, "link.json")
	require.NoError(t, os.Symlink(elsewhere, symlink))
	badLinks := writeAt(t, filepath.Join(dir, "links.yaml"), "links:\n  - name: clamd\n    listen: 127.0.0.1:0\n    upstrem: 127.0.0.1:3310\n")
	remote := writeAt(t, filepath.Join(dir, "remote.yaml"), "links:\n  - name: clamd\n    listen: 0.0.0.0:10310\n    upstream: 127.0.0.1:3310\n")
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"corrupt state", []string{"--state", corrupt}, "state file " + corrupt + ": corrupt"},
		{"symlinked state", []string{"--state", symlink}, "state file " + symlink + ": is a symlink"},
		{"misspelt field", []string{"--links", badLinks}, badLinks + ":4:5"},
		{"link off loopback", []string{"--links", remote}, "links[0].listen"},
		{"empty state", []string{"--state="}, "flag --state"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := run(t, append([]string{"proxy", "serve", "--listen", "127.0.0.1:0"}, tt.args...)...)
			require.Equal(t, cli.ExitInvalid, code, stderr)
			require.Contains(t, stderr, tt.want)
		})
	}
}

func TestProxyLinksSync(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	up1, up2 := greeterUpstream(t, "one"), greeterUpstream(t, "two")
	api, _, _ := serveKept(t, nil)
	api2, _, _ := serveKept(t, nil)
	fixed, moved := testnet.FreeAddr(t), testnet.FreeAddr(t)
	file := filepath.Join(dir, "links.yaml")
	links := func(upA, listenB string) string {
		return writeAt(t, file, fmt.Sprintf(`links:
  - name: a
    listen: 127.0.0.1:0
    upstream: %s
  - name: b
    listen: %s
    upstream: %s
  - name: c
    toxiproxy: %s
    upstream: %s
`, upA, listenB, up1, api2, up1))
	}
	sync := func(args ...string) (int, string) {
		t.Helper()
		code, out, stderr := run(t, append([]string{"proxy", "links", "sync", "--toxiproxy", api}, args...)...)
		return code, out + stderr
	}
	ctx := context.Background()
	c, c2 := network.NewClient(api), network.NewClient(api2)

	code, out := sync(links(up1, fixed))
	require.Equal(t, cli.ExitOK, code, out)
	require.Regexp(t, `(?m)^a: created 127\.0\.0\.1:\d+ -> `+regexp.QuoteMeta(up1+" on "+api)+`$`, out)
	require.Contains(t, out, "b: created "+fixed+" -> "+up1+" on "+api+"\n")
	require.Regexp(t, `(?m)^c: created 127\.0\.0\.1:\d+ -> `+regexp.QuoteMeta(up1+" on "+api2)+`$`, out, "c goes to its own server")
	a, err := c.Proxy(ctx, "a")
	require.NoError(t, err)
	require.Equal(t, "220 one", greeting(t, a.Listen))
	_, err = c2.Proxy(ctx, "c")
	require.NoError(t, err)

	code, out = sync(file)
	require.Equal(t, cli.ExitOK, code, out)
	require.Equal(t, 3, strings.Count(out, ": unchanged "), out)

	code, out = sync(links(up2, moved))
	require.Equal(t, cli.ExitOK, code, out)
	require.Contains(t, out, "a: updated "+a.Listen+" -> "+up2+" on "+api+"\n", "the port 0 in the file keeps the link's port")
	require.Contains(t, out, "b: updated "+moved+" -> "+up1+" on "+api+"\n")
	require.Contains(t, out, "c: unchanged ")
	require.Equal(t, "220 two", greeting(t, a.Listen), "a forwards to its new upstream")
	require.Equal(t, "220 one", greeting(t, moved), "b listens where the file says now")

	_, err = c.CreateProxy(ctx, "stray", "127.0.0.1:0", up1)
	require.NoError(t, err)
	code, out = sync(file)
	require.Equal(t, cli.ExitOK, code, out)
	require.NotContains(t, out, "stray", "without --prune other proxies stay")
	code, out = sync(file, "--prune")
	require.Equal(t, cli.ExitOK, code, out)
	require.Contains(t, out, "stray: removed ")
	ps, err := c.Proxies(ctx)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"a", "b"}, keys(ps))

	code, listed, stderr := run(t, "proxy", "links", "list", "--toxiproxy", api)
	require.Equal(t, cli.ExitOK, code, stderr)
	require.Equal(t, fmt.Sprintf("a: %s -> %s enabled, 0 toxic(s)\nb: %s -> %s enabled, 0 toxic(s)\n", a.Listen, up2, moved, up1), listed)

	// A link a fault diverts is compared by the upstream it is restored
	// to, and not changed while the fault lasts.
	_, err = network.Divert(ctx, c, "test", "d1", "b", up2, time.Now().Add(time.Hour), 0)
	require.NoError(t, err)
	code, out = sync(file)
	require.Equal(t, cli.ExitOK, code, out)
	require.Contains(t, out, "b: unchanged "+moved+" -> "+up1+" on ")
	writeAt(t, file, fmt.Sprintf("links:\n  - name: b\n    listen: %s\n    upstream: %s\n", moved, up2))
	code, out = sync(file)
	require.Equal(t, cli.ExitAborted, code, out)
	require.Contains(t, out, "b: update failed on "+api+": a fault diverts it")
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestProxyLinksSyncErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	noServer := writeAt(t, filepath.Join(dir, "noserver.yaml"), "links:\n  - name: clamd\n    listen: 127.0.0.1:0\n    upstream: 127.0.0.1:3310\n")
	bad := writeAt(t, filepath.Join(dir, "bad.yaml"), "toxiproxy: http://127.0.0.1:8474\nlinks:\n  - name: clamd\n    upstream: nowhere\n")
	down := "http://" + testnet.FreeAddr(t)
	for _, tt := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no server", []string{noServer}, cli.ExitInvalid, noServer + ": links[0] (clamd): no toxiproxy server"},
		{"bad file", []string{bad}, cli.ExitInvalid, bad + ":4:5: links[0].upstream"},
		{"bad flag", []string{"--toxiproxy", "127.0.0.1:8474", noServer}, cli.ExitInvalid, "flag --toxiproxy"},
		{"server down", []string{"--toxiproxy", down, noServer}, cli.ExitAborted, "1 link(s) could not be synced"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out, stderr := run(t, append([]string{"proxy", "links", "sync"}, tt.args...)...)
			require.Equal(t, tt.code, code, "%s\n%s", out, stderr)
			require.Contains(t, out+stderr, tt.want)
		})
	}
}

// unitFile is the systemd unit shipped for proxy serve.
const unitFile = "../docs/systemd/mailchaos-proxy.service"

// unitSettings reads a unit file's settings by section and key (a key
// may repeat).
func unitSettings(t *testing.T, path string) map[string][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	settings := map[string][]string{}
	section := ""
	for _, line := range strings.Split(strings.ReplaceAll(string(data), "\\\n", " "), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			require.True(t, ok, "%s: not a setting: %q", path, line)
			settings[section+"."+k] = append(settings[section+"."+k], v)
		}
	}
	return settings
}

// TestSystemdUnitServesLinks runs the shipped unit's ExecStart for real,
// with the mailchaos binary and the unit's directories in a temporary
// folder, and sees it serve the links file's link and keep the state; it
// also holds the unit to its hardening, and has systemd-analyze check it
// where it is installed.
func TestSystemdUnitServesLinks(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	u := unitSettings(t, unitFile)
	for key, want := range map[string]string{
		"Service.DynamicUser": "yes", "Service.ProtectSystem": "strict", "Service.NoNewPrivileges": "yes",
		"Service.PrivateTmp": "yes", "Service.CapabilityBoundingSet": "", "Service.IPAddressAllow": "localhost",
		"Service.IPAddressDeny": "any", "Service.RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "Service.Type": "notify",
		"Service.ConfigurationDirectory": "mailchaos", "Service.StateDirectory": "mailchaos-proxy",
		"Service.StateDirectoryMode": "0700", "Service.RestartPreventExitStatus": "2",
	} {
		require.Equal(t, []string{want}, u[key], "%s in %s", key, unitFile)
	}
	require.Contains(t, u["Unit.Before"][0], "clamav-milter.service", "the links exist before the milter starts")
	require.Len(t, u["Service.ExecStart"], 1)

	dir := t.TempDir()
	confDir, stateDir := filepath.Join(dir, "etc-mailchaos"), filepath.Join(dir, "var-lib-mailchaos-proxy")
	require.NoError(t, os.Mkdir(confDir, 0o755))
	require.NoError(t, os.Mkdir(stateDir, 0o700))
	bin := mailchaosBinary(t)
	args := strings.Fields(os.Expand(u["Service.ExecStart"][0], func(v string) string {
		return map[string]string{"CONFIGURATION_DIRECTORY": confDir, "STATE_DIRECTORY": stateDir}[v]
	}))
	require.Equal(t, "/usr/local/bin/mailchaos", args[0])
	args[0] = bin
	listen := slices.Index(args, "--listen")
	require.Positive(t, listen, "the unit names its API address")
	require.Equal(t, "127.0.0.1:8474", args[listen+1], "loopback by default")
	args[listen+1] = testnet.FreeAddr(t)
	require.Contains(t, args, filepath.Join(confDir, "links.yaml"))
	require.Contains(t, args, filepath.Join(stateDir, "state.json"))

	link := testnet.FreeAddr(t)
	writeAt(t, filepath.Join(confDir, "links.yaml"), fmt.Sprintf("links:\n  - name: clamd\n    listen: %s\n    upstream: %s\n",
		link, greeterUpstream(t, "clamd")))
	// systemd's readiness socket (Type=notify): the units ordered after
	// this one start when it says READY=1.
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "notify"), Net: "unixgram"})
	require.NoError(t, err)
	defer notify.Close()
	var out syncBuffer
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notify.LocalAddr().String())
	startService(t, cmd, &out)
	require.NoError(t, notify.SetReadDeadline(time.Now().Add(waitFor)))
	buf := make([]byte, 256)
	n, err := notify.Read(buf)
	require.NoError(t, err, "the service never said it was ready:\n%s", &out)
	require.Equal(t, "READY=1", string(buf[:n]))
	require.Equal(t, "220 clamd", greeting(t, link), "the link listens once the service is ready")
	require.Contains(t, out.String(), "link clamd: "+link)
	st, err := os.Stat(filepath.Join(stateDir, "state.json"))
	require.NoError(t, err, "the state is kept in the StateDirectory")
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Log("systemd-analyze is not installed: the unit's syntax and exposure were not checked")
		return
	}
	checked := filepath.Join(dir, "mailchaos-proxy.service")
	data, err := os.ReadFile(unitFile)
	require.NoError(t, err)
	writeAt(t, checked, strings.ReplaceAll(string(data), "/usr/local/bin/mailchaos", bin))
	verify, err := exec.Command("systemd-analyze", "verify", checked).CombinedOutput()
	require.NoError(t, err, "%s", verify)
	require.Empty(t, strings.TrimSpace(string(verify)), "systemd-analyze verify has remarks")
	security, err := exec.Command("systemd-analyze", "security", "--offline=yes", checked).CombinedOutput()
	require.NoError(t, err, "%s", security)
	m := regexp.MustCompile(`Overall exposure level for \S+: (\d+\.\d+)`).FindSubmatch(security)
	require.NotNil(t, m, "%s", security)
	exposure, err := strconv.ParseFloat(string(m[1]), 64)
	require.NoError(t, err)
	t.Logf("systemd-analyze security: exposure %.1f", exposure)
	require.LessOrEqual(t, exposure, 2.0, "the unit is exposed more than it was made to be:\n%s", security)
}
