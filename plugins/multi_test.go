package plugins_test

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/internal/testnet"
	"github.com/mailchaos/mailchaos/plugins"
	"github.com/mailchaos/mailchaos/targets/proxy"
)

// fleetFixture is three toxiproxy servers with one link each: banner on
// the target's server, b2 and b3 each on a server of its own.
type fleetFixture struct {
	servers []*proxy.Server
	target  faults.Target
}

func newFleetFixture(t *testing.T) *fleetFixture {
	t.Helper()
	ctx := context.Background()
	up := testnet.Serve(t, func(_ context.Context, c net.Conn) { _, _ = c.Write([]byte("220 hello\r\n")) })
	f := &fleetFixture{}
	for i, name := range []string{"banner", "b2", "b3"} {
		srv, err := proxy.StartServer(ctx, "127.0.0.1:0", nil)
		require.NoError(t, err)
		t.Cleanup(srv.Close)
		listen, err := srv.Link(ctx, name, "127.0.0.1:0", up.Addr)
		require.NoError(t, err)
		f.servers = append(f.servers, srv)
		l := faults.Link{Name: name, Listen: listen, Upstream: up.Addr}
		if i > 0 {
			l.Toxiproxy = srv.URL()
		}
		f.target.Links = append(f.target.Links, l)
	}
	f.target.Toxiproxy, f.target.Endpoints = f.servers[0].URL(), map[string]string{}
	return f
}

func (f *fleetFixture) request(id string) faults.Request {
	return faults.Request{ID: id, Owner: "test", Fault: "misbehave", Target: f.target, Links: []string{"banner", "b2", "b3"},
		Params: faults.Params{"latency": "1500ms"}, Duration: time.Minute, TTL: 2 * time.Minute}
}

// toxics counts the toxics on each server.
func (f *fleetFixture) toxics(t *testing.T) []int {
	t.Helper()
	var out []int
	for _, s := range f.servers {
		ps, err := s.Client().Proxies(context.Background())
		require.NoError(t, err)
		n := 0
		for _, p := range ps {
			n += len(p.Toxics)
		}
		out = append(out, n)
	}
	return out
}

// TestPluginFaultOnThreeServers: a plugin's fault on links of three
// servers lands on each (the target's servers cross the wire), and a
// plugin killed with it in place has it removed by the host on all three.
func TestPluginFaultOnThreeServers(t *testing.T) {
	t.Parallel()
	f := newFleetFixture(t)
	_, p := start(t, plugins.Options{})
	h, err := p.Inject(context.Background(), f.request("r1"))
	require.NoError(t, err)
	require.Equal(t, []int{1, 1, 1}, f.toxics(t))
	require.Len(t, h.AllServers(), 3, "the handle names every server")

	require.NoError(t, syscall.Kill(p.Pid(), syscall.SIGKILL))
	select {
	case <-p.Lost():
	case <-time.After(waitFor):
		t.Fatal("the host did not notice the plugin die")
	}
	var lost *plugins.LostError
	require.ErrorAs(t, p.LostErr(), &lost)
	require.Equal(t, 3, lost.Removed, "found by name on the three servers")
	require.Equal(t, []int{0, 0, 0}, f.toxics(t))
}

// TestPluginExitingDuringInjectOnThreeServers: a plugin that dies in the
// middle of an injection leaves nothing on any server.
func TestPluginExitingDuringInjectOnThreeServers(t *testing.T) {
	t.Parallel()
	f := newFleetFixture(t)
	_, p := start(t, plugins.Options{}, "MISBEHAVE_EXIT=inject")
	_, err := p.Inject(context.Background(), f.request("r1"))
	require.Error(t, err)
	<-p.Lost()
	require.Equal(t, []int{0, 0, 0}, f.toxics(t))
}
