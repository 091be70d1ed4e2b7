package loadsurge_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

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
	require.NoError(t, err)
	t.Cleanup(r.Stop)
	return r
}

// wait waits for the run to end, failing the test after waitFor.
func wait(t testing.TB, r *loadsurge.Run) loadsurge.Result {
	t.Helper()
	select {
	case <-r.Done():
	case <-time.After(waitFor):
		t.Fatalf("run did not end: %s", r.Snapshot())
	}
	return r.Wait()
}

// requireBalanced checks that every scheduled message has exactly one
// outcome and that the figures add up.
func requireBalanced(t testing.TB, res loadsurge.Result) {
	t.Helper()
	require.True(t, res.Done)
	require.Equal(t, res.Accepted+res.Tempfail+res.Rejected+res.ConnError+res.Timeout, res.Sent, "sent")
	require.Equal(t, res.Scheduled, res.Sent+res.Unsent, "scheduled = sent + unsent")
	require.Zero(t, res.InFlight)
	require.Zero(t, res.Backlog)
}

// silentServer accepts TCP connections and never writes a byte.
func silentServer(t testing.TB) string {
	addr, _ := sinktest.Silent(t)
	return addr
}

// closedPort returns a loopback address where nothing listens.
func closedPort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}
