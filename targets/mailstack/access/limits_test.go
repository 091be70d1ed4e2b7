package access_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/targets/mailstack/access"
)

// dialGreeting connects to addr and returns the connection and its first
// line.
func dialGreeting(t testing.TB, addr string) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	r := bufio.NewReader(c)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(waitFor)))
	l, err := r.ReadString('\n')
	require.NoError(t, err)
	return c, r, l
}

// holdIdle opens n connections to addr that never send anything; the ones
// greeted with OK are kept open until the test ends, the ones refused
// with BYE are closed. It returns how many of each.
func holdIdle(t testing.TB, addr string, n int) (held, refused int) {
	t.Helper()
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			_ = c.Close()
		}
	})
	var wg sync.WaitGroup
	jobs := make(chan struct{})
	errs := make(chan error, n)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					errs <- err
					continue
				}
				_ = c.SetReadDeadline(time.Now().Add(waitFor))
				l, err := bufio.NewReader(c).ReadString('\n')
				mu.Lock()
				switch {
				case err != nil:
					errs <- err
					_ = c.Close()
				case strings.HasPrefix(l, "* OK"):
					held++
					conns = append(conns, c)
				case l == "* BYE too many connections\r\n":
					refused++
					_ = c.Close()
				default:
					errs <- fmt.Errorf("unexpected greeting %q", l)
					_ = c.Close()
				}
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < n; i++ {
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	return held, refused
}

func TestBalancerCapHoldsIdleConnectionsAndANormalClientStillLogsIn(t *testing.T) {
	t.Parallel()
	cfg := quietConfig()
	cfg.MaxConnections = 50
	tier, reg := startTier(t, cfg, nil)
	held, refused := holdIdle(t, tier.Addr(), 2000)
	t.Logf("held %d, refused %d", held, refused)
	// Connections older than SilentAfter may be evicted by later ones, so
	// more than the cap may have been greeted; never more than the cap at
	// once.
	require.GreaterOrEqual(t, held, 50)
	require.Greater(t, refused, 0)
	// Evicted sessions wind down a moment after their eviction.
	require.Eventually(t, func() bool {
		total := 0
		for _, s := range tier.Sites() {
			total += s.Sessions
		}
		return total <= 50
	}, waitFor, 10*time.Millisecond)
	// Only greeted sessions are evicted, so a connection whose first line
	// was "too many connections" was refused at once.
	require.Equal(t, float64(refused), value(t, reg, access.MetricConnectionsRefused, "listener", access.ListenerBalancer))

	// A client that speaks is admitted in place of the longest-silent
	// session once it has been silent for SilentAfter.
	var c *imapclient.Client
	require.Eventually(t, func() bool {
		cl, err := imapclient.DialInsecure(tier.Addr(), nil)
		if err != nil {
			return false
		}
		if err := cl.Login("alice@example.test", "password").Wait(); err != nil {
			_ = cl.Close()
			return false
		}
		c = cl
		return true
	}, waitFor, 50*time.Millisecond)
	defer c.Close()
	_, err := c.Select("INBOX", nil).Wait()
	require.NoError(t, err)
	require.GreaterOrEqual(t, value(t, reg, access.MetricConnectionsEvicted, "listener", access.ListenerBalancer), 1.0)
}

func TestHealthChecksPassWhileTheBalancerIsAtItsCap(t *testing.T) {
	t.Parallel()
	cfg := quietConfig()
	cfg.Sites = []access.SiteConfig{{Name: "only"}}
	cfg.MaxConnections = 5
	cfg.Health = access.HealthConfig{Mode: access.HealthDeep, Interval: 20 * time.Millisecond,
		Timeout: time.Second, HealthyThreshold: 1, UnhealthyThreshold: 1,
		Login: &access.Login{Address: "alice@example.test", Password: "password"}}
	tier, _ := startTier(t, cfg, nil)
	// Five logged-in sessions: the balancer is at its cap, and every one
	// of them is on the one site, which still has room for the checks.
	for i := 0; i < 5; i++ {
		login(t, tier.Addr())
	}
	c, _, l := dialGreeting(t, tier.Addr())
	_ = c.Close()
	require.Equal(t, "* BYE too many connections\r\n", l)
	before := byName(t, tier, "only").Counters
	require.Eventually(t, func() bool { return byName(t, tier, "only").Counters.Checks >= before.Checks+5 }, waitFor, 10*time.Millisecond)
	st := byName(t, tier, "only")
	require.Equal(t, before.CheckFailures, st.Counters.CheckFailures, "health checks failed at the cap")
	require.True(t, st.Healthy)
}

