package httpguard_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/internal/httpguard"
)

// serve runs a guarded handler that answers 200 "ok" on 127.0.0.1 and
// returns its URL and port.
func serve(t *testing.T, token string) (base, port string) {
	t.Helper()
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	srv := httptest.NewServer(httpguard.Wrap(ok, httpguard.Config{Listen: "127.0.0.1:0", Token: token}))
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	require.NoError(t, err)
	return srv.URL, u.Port()
}

type call struct {
	name    string
	method  string
	host    string
	headers map[string]string
	want    int
}

func (c call) do(t *testing.T, base string) (int, string) {
	t.Helper()
	var body *strings.Reader
	if c.method == http.MethodPost {
		body = strings.NewReader(`{"name":"x"}`)
	} else {
		body = strings.NewReader("")
	}
	req, err := http.NewRequest(c.method, base+"/proxies", body)
	require.NoError(t, err)
	if c.host != "" {
		req.Host = c.host
	}
	for k, v := range c.headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out struct {
		Error string `json:"error"`
	}
	if resp.StatusCode != http.StatusOK {
		require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	}
	return resp.StatusCode, out.Error
}

func TestGuardRefusesBrowsers(t *testing.T) {
	base, port := serve(t, "")
	jsonCT := map[string]string{"Content-Type": "application/json"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{"Content-Type": "application/json"}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, c := range []call{
		{name: "plain GET", method: "GET", want: 200},
		{name: "JSON POST", method: "POST", headers: jsonCT, want: 200},
		{name: "JSON POST with charset", method: "POST", headers: with("Content-Type", "application/json; charset=utf-8"), want: 200},
		{name: "DELETE with JSON type", method: "DELETE", headers: jsonCT, want: 200},
		{name: "own origin", method: "POST", headers: with("Origin", "http://127.0.0.1:"+port), want: 200},
		{name: "own origin by name", method: "POST", headers: with("Origin", "http://localhost:"+port), want: 200},
		{name: "Host localhost", method: "GET", host: "localhost:" + port, want: 200},
		{name: "Host [::1]", method: "GET", host: "[::1]:" + port, want: 200},
		{name: "same-origin fetch", method: "POST", headers: with("Sec-Fetch-Site", "same-origin"), want: 200},

		{name: "foreign origin", method: "POST", headers: with("Origin", "http://evil.example"), want: 403},
		{name: "foreign origin on GET", method: "GET", headers: with("Origin", "http://evil.example"), want: 403},
		{name: "null origin", method: "POST", headers: with("Origin", "null"), want: 403},
		{name: "loopback origin, other port", method: "POST", headers: with("Origin", "http://localhost:1"), want: 403},
		{name: "https origin", method: "POST", headers: with("Origin", "https://127.0.0.1:"+port), want: 403},
		{name: "cross-site fetch", method: "GET", headers: with("Sec-Fetch-Site", "cross-site"), want: 403},
		{name: "same-site fetch", method: "GET", headers: with("Sec-Fetch-Site", "same-site"), want: 403},
		{name: "rebound Host", method: "GET", host: "evil.example:" + port, want: 403},
		{name: "rebound Host without port", method: "GET", host: "evil.example", want: 403},
		{name: "loopback Host, other port", method: "GET", host: "127.0.0.1:1", want: 403},
		{name: "text/plain POST", method: "POST", headers: map[string]string{"Content-Type": "text/plain"}, want: 415},
		{name: "form POST", method: "POST", headers: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, want: 415},
		{name: "POST without type", method: "POST", want: 415},
		{name: "DELETE without type", method: "DELETE", want: 415},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, msg := c.do(t, base)
			require.Equal(t, c.want, got, "status (error %q)", msg)
			if c.want != 200 {
				require.True(t, strings.HasPrefix(msg, "httpguard: "), "got error %q, want a reason", msg)
				require.NotContains(t, msg, "\n")
			}
		})
	}
}

func TestGuardToken(t *testing.T) {
	base, _ := serve(t, "s3cret")
	for _, c := range []call{
		{name: "no token", method: "GET", want: 401},
		{name: "wrong token", method: "GET", headers: map[string]string{"Authorization": "Bearer nope"}, want: 401},
		{name: "token prefix", method: "GET", headers: map[string]string{"Authorization": "Bearer s3cre"}, want: 401},
		{name: "basic scheme", method: "GET", headers: map[string]string{"Authorization": "Basic s3cret"}, want: 401},
		{name: "right token", method: "GET", headers: map[string]string{"Authorization": "Bearer s3cret"}, want: 200},
		{name: "right token, lower-case scheme", method: "GET", headers: map[string]string{"Authorization": "bearer s3cret"}, want: 200},
		{name: "right token, text/plain POST", method: "POST",
			headers: map[string]string{"Authorization": "Bearer s3cret", "Content-Type": "text/plain"}, want: 415},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, msg := c.do(t, base)
			require.Equal(t, c.want, got, "status (error %q)", msg)
		})
	}
}

func TestLoadToken(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), mode))
		require.NoError(t, os.Chmod(p, mode))
		return p
	}
	tok, err := httpguard.LoadToken(write("ok", "  s3cret\n", 0o600))
	require.NoError(t, err)
	require.Equal(t, "s3cret", tok)
	tok, err = httpguard.LoadToken(write("group", "s3cret", 0o640))
	require.NoError(t, err)
	require.Equal(t, "s3cret", tok)

	for name, c := range map[string]struct {
		content string
		mode    os.FileMode
		want    string
	}{
		"world-readable": {"s3cret", 0o644, "lets others read"},
		"empty":          {" \n", 0o600, "empty"},
		"two words":      {"a b", 0o600, "one word"},
		"too long":       {strings.Repeat("x", 5000), 0o600, "more than"},
	} {
		_, err := httpguard.LoadToken(write(name, c.content, c.mode))
		require.ErrorContains(t, err, c.want, name)
	}
	_, err = httpguard.LoadToken(filepath.Join(dir, "missing"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestEnvToken(t *testing.T) {
	env := map[string]string{httpguard.TokenEnv: " tok \n"}
	require.Equal(t, "tok", httpguard.EnvToken(func(k string) string { return env[k] }))
}
