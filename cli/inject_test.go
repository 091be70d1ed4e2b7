package cli_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/clamd"
	"github.com/mailchaos/mailchaos/cli"
	"github.com/mailchaos/mailchaos/faults/network"
	"github.com/mailchaos/mailchaos/internal/testnet"
	"github.com/mailchaos/mailchaos/targets/proxy"
)

// startCLI runs the command line in the background; the returned function
// sends a signal, and done yields the exit code.
func startCLI(t *testing.T, args ...string) (out, errb *syncBuffer, signal func(os.Signal), done <-chan int) {
	t.Helper()
	out, errb = &syncBuffer{}, &syncBuffer{}
	sigs := make(chan os.Signal, 2)
	ch := goCLI(t, cli.Env{Stdout: out, Stderr: errb, Signals: sigs}, args...)
	t.Cleanup(func() {
		select {
		case sigs <- os.Interrupt:
		default:
		}
	})
	return out, errb, func(s os.Signal) { sigs <- s }, ch
}

func waitExit(t *testing.T, done <-chan int) int {
	t.Helper()
	select {
	case code := <-done:
		return code
	case <-time.After(waitFor):
		t.Fatal("mailchaos did not exit")
	}
	return -1
}

// lineServer greets and echoes lines, like a tiny SMTP server.
func lineServer(t *testing.T) string {
	t.Helper()
	return testnet.Serve(t, func(_ context.Context, c net.Conn) {
		_, _ = io.WriteString(c, "220 hi\r\n")
		r := bufio.NewReader(c)
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "250 "+l)
		}
	}).Addr
}

// linkAddr waits for "link NAME: LISTEN -> UPSTREAM" and returns LISTEN.
func linkAddr(t *testing.T, out *syncBuffer, name string) string {
	t.Helper()
	var addr string
	require.Eventually(t, func() bool {
		for _, l := range strings.Split(out.String(), "\n") {
			if rest, ok := strings.CutPrefix(l, "link "+name+": "); ok {
				addr, _, _ = strings.Cut(rest, " -> ")
				return strings.Contains(out.String(), "injected ")
			}
		}
		return false
	}, waitFor, 5*time.Millisecond, "no link line in %q", out.String())
	return addr
}

func TestInjectAdHocAgainstAPlainAddressRemovedOnCtrlC(t *testing.T) {
	t.Parallel()
	upstream := lineServer(t)
	out, errb, signal, done := startCLI(t, "inject", "gray-failure", "--upstream", upstream, "--param", "mode=stall-after", "--for", "10m")
	listen := linkAddr(t, out, "ad-hoc")

	c, err := net.Dial("tcp", listen)
	require.NoError(t, err)
	defer c.Close()
	r := bufio.NewReader(c)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(waitFor)))
	greeting, err := r.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "220 hi\r\n", greeting)
	_, err = io.WriteString(c, "NOOP\r\n")
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(300*time.Millisecond)))
	_, err = r.ReadString('\n')
	require.ErrorIs(t, err, os.ErrDeadlineExceeded, "the session should hang")

	signal(os.Interrupt)
	require.Equal(t, cli.ExitAborted, waitExit(t, done), errb.String())
	require.Contains(t, out.String(), "removed gray-failure")
	require.Contains(t, errb.String(), "interrupted; every fault was removed")
}

func TestInjectOnTheEmbeddedStackEndsWhenTimeIsUp(t *testing.T) {
	t.Parallel()
	// The fault holds long enough for the scan to start inside it on a
	// busy machine.
	out, errb, _, done := startCLI(t, "inject", "av-latency", "--param", "latency=3s", "--for", "6s")
	engine := linkAddr(t, out, "av-engine-2")
	c := &clamd.Client{Addr: engine}
	start := time.Now()
	res, err := c.Scan(context.Background(), []byte(clamd.EICAR))
	require.NoError(t, err)
	require.True(t, res.Infected)
	require.Greater(t, time.Since(start), time.Second, "the infected scan was not slowed")
	require.Equal(t, cli.ExitOK, waitExit(t, done), errb.String())
	require.Contains(t, out.String(), "removed av-latency")
}

