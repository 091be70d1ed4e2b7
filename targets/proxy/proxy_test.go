package proxy_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mailchaos/mailchaos/clamd"
	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/avlatency"
	"github.com/mailchaos/mailchaos/faults/grayfailure"
	"github.com/mailchaos/mailchaos/faults/network"
	"github.com/mailchaos/mailchaos/internal/testnet"
	"github.com/mailchaos/mailchaos/targets/proxy"
)

// TestMain fails the run if goroutines outlive the tests. A toxic whose
// connection ended waits up to eofGrace (2 s) before it gives up on its
// output, so the check allows a few seconds for them to go.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(10 * time.Second)
		for goleak.Find() != nil && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

const waitFor = 20 * time.Second

// greeter is a line server like SMTP: it greets, then answers each line
// with "250 <line>". It records what it received.
type greeter struct {
	*testnet.Server
	mu  sync.Mutex
	got []string
}

func startGreeter(t *testing.T) *greeter {
	t.Helper()
	g := &greeter{}
	g.Server = testnet.Serve(t, func(_ context.Context, c net.Conn) {
		if _, err := io.WriteString(c, "220 greeter ready\r\n"); err != nil {
			return
		}
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			g.mu.Lock()
			g.got = append(g.got, line)
			g.mu.Unlock()
			if _, err := io.WriteString(c, "250 "+line); err != nil {
				return
			}
		}
	})
	return g
}

func (g *greeter) received() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.got...)
}

// env is an embedded toxiproxy server with one link in front of upstream.
type env struct {
	srv    *proxy.Server
	target faults.Target
	listen string
}

// requireNoToxics fails t unless the link has no toxic left.
func (e *env) requireNoToxics(t *testing.T, link, msg string) {
	t.Helper()
	ts, err := e.srv.Client().Toxics(context.Background(), link)
	require.NoError(t, err)
	require.Empty(t, ts, msg)
}

func startEnv(t *testing.T, link, upstream string) *env {
	t.Helper()
	srv, err := proxy.StartServer(context.Background(), "127.0.0.1:0", nil)
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	listen, err := srv.Link(context.Background(), link, "127.0.0.1:0", upstream)
	require.NoError(t, err)
	return &env{srv: srv, listen: listen, target: faults.Target{
		Toxiproxy: srv.URL(),
		Links:     []faults.Link{{Name: link, Listen: listen, Upstream: upstream}},
	}}
}

func (e *env) inject(t *testing.T, inj faults.Injector, params faults.Params, links ...string) faults.Handle {
	t.Helper()
	h, err := inj.Inject(context.Background(), faults.Request{ID: "t1", Owner: "test", Target: e.target,
		Links: links, Params: params, TTL: time.Hour})
	require.NoError(t, err)
	return h
}

// dialGreeted connects through the link and reads the greeting.
func dialGreeted(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	r := bufio.NewReader(c)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(waitFor)))
	line, err := r.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "220 greeter ready\r\n", line)
	return c, r
}

// silent asserts that nothing at all arrives for d: no data, no FIN, no
// RST, just a read timeout.
func silent(t *testing.T, c net.Conn, r *bufio.Reader, d time.Duration) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(d)))
	_, err := r.ReadByte()
	require.Error(t, err)
	require.True(t, errors.Is(err, os.ErrDeadlineExceeded), "want a silent connection, got %v", err)
}

func TestStallAfterGreetingHoldsThenReleases(t *testing.T) {
	g := startGreeter(t)
	e := startEnv(t, "smtp", g.Addr)
	inj := grayfailure.New()
	h := e.inject(t, inj, faults.Params{"mode": "stall-after"}, "smtp")

	// A TCP connect and the greeting look healthy...
	c, r := dialGreeted(t, e.listen)
	// ... but the session hangs: the reply never comes, nor does any FIN or RST.
	_, err := io.WriteString(c, "EHLO client\r\n")
	require.NoError(t, err)
	silent(t, c, r, 300*time.Millisecond)
	require.Eventually(t, func() bool { return len(g.received()) == 1 }, waitFor, 5*time.Millisecond,
		"stall-after downstream lets the request through")

	st, err := inj.Status(context.Background(), h)
	require.NoError(t, err)
	require.True(t, st.Active)
	require.NoError(t, inj.Remove(context.Background(), h))
	require.NoError(t, inj.Remove(context.Background(), h), "remove is idempotent")
	st, err = inj.Status(context.Background(), h)
	require.NoError(t, err)
	require.False(t, st.Active)

	// The held reply arrives on the same connection once the fault is gone.
	require.NoError(t, c.SetReadDeadline(time.Now().Add(waitFor)))
	line, err := r.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "250 EHLO client\r\n", line)
	// And new connections flow normally on the same proxy.
	c2, r2 := dialGreeted(t, e.listen)
	_, err = io.WriteString(c2, "NOOP\r\n")
	require.NoError(t, err)
	line, err = r2.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "250 NOOP\r\n", line)
}

