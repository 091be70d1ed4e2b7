package loadsurge_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/loadsurge"
	"github.com/mailchaos/mailchaos/faults/loadsurge/loadfig"
	"github.com/mailchaos/mailchaos/faults/loadsurge/sinktest"
)

// gate blocks the sink's hooks until the test releases it, counting who
// waits. The test must release it before the sink closes (a cleanup
// registered after the sink started runs before the sink's own).
type gate struct {
	open    chan struct{}
	once    sync.Once
	waiting atomic.Int64
}

func newGate() *gate { return &gate{open: make(chan struct{})} }

func (g *gate) wait() {
	g.waiting.Add(1)
	<-g.open
}

func (g *gate) release() { g.once.Do(func() { close(g.open) }) }

func TestOfferedRateIsOverThePlannedDuration(t *testing.T) {
	t.Parallel()
	// Every message takes 300 ms, so the run lasts its 500 ms and then
	// waits up to 300 ms for the last replies: the offered rate is the
	// schedule's, not the count over the whole run.
	s := sinktest.Start(t, sinktest.Options{Data: func([]byte) error { time.Sleep(300 * time.Millisecond); return nil }})
	r := start(t, loadsurge.Config{Addr: s.Addr, Schedule: loadsurge.Constant(200), Duration: 500 * time.Millisecond,
		Concurrency: 200, Grace: waitFor})
	res := wait(t, r)
	requireBalanced(t, res)
	require.EqualValues(t, 100, res.Scheduled, res.String())
	require.EqualValues(t, 100, res.Accepted, res.String())
	require.Greater(t, res.Duration, 750*time.Millisecond, "the run waited for the last replies")
	require.InDelta(t, 200, res.OfferedRate, 1e-9, res.String())
	require.Contains(t, res.String(), "offered 200.0 msg/s")
	require.Less(t, res.AchievedRate, 140.0, "achieved: over the whole run, grace included")
	require.False(t, res.Scheduling)
	require.Zero(t, res.StatusFigures()[loadfig.Scheduling])
}