func TestInjectOnATargetFileWithAnExternalToxiproxy(t *testing.T) {
	t.Parallel()
	upstream := lineServer(t)
	srv, err := proxy.StartServer(context.Background(), "127.0.0.1:0", nil)
	require.NoError(t, err)
	defer srv.Close()
	file := filepath.Join(t.TempDir(), "target.yaml")
	require.NoError(t, os.WriteFile(file, []byte("name: lab\ntoxiproxy: "+srv.URL()+"\nlinks:\n  - name: smtp-in\n    listen: 127.0.0.1:0\n    upstream: "+upstream+"\n"), 0o600))
	out, errb, _, done := startCLI(t, "inject", "gray-failure", "--target", file, "--link", "smtp-in", "--param", "mode=blackhole", "--for", "5s")
	linkAddr(t, out, "smtp-in")
	proxy, err := srv.Client().Proxy(context.Background(), "smtp-in")
	require.NoError(t, err)
	require.Len(t, proxy.Toxics, 2)
	require.Equal(t, cli.ExitOK, waitExit(t, done), errb.String())
	proxy, err = srv.Client().Proxy(context.Background(), "smtp-in")
	require.NoError(t, err)
	require.Empty(t, proxy.Toxics, "the fault outlived the run")
}

func TestInjectInvalidInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	remote := filepath.Join(dir, "remote.yaml")
	require.NoError(t, os.WriteFile(remote, []byte("links:\n  - name: mx\n    listen: 127.0.0.1:2525\n    upstream: 192.0.2.10:25\n"), 0o600))
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"inject", "grey-failure"}, `unknown fault "grey-failure"; did you mean "gray-failure"?`},
		{[]string{"inject", "gray-failure", "--upstream", "127.0.0.1:9", "--param", "mode=blakhole"}, `did you mean "blackhole"?`},
		{[]string{"inject", "gray-failure", "--upstream", "127.0.0.1:9", "--param", "mode"}, `flag --param: "mode" is not name=value`},
		{[]string{"inject", "gray-failure", "--param", "mode=blackhole", "--link", "av-engine-9"}, `parameter link = "av-engine-9": the target has no such link`},
		{[]string{"inject", "gray-failure", "--upstream", "192.0.2.1:25", "--param", "mode=blackhole"}, "flag --upstream: 192.0.2.1:25 is not a loopback address"},
		{[]string{"inject", "gray-failure", "--target", remote, "--param", "mode=blackhole"}, remote + ":4:5: links[0].upstream: 192.0.2.10:25 is not a loopback address"},
		{[]string{"inject", "gray-failure", "--for", "-1s", "--param", "mode=blackhole"}, "flag --for: must be positive"},
		{[]string{"inject"}, "inject needs exactly one FAULT"},
		{[]string{"inject", "gray-failure", "--upstream", "127.0.0.1:9", "--param", "mode=blackhole", "--keep"},
			"flag --keep: keeps the embedded stack running after the fault, but the target is an ad hoc link to 127.0.0.1:9"},
		{[]string{"inject", "gray-failure", "--target", remote, "--param", "mode=blackhole", "--keep"}, "flag --keep: "},
		{[]string{"inject", "gray-failure", "--param", "mode=blackhole", "--link", "av-engine-1", "--smtp", "0.0.0.0:2525"},
			"flag --smtp: 0.0.0.0:2525 is not a loopback address: the embedded stack listens on loopback only"},
		{[]string{"inject", "gray-failure", "--param", "mode=blackhole", "--link", "av-engine-1", "--smtp", ":2525"},
			"flag --smtp: :2525 is not a loopback address"},
		{[]string{"inject", "gray-failure", "--param", "mode=blackhole", "--link", "av-engine-1", "--imap", "127.0.0.1"},
			`flag --imap: "127.0.0.1" is not a host:port address`},
		{[]string{"inject", "gray-failure", "--param", "mode=blackhole", "--link", "av-engine-1", "--metrics", "127.0.0.1:99999"},
			"flag --metrics: \"127.0.0.1:99999\": the port must be a number from 0 to 65535"},
		{[]string{"inject", "gray-failure", "--upstream", "127.0.0.1:9", "--param", "mode=blackhole", "--imap", "127.0.0.1:1143"},
			"flag --imap: sets where the embedded stack listens, but the target is an ad hoc link to 127.0.0.1:9"},
		{[]string{"proxy", "serve", "--listen", "0.0.0.0:8474"}, "not a loopback address"},
	} {
		code, _, stderr := run(t, tt.args...)
		require.Equal(t, cli.ExitInvalid, code, "%v: %s", tt.args, stderr)
		require.Contains(t, stderr, tt.want, "%v", tt.args)
	}
}