func TestStallAfterBytes(t *testing.T) {
	g := startGreeter(t)
	e := startEnv(t, "smtp", g.Addr)
	e.inject(t, grayfailure.New(), faults.Params{"mode": "stall-after", "after": "4"}, "smtp")
	c, err := net.Dial("tcp", e.listen)
	require.NoError(t, err)
	defer c.Close()
	buf := make([]byte, 64)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(waitFor)))
	n, err := io.ReadAtLeast(c, buf, 4)
	require.NoError(t, err)
	require.Equal(t, "220 ", string(buf[:n]))
	silent(t, c, bufio.NewReader(c), 300*time.Millisecond)
}

func TestBlackholeSwallowsSilently(t *testing.T) {
	g := startGreeter(t)
	e := startEnv(t, "smtp", g.Addr)
	inj := grayfailure.New()
	h := e.inject(t, inj, faults.Params{"mode": "blackhole"}, "smtp")
	c, err := net.Dial("tcp", e.listen) // the TCP connect succeeds
	require.NoError(t, err)
	defer c.Close()
	r := bufio.NewReader(c)
	silent(t, c, r, 300*time.Millisecond) // no greeting
	for i := 0; i < 100; i++ {            // writes keep succeeding: bytes vanish
		_, err := io.WriteString(c, "HELO x\r\n")
		require.NoError(t, err)
	}
	silent(t, c, r, 200*time.Millisecond)
	require.Empty(t, g.received(), "a black hole passed bytes upstream")

	require.NoError(t, inj.Remove(context.Background(), h))
	// The swallowed connection is closed (its stream is broken) ...
	require.NoError(t, c.SetReadDeadline(time.Now().Add(waitFor)))
	_, err = io.ReadAll(r)
	require.NoError(t, err)
	// ... and new ones flow.
	dialGreeted(t, e.listen)
}

func TestHalfOpenKillsOneDirection(t *testing.T) {
	g := startGreeter(t)
	e := startEnv(t, "smtp", g.Addr)
	e.inject(t, grayfailure.New(), faults.Params{"mode": "half-open"}, "smtp")
	c, r := dialGreeted(t, e.listen) // server to client still works
	_, err := io.WriteString(c, "EHLO x\r\n")
	require.NoError(t, err)
	silent(t, c, r, 300*time.Millisecond)
	require.Empty(t, g.received(), "client to server should be dead")
}

func TestSlowDrip(t *testing.T) {
	g := startGreeter(t)
	e := startEnv(t, "smtp", g.Addr)
	e.inject(t, grayfailure.New(), faults.Params{"mode": "slow-drip", "rate": "40"}, "smtp")
	c, err := net.Dial("tcp", e.listen)
	require.NoError(t, err)
	defer c.Close()
	start := time.Now()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(waitFor)))
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "220 greeter ready\r\n", line, "slow but intact")
	// 19 bytes at 40 bytes/s in 4-byte pieces: at least four 100 ms pauses.
	require.GreaterOrEqual(t, time.Since(start), 350*time.Millisecond)
}

func TestResetIsLoud(t *testing.T) {
	g := startGreeter(t)
	e := startEnv(t, "smtp", g.Addr)
	e.inject(t, grayfailure.New(), faults.Params{"mode": "reset"}, "smtp")
	c, err := net.Dial("tcp", e.listen)
	if errors.Is(err, syscall.ECONNRESET) {
		// On a busy machine the reset can beat Go's check of the connect:
		// the connection was accepted, then reset, which is the point.
		return
	}
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(waitFor)))
	_, err = io.ReadAll(c)
	require.True(t, errors.Is(err, syscall.ECONNRESET), "want a reset, got %v", err)
}

