package probes_test

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/experiments/probes"
	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/targets/mailstack"
)

func TestCanaryIsDelivered(t *testing.T) {
	s, target := startStack(t, testConfig(t))
	p := newProbe(t, probes.CanaryKind(), target, faults.Params{"to": "bob@example.test"})
	require.Equal(t, "s", p.(probes.Uniter).Unit())

	sample := measure(p, waitFor)
	requireOK(t, sample)
	require.Greater(t, sample.Value, 0.0)
	require.Less(t, sample.Value, waitFor.Seconds())

	sent := p.(probes.Canary).Sent()
	require.Equal(t, []string{"run1-sli-1"}, sent)
	recs := s.Messages()
	require.Len(t, recs, 1)
	require.Equal(t, "run1-sli-1", recs[0].MailchaosID)
	require.Equal(t, "alice@example.test", recs[0].From, "the first user sends by default")
	require.Equal(t, []string{"bob@example.test"}, recs[0].To)
	require.Equal(t, mailstack.StateDelivered, recs[0].State)
	require.True(t, strings.HasPrefix(recs[0].MessageID, "<run1-sli-1@"), recs[0].MessageID)

	// A second canary on the same IMAP connection.
	requireOK(t, measure(p, waitFor))
	require.Equal(t, []string{"run1-sli-1", "run1-sli-2"}, p.(probes.Canary).Sent())
}

func TestCanaryDefaultsToTheFirstUserSendingToItself(t *testing.T) {
	s, target := startStack(t, testConfig(t))
	p := newProbe(t, probes.CanaryKind(), target, faults.Params{})
	requireOK(t, measure(p, waitFor))
	recs := s.Messages()
	require.Len(t, recs, 1)
	require.Equal(t, "alice@example.test", recs[0].From)
	require.Equal(t, []string{"alice@example.test"}, recs[0].To)
}

func TestCanaryStuckBehindASlowEngineFails(t *testing.T) {
	cfg := testConfig(t)
	// Every engine takes an hour over the canary (its payload carries the
	// run ID); other mail is scanned at once.
	for i := range cfg.Engines {
		cfg.Engines[i].Delay = time.Hour
		cfg.Engines[i].DelayMatch = "run1-sli-"
	}
	s, target := startStack(t, cfg)
	p := newProbe(t, probes.CanaryKind(), target, faults.Params{})

	sample := measure(p, 2*time.Second)
	require.True(t, sample.Failed, "a stuck canary must fail")
	require.Regexp(t, `^canary not delivered within [0-9.]+s \(run1-sli-1\)$`, sample.Err)
	require.Equal(t, []string{"run1-sli-1"}, p.(probes.Canary).Sent(), "the canary was accepted")
	require.Equal(t, 1, s.Counts().Accepted)

	// Clean mail still flows past the stuck canary.
	waitDelivered(t, s, sendMail(t, target.Endpoints["smtp"], 1))
}

func TestCanarySMTPErrorFails(t *testing.T) {
	_, target := startStack(t, testConfig(t))
	p := newProbe(t, probes.CanaryKind(), target, faults.Params{"to": "nobody@example.test"})
	sample := measure(p, waitFor)
	require.True(t, sample.Failed)
	require.Contains(t, sample.Err, "RCPT TO")
	require.Contains(t, sample.Err, "no such user")
	require.Empty(t, p.(probes.Canary).Sent(), "a rejected canary was not sent")

	target.Endpoints["smtp"] = closedAddr(t)
	p = newProbe(t, probes.CanaryKind(), target, faults.Params{})
	sample = measure(p, waitFor)
	require.True(t, sample.Failed)
	require.Contains(t, sample.Err, "connect")
}

func TestCanaryReportsIMAPErrors(t *testing.T) {
	_, target := startStack(t, testConfig(t))
	p := newProbe(t, probes.CanaryKind(), target, faults.Params{"password": "wrong"})
	sample := measure(p, 2*time.Second)
	require.True(t, sample.Failed)
	require.Regexp(t, `not delivered within [0-9.]+s`, sample.Err)
	require.Contains(t, sample.Err, "; IMAP: log in as alice@example.test")
}