// startSite serves one site with lim on loopback until the test ends.
func startSite(t testing.TB, lim access.SiteLimits) *access.Site {
	t.Helper()
	s := access.NewSite("s", store(t).NewSession, nil)
	s.SetLimits(lim)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		require.NoError(t, s.Close())
		require.NoError(t, <-done)
	})
	require.Eventually(t, func() bool { return s.Addr() != "" }, waitFor, time.Millisecond)
	return s
}

func TestSiteCapLeavesHeadroomThenRefuses(t *testing.T) {
	t.Parallel()
	refused := 0
	var mu sync.Mutex
	s := startSite(t, access.SiteLimits{MaxConnections: 4, OnRefused: func() { mu.Lock(); refused++; mu.Unlock() }})
	held, n := holdIdle(t, s.Addr(), 4+access.SiteHeadroom+10)
	require.Equal(t, 4+access.SiteHeadroom, held)
	require.Equal(t, 10, n)
	// The site counts a refusal once it has written its BYE, which the
	// client may read first.
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return refused == 10
	}, waitFor, time.Millisecond)
}

// raw sends lines on c and returns the next line read.
func raw(t testing.TB, c net.Conn, r *bufio.Reader, send string) string {
	t.Helper()
	_, err := io.WriteString(c, send)
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(waitFor)))
	l, err := r.ReadString('\n')
	require.NoError(t, err)
	return l
}

// requireClosed checks that the server closes c within the wait bound (a
// reset counts: the server closed with bytes of ours unread).
func requireClosed(t testing.TB, c net.Conn, r *bufio.Reader) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(waitFor)))
	rest, err := io.ReadAll(r)
	require.False(t, errors.Is(err, os.ErrDeadlineExceeded), "connection still open; read %q", rest)
}

func TestFailedLoginsEndTheConnection(t *testing.T) {
	t.Parallel()
	var locked atomic.Int32
	s := startSite(t, access.SiteLimits{MaxLoginFailures: 3, OnLockout: func() { locked.Add(1) }})
	c, r, _ := dialGreeting(t, s.Addr())
	defer c.Close()
	require.True(t, strings.HasPrefix(raw(t, c, r, "a1 LOGIN alice@example.test wrong\r\n"), "a1 NO"))
	require.True(t, strings.HasPrefix(raw(t, c, r, "a2 AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUudGVzdAB3cm9uZw==\r\n"), "a2 NO"))
	require.Equal(t, "* BYE too many failed log-ins\r\n", raw(t, c, r, "a3 LOGIN alice@example.test wrong\r\n"))
	requireClosed(t, c, r)
	require.Eventually(t, func() bool { return locked.Load() == 1 }, waitFor, time.Millisecond)

	// Another connection starts afresh.
	c2, r2, _ := dialGreeting(t, s.Addr())
	defer c2.Close()
	require.True(t, strings.HasPrefix(raw(t, c2, r2, "b1 LOGIN alice@example.test wrong\r\n"), "b1 NO"))
	require.True(t, strings.HasPrefix(raw(t, c2, r2, "b2 LOGIN alice@example.test password\r\n"), "b2 OK"))
}