// TestFractionIsPerConnection checks that about the requested share of
// connections is affected: with p = 0.3 over 200 connections the count of
// stalled ones must fall within 4.5 standard deviations of 60.
func TestFractionIsPerConnection(t *testing.T) {
	g := startGreeter(t)
	e := startEnv(t, "smtp", g.Addr)
	e.inject(t, grayfailure.New(), faults.Params{"mode": "blackhole", "fraction": "30%", "direction": "downstream"}, "smtp")
	const n, p = 200, 0.3
	var mu sync.Mutex
	silentCount := 0
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", e.listen)
			if err != nil {
				return
			}
			defer c.Close()
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, err := bufio.NewReader(c).ReadString('\n'); errors.Is(err, os.ErrDeadlineExceeded) {
				mu.Lock()
				silentCount++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	mean, sd := n*p, 6.48 // sqrt(200*0.3*0.7)
	require.InDelta(t, mean, float64(silentCount), 4.5*sd, "affected %d of %d", silentCount, n)
}

// clamdEnv runs a bundled clamd engine behind a link.
func clamdEnv(t *testing.T) (*env, *clamd.Client) {
	t.Helper()
	e := startEnv(t, "av-engine-1", testnet.Run(t, &clamd.Server{}))
	return e, &clamd.Client{Addr: e.listen}
}

// mimeEICAR is a message carrying EICAR as a base64 attachment.
const mimeEICAR = "Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n" +
	"Content-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: application/octet-stream\r\n" +
	"Content-Transfer-Encoding: base64\r\n\r\nWDVPIVAlQEFQWzRcUFpYNTQoUF4pN0NDKTd9JEVJQ0FSLVNUQU5EQVJELUFOVElWSVJVUy1URVNULUZJTEUhJEgrSCo=\r\n--b--\r\n"

func timedScan(t *testing.T, c *clamd.Client, payload string) (clamd.Result, time.Duration) {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	res, err := c.Scan(ctx, []byte(payload))
	require.NoError(t, err)
	return res, time.Since(start)
}

func TestAVLatencySlowsOnlyMatchingScans(t *testing.T) {
	e, c := clamdEnv(t)
	inj := avlatency.New()
	// A delay far above what a scan takes on a busy machine, so that "not
	// slowed" cannot be mistaken for "slowed" either way.
	const delay = 3 * time.Second
	h := e.inject(t, inj, faults.Params{"latency": delay.String()})
	require.Equal(t, []faults.ToxicRef{{Proxy: "av-engine-1", Name: h.Toxics[0].Name}}, h.Toxics, "default links are the AV engines")

	res, d := timedScan(t, c, mimeEICAR)
	require.True(t, res.Infected)
	require.GreaterOrEqual(t, d, delay, "an infected scan was not slowed")
	res, d = timedScan(t, c, "Subject: clean\r\n\r\nhello\r\n")
	require.False(t, res.Infected)
	require.Less(t, d, delay, "a clean scan was slowed")

	require.NoError(t, inj.Remove(context.Background(), h))
	res, d = timedScan(t, c, mimeEICAR)
	require.True(t, res.Infected)
	require.Less(t, d, delay, "still slow after removal")
}

func TestAVLatencyEveryScan(t *testing.T) {
	e, c := clamdEnv(t)
	e.inject(t, avlatency.New(), faults.Params{"mode": "latency", "latency": "400ms"}, "av-engine-1")
	_, d := timedScan(t, c, "clean")
	require.GreaterOrEqual(t, d, 400*time.Millisecond)
}

func TestAVLatencyErrorReplies(t *testing.T) {
	e, c := clamdEnv(t)
	inj := avlatency.New()
	h := e.inject(t, inj, faults.Params{"mode": "error"}, "av-engine-1")
	_, err := c.Scan(context.Background(), []byte("clean"))
	var re *clamd.ReplyError
	require.ErrorAs(t, err, &re)
	require.Equal(t, "stream: Can't allocate memory ERROR", re.Reply)
	require.Error(t, c.Ping(context.Background()), "PONG should turn into an error too")
	require.NoError(t, inj.Remove(context.Background(), h))
	res, _ := timedScan(t, c, "clean")
	require.False(t, res.Infected)
}

func TestAVLatencyCloseAfter(t *testing.T) {
	e, c := clamdEnv(t)
	e.inject(t, avlatency.New(), faults.Params{"mode": "close-after", "bytes": "20"}, "av-engine-1")
	_, err := c.Scan(context.Background(), []byte("a payload longer than twenty bytes"))
	require.Error(t, err)
}

func TestBadParametersAreNamed(t *testing.T) {
	target := faults.Target{Toxiproxy: "http://127.0.0.1:1", Links: []faults.Link{{Name: "smtp"}, {Name: "av-engine-1"}}}
	tests := []struct {
		inj    faults.Injector
		params faults.Params
		links  []string
		want   string
	}{
		{grayfailure.New(), faults.Params{}, []string{"smtp"}, "gray-failure: parameter mode: is required (one of blackhole, stall-after, slow-drip, half-open, reset)"},
		{grayfailure.New(), faults.Params{"mode": "blakhole"}, []string{"smtp"}, `gray-failure: parameter mode = "blakhole": not a valid choice; did you mean "blackhole"?`},
		{grayfailure.New(), faults.Params{"mode": "blackhole", "fraktion": "1"}, []string{"smtp"}, `gray-failure: parameter fraktion: unknown parameter; did you mean "fraction"?`},
		{grayfailure.New(), faults.Params{"mode": "blackhole", "fraction": "2"}, []string{"smtp"}, `gray-failure: parameter fraction = "2": not between 0 and 1`},
		{grayfailure.New(), faults.Params{"mode": "blackhole", "fraction": "0.5"}, []string{"smtp"}, "a fraction below 1 needs one direction"},
		{grayfailure.New(), faults.Params{"mode": "stall-after", "after": "hello"}, []string{"smtp"}, `parameter after = "hello": not greeting or a byte count`},
		{grayfailure.New(), faults.Params{"mode": "blackhole"}, []string{"smpt"}, `gray-failure: parameter link = "smpt": the target has no such link; did you mean "smtp"?`},
		{grayfailure.New(), faults.Params{"mode": "blackhole"}, nil, "gray-failure: parameter link: is required"},
		{avlatency.New(), faults.Params{"latency": "slow"}, nil, `av-latency: parameter latency = "slow": not a duration`},
		{avlatency.New(), faults.Params{"mode": "latency", "latency": "2h"}, nil, `parameter latency = "2h": above the maximum 1h`},
	}
	for _, tt := range tests {
		err := tt.inj.Validate(context.Background(), faults.Request{Target: target, Links: tt.links, Params: tt.params})
		require.ErrorContains(t, err, tt.want)
		var pe *faults.ParamError
		require.ErrorAs(t, err, &pe)
		require.True(t, pe.InvalidInput())
	}
}

func TestReaperRemovesExpiredToxics(t *testing.T) {
	g := startGreeter(t)
	e := startEnv(t, "smtp", g.Addr)
	h, err := grayfailure.New().Inject(context.Background(), faults.Request{ID: "short", Owner: "test", Target: e.target,
		Links: []string{"smtp"}, Params: faults.Params{"mode": "blackhole"}, TTL: 300 * time.Millisecond})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		ts, err := e.srv.Client().Toxics(context.Background(), "smtp")
		return err == nil && len(ts) == 0
	}, waitFor, 10*time.Millisecond, "the expired fault was not reaped")
	require.True(t, time.Now().Before(h.Expires.Add(proxy.ReapInterval+5*time.Second)))
	dialGreeted(t, e.listen)
}