func TestProxyServeRegistersMailchaosToxics(t *testing.T) {
	t.Parallel()
	out, errb, signal, done := startCLI(t, "proxy", "serve", "--listen", "127.0.0.1:0")
	eps := endpoints(t, out, "toxiproxy")
	c := network.NewClient(eps["toxiproxy"])
	p, err := c.CreateProxy(context.Background(), "x", "127.0.0.1:0", lineServer(t))
	require.NoError(t, err)
	require.NoError(t, c.AddToxic(context.Background(), "x", network.Toxic{Name: "s", Type: network.ToxicStall, Stream: network.Downstream,
		Attributes: map[string]any{"line": true}}))
	conn, err := net.Dial("tcp", p.Listen)
	require.NoError(t, err)
	defer conn.Close()
	signal(os.Interrupt)
	require.Equal(t, cli.ExitOK, waitExit(t, done), errb.String())
}

func TestFaultsLists(t *testing.T) {
	t.Parallel()
	code, out, _ := run(t, "faults")
	require.Equal(t, cli.ExitOK, code)
	require.Contains(t, out, "gray-failure: ")
	require.Contains(t, out, "av-latency: ")
	code, out, _ = run(t, "faults", "gray-failure")
	require.Equal(t, cli.ExitOK, code)
	require.Contains(t, out, "stall-after")
	require.NotContains(t, out, "av-latency")
}

// clamdServer runs a bundled engine on loopback.
func clamdServer(t *testing.T) string {
	t.Helper()
	return testnet.Run(t, &clamd.Server{})
}

func toxicsOn(t *testing.T, c *network.Client) int {
	t.Helper()
	ps, err := c.Proxies(context.Background())
	require.NoError(t, err)
	n := 0
	for _, p := range ps {
		n += len(p.Toxics)
	}
	return n
}

// TestInjectLeavesNothingBehind runs each injector against a plain address
// through an external toxiproxy server, ending it every way it can end, and
// checks the server is clean afterwards.
func TestInjectLeavesNothingBehind(t *testing.T) {
	t.Parallel()
	srv, err := proxy.StartServer(context.Background(), "127.0.0.1:0", nil)
	require.NoError(t, err)
	defer srv.Close()
	for _, fault := range []struct {
		name     string
		upstream func(*testing.T) string
		params   []string
	}{
		{"av-latency", clamdServer, []string{"--param", "latency=2s"}},
		{"gray-failure", lineServer, []string{"--param", "mode=stall-after"}},
	} {
		for _, end := range []string{"time-up", "SIGINT", "SIGTERM"} {
			t.Run(fault.name+"/"+end, func(t *testing.T) {
				link := strings.ReplaceAll(fault.name+"-"+end, "_", "-")
				forFlag := "10m"
				if end == "time-up" {
					forFlag = "300ms"
				}
				args := append([]string{"inject", fault.name, "--toxiproxy", srv.URL(), "--upstream", fault.upstream(t),
					"--link", link, "--for", forFlag}, fault.params...)
				out, errb, signal, done := startCLI(t, args...)
				if end != "time-up" {
					linkAddr(t, out, link)
					require.Positive(t, toxicsOn(t, srv.Client()), "the fault is not in place")
					if end == "SIGINT" {
						signal(os.Interrupt)
					} else {
						signal(syscall.SIGTERM)
					}
				}
				code := waitExit(t, done)
				require.Contains(t, []int{cli.ExitOK, cli.ExitAborted}, code, errb.String())
				require.Contains(t, out.String(), "removed "+fault.name)
				require.Zero(t, toxicsOn(t, srv.Client()), "a fault was left behind")
			})
		}
	}
}

// childPIDs lists a process's children, by the parent every process of
// /proc names (/proc/PID/task/*/children may miss children of a process
// that is not frozen).
func childPIDs(t *testing.T, pid int) []int {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	require.NoError(t, err)
	var out []int
	for _, f := range stats {
		data, err := os.ReadFile(f)
		if err != nil {
			continue // the process has gone
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		rest := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
		if len(rest) < 2 || rest[1] != strconv.Itoa(pid) {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(f, "/proc/"), "/stat"))
		require.NoError(t, err)
		out = append(out, n)
	}
	return out
}

