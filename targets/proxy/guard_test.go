package proxy_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/grayfailure"
	"github.com/mailchaos/mailchaos/faults/network"
	"github.com/mailchaos/mailchaos/internal/httpguard"
	"github.com/mailchaos/mailchaos/targets/proxy"
)

// startGuarded starts a server as opts say (on a free loopback port) and
// returns it.
func startGuarded(t *testing.T, opts proxy.ServerOptions) *proxy.Server {
	t.Helper()
	opts.Listen = "127.0.0.1:0"
	srv, err := proxy.StartServerWith(context.Background(), opts)
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	return srv
}

// raw sends one request to the server's API as a browser or script would
// and returns the status and body.
func raw(t *testing.T, srv *proxy.Server, method, path, body string, headers ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL()+path, strings.NewReader(body))
	require.NoError(t, err)
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i] == "Host" {
			req.Host = headers[i+1]
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// proxyNames lists the server's proxies through its own client.
func proxyNames(t *testing.T, srv *proxy.Server) []string {
	t.Helper()
	ps, err := srv.Client().Proxies(context.Background())
	require.NoError(t, err)
	var names []string
	for n := range ps {
		names = append(names, n)
	}
	return names
}

func TestAPIRefusesBrowserRequests(t *testing.T) {
	g := startGreeter(t)
	srv := startGuarded(t, proxy.ServerOptions{})
	u, err := url.Parse(srv.URL())
	require.NoError(t, err)
	create := `{"name":"smtp","listen":"127.0.0.1:0","upstream":"` + g.Addr + `"}`
	const js = "application/json"

	for _, c := range []struct {
		name    string
		headers []string
		want    int
	}{
		{"text/plain, as a cross-origin form or fetch sends it", []string{"Content-Type", "text/plain"}, http.StatusUnsupportedMediaType},
		{"foreign Origin", []string{"Content-Type", js, "Origin", "http://evil.example"}, http.StatusForbidden},
		{"foreign Origin, text/plain", []string{"Content-Type", "text/plain", "Origin", "http://evil.example"}, http.StatusForbidden},
		{"rebound Host", []string{"Content-Type", js, "Host", "evil.example:" + u.Port()}, http.StatusForbidden},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, body := raw(t, srv, http.MethodPost, "/proxies", create, c.headers...)
			require.Equal(t, c.want, got, body)
			require.Contains(t, body, `"error":"httpguard: `)
			require.Empty(t, proxyNames(t, srv), "a refused request created a proxy")
		})
	}
	got, body := raw(t, srv, http.MethodGet, "/proxies", "", "Host", "evil.example:"+u.Port())
	require.Equal(t, http.StatusForbidden, got, body)

	// The same request as mailchaos' client sends it works.
	got, body = raw(t, srv, http.MethodPost, "/proxies", create, "Content-Type", js, "Origin", "http://"+u.Host)
	require.Equal(t, http.StatusCreated, got, body)
	require.Equal(t, []string{"smtp"}, proxyNames(t, srv))
}

func TestAPIRefusesProxiesOffLoopback(t *testing.T) {
	g := startGreeter(t)
	up := g.Addr
	srv := startGuarded(t, proxy.ServerOptions{})
	const js = "application/json"

	for _, c := range []struct{ name, method, path, body string }{
		{"create on 0.0.0.0", http.MethodPost, "/proxies", `{"name":"a","listen":"0.0.0.0:0","upstream":"` + up + `"}`},
		{"create on [::]", http.MethodPost, "/proxies", `{"name":"a","listen":"[::]:0","upstream":"` + up + `"}`},
		{"create on every interface", http.MethodPost, "/proxies", `{"name":"a","listen":":0","upstream":"` + up + `"}`},
		{"create without listen", http.MethodPost, "/proxies", `{"name":"a","upstream":"` + up + `"}`},
		{"create, key in other case wins", http.MethodPost, "/proxies", `{"name":"a","listen":"127.0.0.1:0","LISTEN":"0.0.0.0:0","upstream":"` + up + `"}`},
		{"populate", http.MethodPost, "/populate", `[{"name":"b","listen":"127.0.0.1:0","upstream":"` + up + `"},{"name":"a","listen":"0.0.0.0:0","upstream":"` + up + `"}]`},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, body := raw(t, srv, c.method, c.path, c.body, "Content-Type", js)
			require.Equal(t, http.StatusForbidden, got, body)
			require.Contains(t, body, "--allow-remote")
			require.Empty(t, proxyNames(t, srv))
		})
	}

	// Moving an existing proxy off loopback is refused; other updates pass.
	_, err := srv.Link(context.Background(), "smtp", "127.0.0.1:0", up)
	require.NoError(t, err)
	for _, m := range []string{http.MethodPost, http.MethodPatch} {
		got, body := raw(t, srv, m, "/proxies/smtp", `{"listen":"0.0.0.0:0"}`, "Content-Type", js)
		require.Equal(t, http.StatusForbidden, got, body)
	}
	p, err := srv.Client().Proxy(context.Background(), "smtp")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(p.Listen, "127.0.0.1:"), p.Listen)
	got, body := raw(t, srv, http.MethodPost, "/proxies/smtp", `{"enabled":false}`, "Content-Type", js)
	require.Equal(t, http.StatusOK, got, body)

	// Bodies are bounded and must be JSON.
	got, body = raw(t, srv, http.MethodPost, "/proxies", `{"name":"a",`, "Content-Type", js)
	require.Equal(t, http.StatusBadRequest, got, body)
	got, body = raw(t, srv, http.MethodPost, "/proxies", `{"name":"`+strings.Repeat("a", 2<<20)+`"}`, "Content-Type", js)
	require.Equal(t, http.StatusRequestEntityTooLarge, got, body)
}