func TestLiteralsOverTheLimitGetBAD(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	reasons := map[string]int{}
	s := startSite(t, access.SiteLimits{MaxAppendBytes: 1000, OnRejected: func(r string) { mu.Lock(); reasons[r]++; mu.Unlock() }})
	c, r, _ := dialGreeting(t, s.Addr())
	defer c.Close()
	// A synchronizing literal: the client waits for "+", gets BAD at
	// once, and the connection goes on.
	l := raw(t, c, r, "a1 LOGIN {999999999}\r\n")
	require.Equal(t, "a1 BAD [CLIENTBUG] literal of 999999999 bytes is over the limit of 4096 bytes for LOGIN\r\n", l)
	l = raw(t, c, r, "a2 LOGIN {18}\r\n")
	require.True(t, strings.HasPrefix(l, "+"), l)
	require.True(t, strings.HasPrefix(raw(t, c, r, "alice@example.test password\r\n"), "a2 OK"))
	// APPEND takes up to the message limit.
	require.True(t, strings.HasPrefix(raw(t, c, r, "a3 APPEND INBOX {1001}\r\n"), "a3 BAD [CLIENTBUG] literal of 1001 bytes is over the limit of 1000 bytes for APPEND"))
	msg := "Subject: hi\r\n\r\nhello\r\n"
	require.True(t, strings.HasPrefix(raw(t, c, r, fmt.Sprintf("a4 APPEND INBOX {%d}\r\n", len(msg))), "+"))
	require.True(t, strings.HasPrefix(raw(t, c, r, msg+"\r\n"), "a4 OK"))
	// A non-synchronizing literal's bytes are on their way: BAD, then BYE.
	require.Equal(t, "a5 BAD [CLIENTBUG] literal of 999999999 bytes is over the limit of 4096 bytes for SELECT\r\n",
		raw(t, c, r, "a5 SELECT {999999999+}\r\nxxxx"))
	require.Equal(t, "* BYE command rejected\r\n", raw(t, c, r, ""))
	requireClosed(t, c, r)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, 3, reasons[access.RejectLiteral])
}

func TestHugeRangesAndDeepSearchesGetBAD(t *testing.T) {
	t.Parallel()
	s := startSite(t, access.SiteLimits{})
	c, r, _ := dialGreeting(t, s.Addr())
	defer c.Close()
	require.True(t, strings.HasPrefix(raw(t, c, r, "a LOGIN alice@example.test password\r\n"), "a OK"))
	_, err := io.WriteString(c, "b SELECT INBOX\r\n")
	require.NoError(t, err)
	for {
		l, err := r.ReadString('\n')
		require.NoError(t, err)
		if strings.HasPrefix(l, "b ") {
			require.True(t, strings.HasPrefix(l, "b OK"), l)
			break
		}
	}
	for _, tc := range []struct{ cmd, want string }{
		{"c1 UID FETCH 1:999999999999999999 FLAGS", "c1 BAD [CLIENTBUG] sequence number 999999999999999999 is out of range (1 to 4294967295)\r\n"},
		{"c2 FETCH 4294967296 FLAGS", "c2 BAD [CLIENTBUG] sequence number 4294967296 is out of range (1 to 4294967295)\r\n"},
		{"c3 UID SEARCH UID 1:99999999999999", "c3 BAD [CLIENTBUG] sequence number 99999999999999 is out of range (1 to 4294967295)\r\n"},
		{"c4 SEARCH " + strings.Repeat("(", 3000) + "ALL" + strings.Repeat(")", 3000), "c4 BAD [CLIENTBUG] search criteria nested deeper than 32\r\n"},
		{"c5 SEARCH " + strings.Repeat("OR ALL ", 300) + "ALL", "c5 BAD [CLIENTBUG] search criteria with more than 256 OR and NOT keys\r\n"},
		{"c6 STORE 0:* +FLAGS (\\Seen)", "c6 BAD [CLIENTBUG] sequence number 0 is out of range (1 to 4294967295)\r\n"},
	} {
		require.Equal(t, tc.want, raw(t, c, r, tc.cmd+"\r\n"), tc.cmd[:2])
	}
	// Ordinary ranges and searches still work, with large numbers where
	// the grammar allows them.
	require.True(t, strings.HasPrefix(raw(t, c, r, "d1 UID FETCH 1:4294967295 FLAGS\r\n"), "d1 OK"))
	require.Equal(t, "* SEARCH\r\n", raw(t, c, r, "d2 SEARCH LARGER 99999999999 (OR SEEN NOT DELETED) 1:*\r\n"))
	require.True(t, strings.HasPrefix(raw(t, c, r, ""), "d2 OK"))
	// A command longer than go-imap takes: BAD, then BYE.
	l := raw(t, c, r, "e1 SEARCH "+strings.Repeat("ALL ", 20000)+"\r\n")
	require.Equal(t, "e1 BAD [CLIENTBUG] command longer than 49152 bytes\r\n", l)
	requireClosed(t, c, r)
}