func TestRemoveOwned(t *testing.T) {
	g := startGreeter(t)
	e := startEnv(t, "smtp", g.Addr)
	e.inject(t, grayfailure.New(), faults.Params{"mode": "blackhole"}, "smtp")
	n, err := network.RemoveOwned(context.Background(), e.srv.Client(), "other", "")
	require.NoError(t, err)
	require.Zero(t, n)
	n, err = network.RemoveOwned(context.Background(), e.srv.Client(), "test", "")
	require.NoError(t, err)
	require.Equal(t, 2, n, "blackhole sits on both directions")
	dialGreeted(t, e.listen)
}

// TestStalledConnectionWhoseServerLeftEnds: a stalled connection holds
// the server's bytes, but once the server has closed its side the toxic
// does not wait for ever for a removal: the client sees the end after the
// grace, and no goroutine is stranded.
func TestStalledConnectionWhoseServerLeftEnds(t *testing.T) {
	g := startGreeter(t)
	e := startEnv(t, "smtp", g.Addr)
	inj := grayfailure.New()
	h := e.inject(t, inj, faults.Params{"mode": "stall-after"}, "smtp")
	c, r := dialGreeted(t, e.listen)
	_, err := io.WriteString(c, "EHLO client\r\n")
	require.NoError(t, err)
	silent(t, c, r, 200*time.Millisecond)
	require.Eventually(t, func() bool { return len(g.received()) == 1 }, waitFor, 5*time.Millisecond)
	g.CloseConns()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(waitFor)))
	_, err = io.ReadAll(r)
	require.NoError(t, err, "the connection ends (EOF), it does not hang")
	require.NoError(t, inj.Remove(context.Background(), h))
}