func TestAPIAllowRemoteLetsProxiesOffLoopbackThrough(t *testing.T) {
	srv := startGuarded(t, proxy.ServerOptions{AllowRemote: true})
	// 192.0.2.1 (TEST-NET-1) is on no interface: the request passes the
	// guard and toxiproxy itself fails to listen, nothing is published.
	got, body := raw(t, srv, http.MethodPost, "/proxies", `{"name":"a","listen":"192.0.2.1:0","upstream":"127.0.0.1:1"}`,
		"Content-Type", "application/json")
	require.NotEqual(t, http.StatusForbidden, got, body)
	require.NotContains(t, body, "allow-remote")
}

func TestAPIToken(t *testing.T) {
	g := startGreeter(t)
	srv := startGuarded(t, proxy.ServerOptions{Token: "s3cret"})
	ctx := context.Background()

	// The server's own client carries the token.
	_, err := srv.Link(ctx, "smtp", "127.0.0.1:0", g.Addr)
	require.NoError(t, err)

	var ae *network.APIError
	err = network.NewClient(srv.URL()).Ping(ctx)
	require.ErrorAs(t, err, &ae)
	require.Equal(t, http.StatusUnauthorized, ae.Status)
	err = network.NewClient(srv.URL()).WithToken("wrong").Ping(ctx)
	require.ErrorAs(t, err, &ae)
	require.Equal(t, http.StatusUnauthorized, ae.Status)
	got, body := raw(t, srv, http.MethodGet, "/proxies", "", "Authorization", "Bearer s3cret")
	require.Equal(t, http.StatusOK, got, body)

	// A fault injected through the API with the token from the environment.
	p, err := srv.Client().Proxy(ctx, "smtp")
	require.NoError(t, err)
	target := faults.Target{Toxiproxy: srv.URL(), Links: []faults.Link{{Name: "smtp", Listen: p.Listen, Upstream: p.Upstream}}}
	req := faults.Request{ID: "t1", Owner: "test", Target: target, Links: []string{"smtp"},
		Params: faults.Params{"mode": "blackhole"}, TTL: time.Hour}
	inj := grayfailure.New()
	_, err = inj.Inject(ctx, req)
	require.ErrorAs(t, err, &ae, "injected without the token")
	require.Equal(t, http.StatusUnauthorized, ae.Status)

	t.Setenv(httpguard.TokenEnv, "s3cret")
	h, err := inj.Inject(ctx, req)
	require.NoError(t, err)
	toxics, err := srv.Client().Toxics(ctx, "smtp")
	require.NoError(t, err)
	require.NotEmpty(t, toxics)
	st, err := inj.Status(ctx, h)
	require.NoError(t, err)
	require.True(t, st.Active)
	require.NoError(t, inj.Remove(ctx, h))
	toxics, err = srv.Client().Toxics(ctx, "smtp")
	require.NoError(t, err)
	require.Empty(t, toxics)
}

// TestAPIClientSendsJSONOnEveryWrite drives every write of mailchaos'
// client through the guard.
func TestAPIClientSendsJSONOnEveryWrite(t *testing.T) {
	g := startGreeter(t)
	srv := startGuarded(t, proxy.ServerOptions{})
	c := srv.Client()
	ctx := context.Background()
	_, err := c.CreateProxy(ctx, "smtp", "127.0.0.1:0", g.Addr)
	require.NoError(t, err)
	_, err = c.SetUpstream(ctx, "smtp", g.Addr)
	require.NoError(t, err)
	require.NoError(t, c.AddToxic(ctx, "smtp", network.Toxic{Name: "lat", Type: "latency", Stream: network.Downstream,
		Attributes: map[string]any{"latency": 1}}))
	require.NoError(t, c.RemoveToxic(ctx, "smtp", "lat"))
	require.NoError(t, c.DeleteProxy(ctx, "smtp"))
	require.Empty(t, proxyNames(t, srv))
}
