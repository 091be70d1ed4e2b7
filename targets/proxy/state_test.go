package proxy_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/faults/network"
	"github.com/mailchaos/mailchaos/targets/proxy"
)

// startKept starts a server with a state file (and links, if any), closed
// when the test ends.
func startKept(t *testing.T, state string, links ...proxy.Link) *proxy.Server {
	t.Helper()
	srv, err := proxy.StartServerWith(context.Background(), proxy.ServerOptions{Listen: "127.0.0.1:0", State: state, Links: links})
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	return srv
}

// greets checks that a connection through addr reaches the greeter.
func greets(t *testing.T, addr string) {
	t.Helper()
	c, _ := dialGreeted(t, addr)
	require.NoError(t, c.Close())
}

func TestStateRestartKeepsLinksAndPortsDropsFaults(t *testing.T) {
	ctx := context.Background()
	g := startGreeter(t)
	other := startGreeter(t)
	state := filepath.Join(t.TempDir(), "state.json")

	srv := startKept(t, state)
	c := srv.Client()
	clamd, err := c.CreateProxy(ctx, "clamd", "127.0.0.1:0", g.Addr)
	require.NoError(t, err)
	require.NotContains(t, clamd.Listen, ":0", "a real port was chosen")
	_, err = c.CreateProxy(ctx, "imap", "127.0.0.1:0", g.Addr)
	require.NoError(t, err)
	off, err := c.CreateProxy(ctx, "spare", "127.0.0.1:0", g.Addr)
	require.NoError(t, err)
	disabled := false
	_, err = c.UpdateProxy(ctx, "spare", network.ProxyChange{Enabled: &disabled})
	require.NoError(t, err)
	require.NoError(t, c.DeleteProxy(ctx, "imap"))
	// Faults in place when the server stops: a latency toxic, and a link
	// diverted elsewhere.
	require.NoError(t, c.AddToxic(ctx, "clamd", network.Toxic{Name: "slow", Type: "latency", Stream: network.Downstream, Attributes: map[string]any{"latency": 5000}}))
	_, err = network.Divert(ctx, c, "test", "d1", "clamd", other.Addr, time.Now().Add(time.Hour), 0)
	require.NoError(t, err)

	// Every answer of the API comes after its change is on disk.
	kept, err := proxy.LoadState(state)
	require.NoError(t, err)
	require.Equal(t, []proxy.Link{
		{Name: "clamd", Listen: clamd.Listen, Upstream: g.Addr, Enabled: true},
		{Name: "spare", Listen: off.Listen, Upstream: g.Addr, Enabled: false},
	}, kept, "the diverted link is kept with the upstream it is restored to")
	st, err := os.Lstat(state)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	srv.Close()
	srv = startKept(t, state)
	c = srv.Client()
	ps, err := c.Proxies(ctx)
	require.NoError(t, err)
	require.Len(t, ps, 2, "the deleted link stays deleted")
	p := ps["clamd"]
	require.Equal(t, clamd.Listen, p.Listen, "the same port after the restart")
	require.Equal(t, g.Addr, p.Upstream, "pointed back at its own upstream")
	require.True(t, p.Enabled)
	require.Empty(t, p.Toxics, "faults do not survive a restart")
	require.False(t, ps["spare"].Enabled)
	require.Equal(t, off.Listen, ps["spare"].Listen)
	before := g.Accepted()
	greets(t, clamd.Listen)
	require.Equal(t, before+1, g.Accepted())
	_, err = net.DialTimeout("tcp", off.Listen, time.Second)
	require.Error(t, err, "the disabled link accepts nothing")
}

func TestLinksOptionAndStateTogether(t *testing.T) {
	ctx := context.Background()
	g := startGreeter(t)
	g2 := startGreeter(t)
	state := filepath.Join(t.TempDir(), "state.json")
	file := []proxy.Link{{Name: "clamd", Listen: "127.0.0.1:0", Upstream: g.Addr}}

	srv := startKept(t, state, file...)
	first := srv.Links()
	require.Len(t, first, 1)
	require.True(t, first[0].Enabled)
	port := first[0].Listen
	greets(t, port)
	_, err := srv.Client().CreateProxy(ctx, "api-made", "127.0.0.1:0", g.Addr)
	require.NoError(t, err)
	// A change through the API to a link the file names lasts until the
	// restart: the file wins then.
	_, err = srv.Client().UpdateProxy(ctx, "clamd", network.ProxyChange{Upstream: g2.Addr})
	require.NoError(t, err)
	srv.Close()

	srv = startKept(t, state, file...)
	links := srv.Links()
	require.Len(t, links, 2)
	require.Equal(t, "api-made", links[0].Name, "links are sorted by name")
	require.Equal(t, proxy.Link{Name: "clamd", Listen: port, Upstream: g.Addr, Enabled: true}, links[1],
		"port 0 in the file keeps the state's port; the file's upstream wins")
	greets(t, port)
}