// exited reports whether a process has exited (a zombie runs no code).
func exited(pid int) bool {
	st := procState(pid)
	return st == "" || st == "Z"
}

// procState is a process's state letter in /proc (R, S, T, Z...), "" once
// it is gone.
func procState(pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// proxyServe runs `mailchaos proxy serve` until the test ends and returns
// its API's URL.
func proxyServe(t *testing.T) string {
	t.Helper()
	out, _, signal, done := startCLI(t, "proxy", "serve", "--listen", "127.0.0.1:0")
	t.Cleanup(func() { signal(os.Interrupt); waitExit(t, done) })
	return endpoints(t, out, "toxiproxy")["toxiproxy"]
}

// startKilledInject runs the real binary's inject of a blackhole for d
// against an external toxiproxy server and returns it with its fault in
// place, and its plugin processes. d is long enough that the fault cannot
// end by itself before the test has killed what it kills, on however busy
// a machine.
// started is when the command started: its fault was injected after.
func startKilledInject(t *testing.T, api string, d, grace time.Duration) (cmd *exec.Cmd, kids []int, started time.Time) {
	t.Helper()
	var stdout syncBuffer
	cmd = exec.Command(mailchaosBinary(t), "inject", "gray-failure", "--toxiproxy", api, "--upstream", lineServer(t),
		"--param", "mode=blackhole", "--for", d.String(), "--grace", grace.String())
	cmd.Stdout = &stdout
	started = time.Now()
	require.NoError(t, cmd.Start())
	linkAddr(t, &stdout, "ad-hoc")
	require.Positive(t, toxicsOn(t, network.NewClient(api)))
	kids = childPIDs(t, cmd.Process.Pid)
	require.NotEmpty(t, kids, "the built-in faults run as plugin processes")
	return cmd, kids, started
}

// TestKilledHostPluginRemovesItsFault kills the real binary with SIGKILL
// while its fault is in place: its plugin processes notice, remove the
// fault and exit, long before the fault's time-to-live.
func TestKilledHostPluginRemovesItsFault(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	api := proxyServe(t)
	c := network.NewClient(api)

	// The fault would hold for an hour: only the plugins, seeing mailchaos
	// gone, can remove it in time.
	cmd, kids, _ := startKilledInject(t, api, time.Hour, 5*time.Minute)
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	require.Eventually(t, func() bool { return toxicsOn(t, c) == 0 }, waitFor, 20*time.Millisecond,
		"the plugin did not remove its fault when mailchaos died")
	require.Eventually(t, func() bool {
		for _, k := range kids {
			if !exited(k) {
				return false
			}
		}
		return true
	}, waitFor, 20*time.Millisecond, "plugin processes outlived mailchaos")
}

// TestKilledInjectFaultExpires kills the real binary and its plugins with
// SIGKILL while the fault is in place: the fault must still go, at its
// time-to-live, removed by the toxiproxy server's reaper.
func TestKilledInjectFaultExpires(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	api := proxyServe(t)
	c := network.NewClient(api)

	// A time-to-live of 21 s: 20 s of the fault, which the test's kills
	// come well within, and a second of grace.
	const ttl = 21 * time.Second
	cmd, kids, started := startKilledInject(t, api, 20*time.Second, time.Second)
	// The plugins are frozen first, so that neither they nor mailchaos get
	// to remove anything: everything dies at once.
	for _, k := range kids {
		require.NoError(t, syscall.Kill(k, syscall.SIGSTOP))
	}
	require.Eventually(t, func() bool {
		for _, k := range kids {
			if procState(k) != "T" {
				return false
			}
		}
		return true
	}, waitFor, 5*time.Millisecond, "the plugins did not stop")
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	for _, k := range kids {
		require.NoError(t, syscall.Kill(k, syscall.SIGKILL))
	}
	// Nothing but the reaper may remove the fault: before its time-to-live
	// it must still be there (a machine too busy to get here by then
	// proves nothing either way).
	n := toxicsOn(t, c)
	if elapsed := time.Since(started); elapsed < ttl {
		require.Positive(t, n, "the fault was removed %s after the start, before its time-to-live, with its injector dead", elapsed)
	} else {
		t.Logf("the test got here %s after the start, past the fault's time-to-live: not checking that the fault outlived its injector", elapsed)
	}
	require.Eventually(t, func() bool { return toxicsOn(t, c) == 0 }, ttl+waitFor, 50*time.Millisecond,
		"the fault outlived its time-to-live")
}

// keptLine is what inject --keep prints once the fault is removed.
const keptLine = "the fault is removed; the embedded stack is still up (--keep) until "

// waitKept waits until inject --keep says the stack stays up until the
// given signal.
func waitKept(t *testing.T, out, errb *syncBuffer, until string) {
	t.Helper()
	require.Eventually(t, func() bool { return strings.Contains(out.String(), keptLine+until+":\n") },
		waitFor, 10*time.Millisecond, "the stack was not kept: %s %s", out.String(), errb.String())
	require.Contains(t, out.String(), "removed gray-failure")
}

// stillRunning fails the test if the command line has ended.
func stillRunning(t *testing.T, done <-chan int, errb *syncBuffer) {
	t.Helper()
	select {
	case code := <-done:
		t.Fatalf("inject --keep ended (exit %d) before its signal: %s", code, errb.String())
	default:
	}
}

// greets reports whether a server at addr greets a new connection with a
// line that starts with prefix.
func greets(t *testing.T, addr, prefix string) bool {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, waitFor)
	if err != nil {
		return false
	}
	defer c.Close()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(waitFor)))
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, prefix)
}

