package sdk

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/network"
	"github.com/mailchaos/mailchaos/targets/proxy"
)

// TestTrackerRemovesWhatAnInjectionUnderWayMade: the SDK knows of an
// injection before it creates anything, so when mailchaos dies while a
// plugin is still injecting, the toxics made so far are removed too.
func TestTrackerRemovesWhatAnInjectionUnderWayMade(t *testing.T) {
	ctx := context.Background()
	srv, err := proxy.StartServer(ctx, "127.0.0.1:0", nil)
	require.NoError(t, err)
	defer srv.Close()
	up, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer up.Close()
	_, err = srv.Link(ctx, "svc", "127.0.0.1:0", up.Addr().String())
	require.NoError(t, err)

	tr := &tracker{live: map[string]Handle{}, pending: map[string]Request{}}
	req := Request{ID: "s0", Owner: "run-1", Fault: "f", Target: faults.Target{Toxiproxy: srv.URL()}}
	ended := tr.request(req)
	// The injection made a toxic, then mailchaos died before it returned.
	name := network.ToxicName(req.Owner, req.ID, time.Now().Add(time.Hour), 0)
	require.NoError(t, srv.Client().AddToxic(ctx, "svc", network.Toxic{Name: name, Type: network.ToxicBlackhole, Stream: network.Downstream}))
	tr.removeAll(slog.New(slog.NewTextHandler(io.Discard, nil)), "test")
	ts, err := srv.Client().Toxics(ctx, "svc")
	require.NoError(t, err)
	require.Empty(t, ts, "the toxic of the injection under way is removed")

	ended(false)
	tr.mu.Lock()
	defer tr.mu.Unlock()
	require.Empty(t, tr.pending)
}