func TestMergeLinks(t *testing.T) {
	for _, tt := range []struct {
		name        string
		file, state []proxy.Link
		want        []proxy.Link
	}{
		{"file only; no listen means any loopback port",
			[]proxy.Link{{Name: "a", Upstream: "127.0.0.1:1"}}, nil,
			[]proxy.Link{{Name: "a", Listen: "127.0.0.1:0", Upstream: "127.0.0.1:1", Enabled: true}}},
		{"state only",
			nil, []proxy.Link{{Name: "a", Listen: "127.0.0.1:5", Upstream: "127.0.0.1:1"}},
			[]proxy.Link{{Name: "a", Listen: "127.0.0.1:5", Upstream: "127.0.0.1:1"}}},
		{"fixed port in the file wins",
			[]proxy.Link{{Name: "a", Listen: "127.0.0.1:7", Upstream: "127.0.0.1:2"}},
			[]proxy.Link{{Name: "a", Listen: "127.0.0.1:5", Upstream: "127.0.0.1:1", Enabled: true}},
			[]proxy.Link{{Name: "a", Listen: "127.0.0.1:7", Upstream: "127.0.0.1:2", Enabled: true}}},
		{"port 0 keeps the state's port and enabled flag, the file's upstream",
			[]proxy.Link{{Name: "a", Listen: "127.0.0.1:0", Upstream: "127.0.0.1:2"}},
			[]proxy.Link{{Name: "a", Listen: "127.0.0.1:5", Upstream: "127.0.0.1:1", Enabled: false}},
			[]proxy.Link{{Name: "a", Listen: "127.0.0.1:5", Upstream: "127.0.0.1:2", Enabled: false}}},
		{"port 0 on another host takes a new port",
			[]proxy.Link{{Name: "a", Listen: "[::1]:0", Upstream: "127.0.0.1:2"}},
			[]proxy.Link{{Name: "a", Listen: "127.0.0.1:5", Upstream: "127.0.0.1:1", Enabled: true}},
			[]proxy.Link{{Name: "a", Listen: "[::1]:0", Upstream: "127.0.0.1:2", Enabled: true}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, proxy.MergeLinks(tt.file, tt.state))
		})
	}
}

func TestServes(t *testing.T) {
	for _, tt := range []struct {
		url, listen string
		want        bool
	}{
		{"http://127.0.0.1:8474", "127.0.0.1:8474", true},
		{"http://localhost:8474", "127.0.0.1:8474", true},
		{"http://[::1]:8474/", "127.0.0.1:8474", true},
		{"http://127.0.0.1:8475", "127.0.0.1:8474", false},
		{"http://mx2.example.test:8474", "127.0.0.1:8474", false},
		{"http://mx2.example.test:8474", "0.0.0.0:8474", true},
		{"not a url", "127.0.0.1:8474", false},
	} {
		require.Equal(t, tt.want, proxy.Serves(tt.url, tt.listen), "%s served on %s", tt.url, tt.listen)
	}
}

func TestStateRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "elsewhere")
	require.NoError(t, os.WriteFile(real, []byte("precious\n"), 0o600))
	link := filepath.Join(dir, "state.json")
	require.NoError(t, os.Symlink(real, link))

	_, err := proxy.StartServerWith(context.Background(), proxy.ServerOptions{Listen: "127.0.0.1:0", State: link})
	var se *proxy.StateError
	require.ErrorAs(t, err, &se)
	require.ErrorContains(t, err, link)
	require.ErrorContains(t, err, "symlink")
	require.True(t, se.InvalidInput())

	require.ErrorContains(t, proxy.SaveState(link, nil), "symlink")
	data, err := os.ReadFile(real)
	require.NoError(t, err)
	require.Equal(t, "precious\n", string(data), "nothing written through the symlink")
	left, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, left, 2, "no temporary file left behind")
}

