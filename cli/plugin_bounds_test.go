package cli_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/cli"
	"github.com/mailchaos/mailchaos/plugins"
	"github.com/mailchaos/mailchaos/targets/proxy"
)

// alive reports whether a process still runs (a zombie does not).
func alive(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(data)
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == ')' {
			return len(s) > i+2 && s[i+2] != 'Z'
		}
	}
	return true
}

// readPid reads a process ID a test plugin wrote.
func readPid(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	pid, err := strconv.Atoi(string(data))
	require.NoError(t, err)
	return pid
}

// TestValidateBoundedByPluginChildHoldingStdout: a plugin that never
// completes its handshake and whose child keeps its standard output open
// costs validate the start timeout, not the child's lifetime, and the child
// does not outlive it.
func TestValidateBoundedByPluginChildHoldingStdout(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds a plugin and waits for the start timeout")
	}
	pidfile := filepath.Join(t.TempDir(), "pid")
	dir := misbehaveDir(t, "MISBEHAVE_PIDFILE="+pidfile, "MISBEHAVE_CHILD=60s", "MISBEHAVE_HANG=start")
	inProcess.hold(t)
	start := time.Now()
	code, out, errb := runIn(t, dir, "--log-level", "warn", "validate", "../experiments/catalog/av-latency-remediated.yaml")
	took := time.Since(start)
	t.Logf("validate with a plugin whose child holds its stdout took %s (start timeout %s)", took.Round(time.Millisecond), plugins.DefaultStartTimeout)
	require.Equal(t, cli.ExitOK, code, "%s\n%s", out, errb)
	require.Contains(t, errb, "misbehave", "the plugin is left out with a warning")
	require.Less(t, took, plugins.DefaultStartTimeout+5*time.Second)
	child := readPid(t, pidfile+".child")
	require.Eventually(t, func() bool { return !alive(child) }, 2*time.Second, 10*time.Millisecond, "the plugin's child is gone")
	t.Cleanup(func() { _ = syscall.Kill(child, syscall.SIGKILL) })
}

// hangingAPI forwards requests to a toxiproxy API until hang is set; from
// then on it takes requests and never answers them.
type hangingAPI struct {
	srv  *httptest.Server
	hang atomic.Bool
	// held counts the requests held since hang was set.
	held atomic.Int32
}

func newHangingAPI(t *testing.T, upstream string) *hangingAPI {
	t.Helper()
	u, err := url.Parse(upstream)
	require.NoError(t, err)
	h := &hangingAPI{}
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(u); r.Out.Host = u.Host }}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.hang.Load() {
			h.held.Add(1)
			<-r.Context().Done()
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		h.srv.CloseClientConnections()
		h.srv.Close()
	})
	return h
}

func (h *hangingAPI) URL() string { return h.srv.URL }

// TestSecondSignalWithHungToxiproxy: with the toxiproxy API hung during
// the rollback, a second SIGINT ends mailchaos within about a second.
func TestSecondSignalWithHungToxiproxy(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds a plugin")
	}
	dir := misbehaveDir(t)
	srv, err := proxy.StartServer(context.Background(), "127.0.0.1:0", nil)
	require.NoError(t, err)
	defer srv.Close()
	api := newHangingAPI(t, srv.URL())
	up := lineServer(t)
	exp := filepath.Join(t.TempDir(), "exp.yaml")
	require.NoError(t, os.WriteFile(exp, []byte(fmt.Sprintf(`version: 1
title: the toxiproxy API hangs during the rollback
target:
  kind: external
  toxiproxy: %s
  endpoints: { banner: %q }
  links: [{ name: banner, listen: "127.0.0.1:0", upstream: %q }]
baseline: 200ms
steady-state:
  - name: up
    probe: tcp
    interval: 200ms
    params: { endpoint: banner }
    tolerance: { max: 5s }
method:
  - fault: misbehave
    at: 0s
    for: 1m
    link: banner
    params: { latency: 10ms }
recovery: { within: 5s, hold: 1s }
safety: { max-duration: 2m }
`, api.URL(), up, up)), 0o644))

	var out, errb syncBuffer
	sigs := make(chan os.Signal, 2)
	done := goCLI(t, cli.Env{Stdout: &out, Stderr: &errb, Getenv: pluginPath(dir), Signals: sigs}, "--log-level", "warn", "run", exp)
	for deadline := time.Now().Add(waitFor); !strings.Contains(out.String(), "inject misbehave"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			sigs <- os.Interrupt
			sigs <- os.Interrupt
			<-done
			t.Fatalf("no fault injected:\n%s\n%s", out.String(), errb.String())
		}
	}
	api.hang.Store(true)
	sigs <- os.Interrupt
	require.Eventually(t, func() bool { return api.held.Load() > 0 }, waitFor, 10*time.Millisecond,
		"the rollback is under way, and hangs")
	sigs <- os.Interrupt
	second := time.Now()
	code := waitExit(t, done)
	took := time.Since(second)
	t.Logf("exit %s after the second SIGINT", took.Round(time.Millisecond))
	require.Equal(t, cli.ExitRollbackFailed, code, "%s\n%s", out.String(), errb.String())
	require.Less(t, took, 5*time.Second, "%s\n%s", out.String(), errb.String())
}
