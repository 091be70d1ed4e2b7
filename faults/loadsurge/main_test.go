package loadsurge_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/loadsurge"
	"github.com/mailchaos/mailchaos/faults/loadsurge/sinktest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitFor bounds every wait on a condition; generous, for a busy machine.
const waitFor = 30 * time.Second

// start starts a run and stops it when the test ends.
func start(t testing.TB, cfg loadsurge.Config) *loadsurge.Run {
	t.Helper()
	r, err := loadsurge.Start(context.Background(), cfg)
	return started(t, r, err)
}

// started checks that a run started and has it stopped when the test ends.
func started[G loadsurge.Generator](t testing.TB, g G, err error) G {
	t.Helper()
	require.NoError(t, err)
	t.Cleanup(g.Stop)
	return g
}

// requireStops checks that g is running, stops it, and checks that it is
// over.
func requireStops(t testing.TB, g loadsurge.Generator) {
	t.Helper()
	snap := g.Report()
	require.False(t, snap.Over())
	require.Contains(t, snap.String(), "running")
	g.Stop()
	require.True(t, g.Report().Over())
	g.Stop() // again: just returns
}

// wait waits for the run to end, failing the test after waitFor.
func wait(t testing.TB, r *loadsurge.Run) loadsurge.Result { return awaitRun(t, r, r.Wait) }

// awaitRun waits for g to end, failing the test after waitFor, and
// returns its final result.
func awaitRun[R any](t testing.TB, g loadsurge.Generator, final func() R) R {
	t.Helper()
	select {
	case <-g.Done():
	case <-time.After(waitFor):
		t.Fatalf("run did not end: %s", g.Report())
	}
	return final()
}

// requireClosedLoop checks the figures of a closed-loop run of n items
// that all succeeded.
func requireClosedLoop(t testing.TB, f loadsurge.RunFigures, n int64) {
	t.Helper()
	require.True(t, f.ClosedLoop)
	require.Equal(t, n, f.Scheduled)
	require.Positive(t, f.Latency.P50)
	require.GreaterOrEqual(t, f.Latency.Max, f.Latency.P99)
	require.Zero(t, f.Lag.Max, "the closed loop has no lag")
}

// waitInactive waits until the injected fault of h has ended by itself.
func waitInactive(t testing.TB, inj *loadsurge.Injector, h faults.Handle) faults.Status {
	t.Helper()
	var st faults.Status
	require.Eventually(t, func() bool {
		var err error
		st, err = inj.Status(context.Background(), h)
		return err == nil && !st.Active
	}, waitFor, 5*time.Millisecond, "the run ends by itself")
	return st
}

// requireBalanced checks that every scheduled message has exactly one
// outcome and that the figures add up.
func requireBalanced(t testing.TB, res loadsurge.Result) {
	t.Helper()
	require.True(t, res.Done)
	require.Equal(t, res.Accepted+res.Tempfail+res.Rejected+res.ConnError+res.Timeout+res.Cut, res.Sent, "sent")
	require.LessOrEqual(t, res.CutAfterData, res.Cut, "cut after their end of DATA")
	require.Equal(t, res.Scheduled, res.Sent+res.Unsent, "scheduled = sent + unsent")
	require.Zero(t, res.InFlight)
	require.Zero(t, res.Backlog)
}

// silentServer accepts TCP connections and never writes a byte.
func silentServer(t testing.TB) string {
	addr, _ := sinktest.Silent(t)
	return addr
}