func TestStateCorruptIsAnError(t *testing.T) {
	for _, tt := range []struct {
		name, content, want string
	}{
		{"not json", "{links: [", "corrupt"},
		{"truncated", `{"version": 1, "links": [{"name": "clamd", "listen": "127.0.0.1:10310"`, "corrupt"},
		{"unknown field", `{"version": 1, "links": [], "toxics": []}`, "corrupt"},
		{"other version", `{"version": 7, "links": []}`, "version 7"},
		{"bad address", `{"version": 1, "links": [{"name": "clamd", "listen": "nowhere", "upstream": "127.0.0.1:3310"}]}`, `listen "nowhere"`},
		{"twice", `{"version": 1, "links": [{"name": "a", "listen": "127.0.0.1:1", "upstream": "127.0.0.1:2"},` +
			`{"name": "a", "listen": "127.0.0.1:3", "upstream": "127.0.0.1:2"}]}`, "listed twice"},
		{"too large", `{"version": 1, "links": []}` + strings.Repeat(" ", proxy.MaxStateSize), "larger than"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.json")
			require.NoError(t, os.WriteFile(path, []byte(tt.content), 0o600))
			_, err := proxy.StartServerWith(context.Background(), proxy.ServerOptions{Listen: "127.0.0.1:0", State: path})
			require.Error(t, err)
			var se *proxy.StateError
			require.True(t, errors.As(err, &se), "%T: %v", err, err)
			require.True(t, se.InvalidInput())
			require.ErrorContains(t, err, "state file "+path)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestStateMissingIsEmpty(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	links, err := proxy.LoadState(path)
	require.NoError(t, err)
	require.Empty(t, links)
	srv := startKept(t, path)
	require.Empty(t, srv.Links())
	links, err = proxy.LoadState(path)
	require.NoError(t, err, "written at start")
	require.Empty(t, links)
}

func TestStateUnsavedChangeIsA500(t *testing.T) {
	g := startGreeter(t)
	path := filepath.Join(t.TempDir(), "state.json")
	srv := startKept(t, path)
	// The state file turns into something it cannot write.
	require.NoError(t, os.Remove(path))
	require.NoError(t, os.Mkdir(path, 0o700))
	_, err := srv.Client().CreateProxy(context.Background(), "clamd", "127.0.0.1:0", g.Addr)
	var ae *network.APIError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, 500, ae.Status)
	require.Contains(t, ae.Msg, "not saved")
	require.Contains(t, ae.Msg, path)
}

func TestLinkWithoutListenGetsALoopbackPort(t *testing.T) {
	g := startGreeter(t)
	// No state file: the links go straight to the collection.
	srv, err := proxy.StartServerWith(context.Background(), proxy.ServerOptions{Listen: "127.0.0.1:0", AllowRemote: true,
		Links: []proxy.Link{{Name: "smtp", Upstream: g.Addr, Enabled: true}}})
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	p, err := srv.Client().Proxy(context.Background(), "smtp")
	require.NoError(t, err)
	host, _, err := net.SplitHostPort(p.Listen)
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1", host, "a link without an address listens on loopback, even on a server that may publish")
	greets(t, p.Listen)
}

func TestStateKeepsWhatAFailedWriteChanged(t *testing.T) {
	ctx := context.Background()
	g := startGreeter(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	state := filepath.Join(t.TempDir(), "state.json")
	srv := startKept(t, state)
	// A populate that creates a, then fails on b (its port is taken):
	// toxiproxy keeps a and answers with an error.
	body := `[{"name":"a","listen":"127.0.0.1:0","upstream":"` + g.Addr + `","enabled":true},` +
		`{"name":"b","listen":"` + busy.Addr().String() + `","upstream":"` + g.Addr + `","enabled":true}]`
	status := postJSON(t, srv.URL()+"/populate", body)
	require.GreaterOrEqual(t, status, 400)
	ps, err := srv.Client().Proxies(ctx)
	require.NoError(t, err)
	require.Contains(t, ps, "a")
	kept, err := proxy.LoadState(state)
	require.NoError(t, err)
	require.Len(t, kept, 1)
	require.Equal(t, "a", kept[0].Name, "what the failed write made is saved")
}

func TestStateLeavesProbeProxiesOut(t *testing.T) {
	ctx := context.Background()
	state := filepath.Join(t.TempDir(), "state.json")
	srv := startKept(t, state)
	c := srv.Client()
	_, err := c.ProbeToxics(ctx, []string{"latency"})
	require.NoError(t, err)
	// A probe cut short leaves its scratch proxy: never kept.
	_, err = c.CreateProxy(ctx, network.ProbePrefix+"left", "127.0.0.1:0", "127.0.0.1:9")
	require.NoError(t, err)
	_, err = c.CreateProxy(ctx, "clamd", "127.0.0.1:0", "127.0.0.1:9")
	require.NoError(t, err)
	kept, err := proxy.LoadState(state)
	require.NoError(t, err)
	require.Len(t, kept, 1, "%+v", kept)
	require.Equal(t, "clamd", kept[0].Name)
}

func TestCloseKeepsTheStateOfLinksItTearsDown(t *testing.T) {
	ctx := context.Background()
	state := filepath.Join(t.TempDir(), "state.json")
	srv := startKept(t, state)
	_, err := srv.Client().CreateProxy(ctx, "clamd", "127.0.0.1:0", "127.0.0.1:9")
	require.NoError(t, err)
	srv.Close()
	// A write that ends after Close tore the links down saves nothing.
	require.NoError(t, proxy.SaveLinksForTest(srv))
	kept, err := proxy.LoadState(state)
	require.NoError(t, err)
	require.Len(t, kept, 1, "the torn-down links are not saved as removed")
}

// postJSON posts body to url as the API's clients do and returns the
// status.
func postJSON(t *testing.T, url, body string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	return resp.StatusCode
}