func TestCloseWithStalledConnectionsLeaksNothing(t *testing.T) {
	g := startGreeter(t)
	srv, err := proxy.StartServer(context.Background(), "127.0.0.1:0", nil)
	require.NoError(t, err)
	listen, err := srv.Link(context.Background(), "smtp", "127.0.0.1:0", g.Addr)
	require.NoError(t, err)
	target := faults.Target{Toxiproxy: srv.URL(), Links: []faults.Link{{Name: "smtp", Listen: listen}}}
	_, err = grayfailure.New().Inject(context.Background(), faults.Request{ID: "x", Owner: "test", Target: target,
		Links: []string{"smtp"}, Params: faults.Params{"mode": "stall-after"}, TTL: time.Hour})
	require.NoError(t, err)
	for i := 0; i < 5; i++ {
		c, r := dialGreeted(t, listen)
		_, err := io.WriteString(c, "EHLO\r\n")
		require.NoError(t, err)
		_ = r
	}
	srv.Close()
	srv.Close()
	// goleak in TestMain checks that no proxy goroutine survived.
}

func TestApplyRollsBackOnFailure(t *testing.T) {
	g := startGreeter(t)
	e := startEnv(t, "smtp", g.Addr)
	_, err := network.Apply(context.Background(), faults.Request{ID: "x", Owner: "test", Target: e.target, TTL: time.Hour},
		[]network.ToxicOn{
			{Link: "smtp", Type: network.ToxicBlackhole, Stream: network.Downstream},
			{Link: "smtp", Type: "no_such_toxic", Stream: network.Downstream},
		})
	require.ErrorContains(t, err, "no_such_toxic")
	e.requireNoToxics(t, "smtp", "the first toxic was left behind")
}

// TestApplyCancelledMidCallLeavesNothing: a request cancelled while an
// add is on its way to the server (a first Ctrl-C) must not leave that
// toxic behind: the server would add it after the rollback had looked.
// The API is reached through a front that holds the second add until the
// caller has given up.
func TestApplyCancelledMidCallLeavesNothing(t *testing.T) {
	g := startGreeter(t)
	e := startEnv(t, "smtp", g.Addr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	api, err := url.Parse(e.srv.URL())
	require.NoError(t, err)
	var posts atomic.Int32
	later := make(chan struct{}) // closed by the first request after the held add
	var laterOnce sync.Once
	upstream := httputil.NewSingleHostReverseProxy(api)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		held := r.Method == http.MethodPost && posts.Add(1) == 2
		switch {
		case held:
			cancel()
			// The server gets the add late, as a slow server or network
			// would have it: after whatever the caller sends next, or
			// after a while if it sends nothing.
			r = r.WithContext(context.WithoutCancel(r.Context()))
			select {
			case <-later:
			case <-time.After(300 * time.Millisecond):
			}
		case posts.Load() >= 2:
			laterOnce.Do(func() { close(later) })
		}
		r.Host = api.Host // the API's Host guard knows the server by its own name
		upstream.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	target := e.target
	target.Toxiproxy = front.URL
	_, err = network.Apply(ctx, faults.Request{ID: "x", Owner: "test", Target: target, TTL: time.Hour},
		[]network.ToxicOn{
			{Link: "smtp", Type: network.ToxicBlackhole, Stream: network.Downstream},
			{Link: "smtp", Type: network.ToxicBlackhole, Stream: network.Upstream},
		})
	require.ErrorIs(t, err, context.Canceled)
	e.requireNoToxics(t, "smtp", "a toxic was left behind")
}

// TestAddToxicRejectsUnknownAttributes: toxiproxy ignores an attribute its
// toxic type lacks; mailchaos refuses it, naming it, and leaves nothing.
func TestAddToxicRejectsUnknownAttributes(t *testing.T) {
	g := startGreeter(t)
	e := startEnv(t, "smtp", g.Addr)
	c := e.srv.Client()
	err := c.AddToxic(context.Background(), "smtp", network.Toxic{Name: "t", Type: "latency", Stream: network.Downstream,
		Attributes: map[string]any{"latencyy": 100}})
	require.ErrorContains(t, err, "toxic type latency has no attribute latencyy (it has: jitter, latency)")
	e.requireNoToxics(t, "smtp", "the refused toxic was left behind")
	require.NoError(t, c.AddToxic(context.Background(), "smtp", network.Toxic{Name: "t", Type: "latency", Stream: network.Downstream,
		Attributes: map[string]any{"latency": 100}}))
}