func TestOfferedRateWhileRunningAndStopped(t *testing.T) {
	s := sinktest.Start(t, sinktest.Options{})
	r := start(t, loadsurge.Config{Addr: s.Addr, Schedule: loadsurge.Constant(100), Duration: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	require.True(t, s.WaitCount(ctx, 100))
	snap := r.Snapshot()
	require.True(t, snap.Scheduling)
	require.Equal(t, 1.0, snap.StatusFigures()[loadfig.Scheduling])
	r.Stop()
	res := r.Wait()
	requireBalanced(t, res)
	// Over the time until the stop: the count made due by then at 100/s.
	require.InDelta(t, 100, res.OfferedRate, 10, res.String())
	require.False(t, res.Scheduling)
}

func TestCutAtTheHardEnd(t *testing.T) {
	t.Parallel()
	// The server holds every message either at RCPT (before its end of
	// DATA was sent) or after reading it (at the end of DATA, before
	// answering). The run is cut off with all of them in flight: they are
	// cut, not timed out, and the cut ones the server may have accepted
	// are exactly those held after their end of DATA.
	rcptGate, dataGate := newGate(), newGate()
	s := sinktest.Start(t, sinktest.Options{
		Rcpt: func(to string) error {
			if to == "held-at-rcpt@example.test" {
				rcptGate.wait()
			}
			return nil
		},
		Data: func([]byte) error { dataGate.wait(); return nil },
	})
	t.Cleanup(rcptGate.release)
	t.Cleanup(dataGate.release)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, err := loadsurge.Start(ctx, loadsurge.Config{Addr: s.Addr, Schedule: loadsurge.Constant(100), Duration: 200 * time.Millisecond,
		Concurrency: 40, PerSession: 1, Grace: waitFor, Rcpts: []string{"held-at-rcpt@example.test", "bob@example.test"}, RunID: "cut"})
	r = started(t, r, err)
	require.Eventually(t, func() bool { return rcptGate.waiting.Load()+dataGate.waiting.Load() == 20 }, waitFor, time.Millisecond,
		"every message is held by the server")
	require.Positive(t, rcptGate.waiting.Load())
	require.Positive(t, dataGate.waiting.Load())
	cancel() // the hard end
	res := wait(t, r)
	requireBalanced(t, res)
	require.EqualValues(t, 20, res.Cut, res.String())
	require.Equal(t, dataGate.waiting.Load(), res.CutAfterData, res.String())
	require.Zero(t, res.Timeout+res.Accepted+res.Unsent, res.String())
	require.Contains(t, res.String(), "20 cut (")
	st := res.StatusFigures()
	require.Equal(t, 20.0, st[loadfig.Cut])
	require.Equal(t, float64(res.CutAfterData), st[loadfig.CutAfterData])

	// The server goes on and accepts what it holds after the end of DATA:
	// the generator could not tell, the server's records can.
	dataGate.release()
	wctx, wcancel := context.WithTimeout(context.Background(), waitFor)
	defer wcancel()
	require.True(t, s.WaitCount(wctx, res.CutAfterData))
	require.Equal(t, res.Accepted+res.CutAfterData, s.Count())
}

func TestTimeoutBeforeTheHardEndIsATimeout(t *testing.T) {
	t.Parallel()
	// A reply that does not come within the timeout is a timeout even when
	// the run ends soon after.
	addr := silentServer(t)
	r := start(t, loadsurge.Config{Addr: addr, Schedule: loadsurge.Constant(20), Duration: 100 * time.Millisecond,
		Concurrency: 5, Timeout: 50 * time.Millisecond, Grace: waitFor})
	res := wait(t, r)
	requireBalanced(t, res)
	require.EqualValues(t, 2, res.Timeout, res.String())
	require.Zero(t, res.Cut, res.String())
}

func TestStatusFiguresGiveTheWindow(t *testing.T) {
	var refuse atomic.Bool
	s := sinktest.Start(t, sinktest.Options{Data: func([]byte) error {
		if refuse.Load() {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "try later"}
		}
		return nil
	}})
	inj := loadsurge.New()
	ctx := context.Background()
	req := request("fig", s.Addr, faults.Params{"rate": "200/s", "concurrency": "10"})
	req.Duration, req.TTL = time.Hour, time.Hour+faults.DefaultTTLGrace
	h, err := inj.Inject(ctx, req)
	require.NoError(t, err)
	t.Cleanup(func() { _ = inj.Remove(ctx, h) })
	status := func() loadfig.Figures {
		st, err := inj.Status(ctx, h)
		require.NoError(t, err)
		require.True(t, st.Active)
		return st.Figures
	}
	// Wait on the run's own clock, not the test's.
	after := func(f loadfig.Figures, d time.Duration) loadfig.Figures {
		var g loadfig.Figures
		require.Eventually(t, func() bool {
			g = status()
			return g[loadfig.Elapsed]-f[loadfig.Elapsed] >= d.Seconds()
		}, waitFor, 5*time.Millisecond)
		return g
	}

	a := after(nil, 300*time.Millisecond)
	b := after(a, time.Second)
	w := loadfig.Window(a, b)
	require.GreaterOrEqual(t, w.Seconds, 1.0)
	require.InDelta(t, 200, w.OfferedRate, 40, "%+v", w)
	require.InDelta(t, 200, w.AcceptedRate, 40, "%+v", w)
	require.Zero(t, w.Tempfail)
	require.InDelta(t, w.Succeeded, w.Latencies(), 0, "every accepted message is in the histogram")
	p99, ok := w.Quantile(0.99)
	require.True(t, ok)
	require.Less(t, p99, time.Second)
	require.Equal(t, 1.0, b[loadfig.Scheduling])

	// Now the server refuses everything with 451: the next window is all
	// tempfail, and holds no latency.
	refuse.Store(true)
	c := after(b, 300*time.Millisecond)
	d := after(c, 500*time.Millisecond)
	w = loadfig.Window(c, d)
	require.Positive(t, w.Ended)
	// (A reply the scheduler held back past the switch may still land in
	// it on a busy machine.)
	require.GreaterOrEqual(t, w.Tempfail, 0.95, "%+v", w)
	require.LessOrEqual(t, w.AcceptedRate*0.5, 0.05*float64(w.Ended), "%+v", w)
}

func TestStatusLatencyHistogramMatchesTheRun(t *testing.T) {
	t.Parallel()
	s := sinktest.Start(t, sinktest.Options{})
	r := start(t, loadsurge.Config{Addr: s.Addr, Count: 300, Concurrency: 4})
	res := wait(t, r)
	requireBalanced(t, res)
	w := loadfig.Window(nil, res.StatusFigures())
	require.Equal(t, float64(res.Accepted), w.Succeeded)
	require.Equal(t, float64(res.Accepted), w.Latencies())
	require.Equal(t, float64(res.Scheduled), w.Offered)
	require.InDelta(t, res.Duration.Seconds(), w.Seconds, 1e-9)
	for _, q := range []struct {
		q   float64
		hdr time.Duration
	}{{0.5, res.Latency.P50}, {0.99, res.Latency.P99}} {
		got, ok := w.Quantile(q.q)
		require.True(t, ok)
		// The HDR histogram is exact to 0.1 %, ours to a bucket (5 %);
		// latencies under 100 µs share the first bucket.
		require.InDelta(t, float64(q.hdr), float64(got), 0.06*float64(q.hdr)+float64(loadfig.LatencyMin),
			"p%g: HDR %s, buckets %s", q.q*100, q.hdr, got)
	}
}