func TestCanaryConcurrentMeasures(t *testing.T) {
	s, target := startStack(t, testConfig(t))
	p := newProbe(t, probes.CanaryKind(), target, faults.Params{"to": "bob@example.test"})
	const n = 10
	samples := make([]probes.Sample, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			samples[i] = measure(p, waitFor)
		}()
	}
	wg.Wait()
	for _, sample := range samples {
		requireOK(t, sample)
		require.Greater(t, sample.Value, 0.0)
	}
	sent := p.(probes.Canary).Sent()
	require.Len(t, sent, n)
	seen := map[string]bool{}
	for _, id := range sent {
		require.False(t, seen[id], "canary ID %s sent twice", id)
		seen[id] = true
	}
	for _, r := range s.Messages() {
		require.True(t, seen[r.MailchaosID], "the stack got an unknown canary %q", r.MailchaosID)
		require.Equal(t, mailstack.StateDelivered, r.State)
	}
	require.Equal(t, n, s.Counts().Delivered)
}

func TestCanaryCloseStopsWaitingMeasures(t *testing.T) {
	cfg := testConfig(t)
	for i := range cfg.Engines {
		cfg.Engines[i].Delay = time.Hour
	}
	_, target := startStack(t, cfg)
	p, err := probes.CanaryKind().New(probes.Config{Name: "sli", Target: target, RunID: "run1"})
	require.NoError(t, err)
	got := make(chan probes.Sample, 1)
	go func() { got <- p.Measure(context.Background()) }()
	require.Eventually(t, func() bool { return len(p.(probes.Canary).Sent()) == 1 }, waitFor, 5*time.Millisecond)
	require.NoError(t, p.Close())
	require.NoError(t, p.Close(), "Close is idempotent")
	select {
	case sample := <-got:
		require.True(t, sample.Failed)
		require.Contains(t, sample.Err, "closed")
	case <-time.After(waitFor):
		t.Fatal("Measure did not return after Close")
	}
	sample := p.Measure(context.Background())
	require.True(t, sample.Failed)
	require.Contains(t, sample.Err, "closed")
}

// cutter is a loopback TCP forwarder whose connections the test can cut.
type cutter struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

// newCutter forwards a new loopback port to upstream until the test ends.
func newCutter(t testing.TB, upstream string) *cutter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	c := &cutter{ln: ln}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				_ = down.Close()
				continue
			}
			c.mu.Lock()
			c.conns = append(c.conns, down, up)
			c.mu.Unlock()
			c.wg.Add(2)
			go func() { defer c.wg.Done(); _, _ = io.Copy(up, down); _ = up.Close() }()
			go func() { defer c.wg.Done(); _, _ = io.Copy(down, up); _ = down.Close() }()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		c.cut()
		c.wg.Wait()
	})
	return c
}

// cut closes every forwarded connection.
func (c *cutter) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		_ = conn.Close()
	}
	c.conns = nil
}

func TestCanaryReconnectsToIMAP(t *testing.T) {
	_, target := startStack(t, testConfig(t))
	proxy := newCutter(t, target.Endpoints["imap"])
	target.Endpoints["imap"] = proxy.ln.Addr().String()
	p := newProbe(t, probes.CanaryKind(), target, faults.Params{})
	requireOK(t, measure(p, waitFor))
	proxy.cut()
	requireOK(t, measure(p, waitFor))
	proxy.cut()
	requireOK(t, measure(p, waitFor))
}

func TestCanaryAmongOtherMail(t *testing.T) {
	s, target := startStack(t, testConfig(t))
	var ids []string
	for i := range 20 {
		ids = append(ids, sendMail(t, target.Endpoints["smtp"], i))
	}
	waitDelivered(t, s, ids...)
	p := newProbe(t, probes.CanaryKind(), target, faults.Params{"to": "bob@example.test"})
	for range 3 {
		requireOK(t, measure(p, waitFor))
		waitDelivered(t, s, sendMail(t, target.Endpoints["smtp"], 99))
	}
	require.Equal(t, []string{"run1-sli-1", "run1-sli-2", "run1-sli-3"}, p.(probes.Canary).Sent())
}