func TestInvalidLimits(t *testing.T) {
	t.Parallel()
	cfg := access.DefaultConfig()
	cfg.MaxConnections = 0
	cfg.MaxLoginFailures = -1
	_, err := access.New(cfg, access.Options{NewSession: store(t).NewSession})
	require.EqualError(t, err, "2 errors:\n"+
		"  max-connections: must be at least 1, got 0\n"+
		"  max-login-failures: must be at least 1, got -1")
}

// The abuse cases of the limits, as fuzz seeds.
var imapAbuse = []string{
	"a LOGIN {999999999}\r\n",
	"a LOGIN {999999999+}\r\nxx",
	"a LOGIN alice@example.test password\r\nb SELECT INBOX\r\nc UID FETCH 1:999999999999999999 FLAGS\r\n",
	"a LOGIN alice@example.test password\r\nb SELECT INBOX\r\nc SEARCH " + strings.Repeat("(", 100) + "ALL" + strings.Repeat(")", 100) + "\r\n",
	"a LOGIN x y\r\nb LOGIN x y\r\nc LOGIN x y\r\nd LOGIN x y\r\n",
	"a LOGIN {5}\r\nalice {8}\r\npassword\r\nb APPEND INBOX {3+}\r\nabc\r\n",
	"a AUTHENTICATE PLAIN\r\n*\r\n",
	"a LOGIN alice@example.test password\r\nb IDLE\r\nDONE\r\nc LOGOUT\r\n",
}

// FuzzIMAPSession feeds arbitrary bytes to a site over loopback and checks
// that the site neither panics nor keeps the connection past a deadline
// once the client has stopped sending.
func FuzzIMAPSession(f *testing.F) {
	for _, s := range imapAbuse {
		f.Add([]byte(s))
	}
	panics := &panicCatcher{}
	s := access.NewSite("fuzz", store(f).NewSession, panics.logger())
	s.SetLimits(access.SiteLimits{MaxConnections: 100, MaxLoginFailures: 3, MaxAppendBytes: 1 << 16})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(f, err)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	f.Cleanup(func() {
		require.NoError(f, s.Close())
		require.NoError(f, <-done)
	})
	require.Eventually(f, func() bool { return s.Addr() != "" }, waitFor, time.Millisecond)
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := net.Dial("tcp", s.Addr())
		require.NoError(t, err)
		defer c.Close()
		deadline := time.Now().Add(10 * time.Second)
		require.NoError(t, c.SetDeadline(deadline))
		// Read everything the site says while writing, so that it is never
		// blocked on a full socket buffer.
		read := make(chan error, 1)
		go func() {
			_, err := io.Copy(io.Discard, c)
			read <- err
		}()
		_, _ = c.Write(in) // the site may close first
		_ = c.(*net.TCPConn).CloseWrite()
		// A reset is a close with our bytes unread; only the deadline is a
		// hang.
		err = <-read
		require.False(t, errors.Is(err, os.ErrDeadlineExceeded), "the site did not close the connection within the deadline")
		require.Empty(t, panics.get())
	})
}

// panicCatcher records log lines that report a recovered panic.
type panicCatcher struct {
	mu    sync.Mutex
	lines []string
}

func (p *panicCatcher) get() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// logger returns a logger that records, at every level, the messages
// that report a panic.
func (p *panicCatcher) logger() *slog.Logger { return slog.New(p) }

// Enabled implements slog.Handler.
func (p *panicCatcher) Enabled(context.Context, slog.Level) bool { return true }

// Handle implements slog.Handler.
func (p *panicCatcher) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "panic") {
		p.mu.Lock()
		p.lines = append(p.lines, r.Message)
		p.mu.Unlock()
	}
	return nil
}

// WithAttrs implements slog.Handler.
func (p *panicCatcher) WithAttrs([]slog.Attr) slog.Handler { return p }

// WithGroup implements slog.Handler.
func (p *panicCatcher) WithGroup(string) slog.Handler { return p }
