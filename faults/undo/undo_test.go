package undo_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/network"
	"github.com/mailchaos/mailchaos/faults/undo"
	"github.com/mailchaos/mailchaos/internal/testnet"
	"github.com/mailchaos/mailchaos/targets/proxy"
)

// server starts a toxiproxy server with one link, "smtp", to a listener
// that accepts nothing in particular.
func server(t *testing.T) *proxy.Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	srv, err := proxy.StartServer(context.Background(), "127.0.0.1:0", nil)
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	_, err = srv.Link(context.Background(), "smtp", "127.0.0.1:0", ln.Addr().String())
	require.NoError(t, err)
	return srv
}

func addToxic(t *testing.T, c *network.Client, owner, id string, n int) network.Toxic {
	t.Helper()
	tox := network.Toxic{Name: network.ToxicName(owner, id, time.Now().Add(time.Hour), n), Type: "latency",
		Stream: network.Upstream, Toxicity: 1, Attributes: map[string]any{"latency": 10}}
	require.NoError(t, c.AddToxic(context.Background(), "smtp", tox))
	return tox
}

func toxicNames(t *testing.T, c *network.Client) []string {
	t.Helper()
	ts, err := c.Toxics(context.Background(), "smtp")
	require.NoError(t, err)
	var names []string
	for _, tox := range ts {
		names = append(names, tox.Name)
	}
	return names
}

// TestUndoIntentSweepsByName: a handle that knows only its ID, owner and
// server (an injection cut short) has every toxic named after it removed,
// and nobody else's.
func TestUndoIntentSweepsByName(t *testing.T) {
	srv := server(t)
	c := srv.Client()
	addToxic(t, c, "run1", "s0", 0)
	addToxic(t, c, "run1", "s0", 1)
	other := addToxic(t, c, "run1", "s1", 0)
	intent := faults.Handle{ID: "s0", Owner: "run1", Toxiproxy: srv.URL()}

	n, err := undo.Undo(context.Background(), intent, undo.Options{})
	require.NoError(t, err)
	require.Zero(t, n, "without Named only the toxics a handle lists go")
	require.Len(t, toxicNames(t, c), 3)

	n, err = undo.Undo(context.Background(), intent, undo.Options{Named: true})
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.Equal(t, []string{other.Name}, toxicNames(t, c))

	n, err = undo.Undo(context.Background(), intent, undo.Options{Named: true})
	require.NoError(t, err, "undoing twice is not an error")
	require.Zero(t, n)
}

// TestUndoListedToxicsAndRestore: a full handle has its listed toxics
// removed (whatever their names) and its restore call made once.
func TestUndoListedToxicsAndRestore(t *testing.T) {
	srv := server(t)
	c := srv.Client()
	tox := network.Toxic{Name: "not-named-after-anyone", Type: "latency", Stream: network.Upstream, Toxicity: 1,
		Attributes: map[string]any{"latency": 10}}
	require.NoError(t, c.AddToxic(context.Background(), "smtp", tox))
	var posts atomic.Int32
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/restore" {
			posts.Add(1)
		}
	}))
	t.Cleanup(site.Close)
	h := faults.Handle{ID: "s0", Owner: "run1", Toxiproxy: srv.URL(),
		Toxics: []faults.ToxicRef{{Proxy: "smtp", Name: tox.Name}},
		Data:   map[string]string{faults.DataUndoPost: site.URL + "/restore"}}

	_, err := undo.Undo(context.Background(), h, undo.Options{Named: true})
	require.NoError(t, err)
	require.Empty(t, toxicNames(t, c))
	require.EqualValues(t, 1, posts.Load())
}

// TestUndoRestoreOffLoopbackIsRefused: a restore URL a plugin wrote is
// not followed off loopback unless the caller allows it.
func TestUndoRestoreOffLoopbackIsRefused(t *testing.T) {
	h := faults.Handle{ID: "s0", Owner: "run1", Data: map[string]string{faults.DataUndoPost: "http://192.0.2.1/restore"}}
	_, err := undo.Undo(context.Background(), h, undo.Options{})
	require.ErrorContains(t, err, "loopback")
}

// TestUndoRefusedServerIsExplained: a server that refuses the connection
// is named, with what that means for a run's in-process server.
func TestUndoRefusedServerIsExplained(t *testing.T) {
	url := "http://" + testnet.FreeAddr(t)
	_, err := undo.Undo(context.Background(), faults.Handle{ID: "s0", Owner: "run1", Toxiproxy: url}, undo.Options{Named: true})
	require.ErrorContains(t, err, "could not reach "+url+" (connection refused)")
	require.ErrorContains(t, err, "in-process server")
}