// TestInjectKeepOnGivenPorts puts the embedded stack on given ports, and
// with --keep leaves it answering there once the fault is removed, until
// a signal stops it.
func TestInjectKeepOnGivenPorts(t *testing.T) {
	t.Parallel()
	smtpAddr, imapAddr, metricsAddr := testnet.FreeAddr(t), testnet.FreeAddr(t), testnet.FreeAddr(t)
	out, errb, signal, done := startCLI(t, "--log-level", "warn", "inject", "gray-failure", "--link", "av-engine-1",
		"--param", "mode=blackhole", "--for", "200ms", "--keep", "--smtp", smtpAddr, "--imap", imapAddr, "--metrics", metricsAddr)
	waitKept(t, out, errb, "Ctrl-C/SIGTERM")
	eps := endpoints(t, out, "smtp", "imap", "metrics")
	require.Equal(t, smtpAddr, eps["smtp"])
	require.Equal(t, imapAddr, eps["imap"])
	require.Equal(t, metricsAddr, eps["metrics"])
	// The smtp endpoint, on the port given, is the smtp-ingress link in
	// front of the SMTP server (on a free port): faults on the ingress
	// reach the clients that connect there.
	require.Contains(t, out.String(), "link smtp-ingress: "+smtpAddr+" -> ")

	// The fault is gone and the stack still answers, for as long as one
	// cares to look.
	require.True(t, greets(t, smtpAddr, "220 "), "no SMTP greeting on the port given")
	require.True(t, greets(t, imapAddr, "* OK"), "no IMAP greeting on the port given")
	resp, err := http.Get("http://" + metricsAddr + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	stillRunning(t, done, errb)

	signal(syscall.SIGTERM)
	require.Equal(t, cli.ExitOK, waitExit(t, done), errb.String())
	require.Contains(t, out.String(), "stopping the embedded stack")
	for _, addr := range []string{smtpAddr, imapAddr, metricsAddr} {
		require.True(t, refused(addr), "%s still answers", addr)
	}
}

// TestInjectKeepAfterAnEarlySignal removes the fault with a first signal;
// --keep leaves the stack up until a second one, which still stops it
// cleanly.
func TestInjectKeepAfterAnEarlySignal(t *testing.T) {
	t.Parallel()
	out, errb, signal, done := startCLI(t, "--log-level", "warn", "inject", "gray-failure", "--link", "smtp-ingress",
		"--param", "mode=blackhole", "--for", "10m", "--keep")
	smtpAddr := linkAddr(t, out, "smtp-ingress")
	signal(os.Interrupt)
	waitKept(t, out, errb, "a second Ctrl-C/SIGTERM")
	// The black hole on the ingress is gone: the stack greets through it.
	require.True(t, greets(t, smtpAddr, "220 "), "no SMTP greeting through the ingress link once the fault was removed")
	stillRunning(t, done, errb)
	signal(os.Interrupt)
	require.Equal(t, cli.ExitAborted, waitExit(t, done), errb.String())
	require.Contains(t, errb.String(), "interrupted; every fault was removed")
	require.True(t, refused(smtpAddr), "the stack still answers")
}
