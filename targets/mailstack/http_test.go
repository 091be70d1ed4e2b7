package mailstack_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/targets/mailstack"
)

// startStackWith starts a stack with opts and stops it at the end of the
// test.
func startStackWith(t *testing.T, cfg mailstack.Config, opts mailstack.Options) *mailstack.Stack {
	t.Helper()
	s, err := mailstack.New(cfg, opts)
	require.NoError(t, err)
	require.NoError(t, s.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		_ = s.Close()
	})
	return s
}

// adminCall sends one request to the stack's HTTP endpoint with the given
// headers ("Host" sets the Host header) and returns the status and the
// decoded error, if any.
func adminCall(t *testing.T, s *mailstack.Stack, method, path string, headers ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+s.Endpoint("metrics")+path, nil)
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
	var out struct {
		Error string `json:"error"`
	}
	if resp.StatusCode != http.StatusOK {
		_ = json.NewDecoder(resp.Body).Decode(&out)
	}
	return resp.StatusCode, out.Error
}

func TestAdminRefusesBrowserRequests(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, mailstack.ProfileRemediated)
	quietAccess(&cfg)
	s := startStack(t, cfg)
	u, err := url.Parse("http://" + s.Endpoint("metrics"))
	require.NoError(t, err)
	const js = "application/json"

	for _, c := range []struct {
		name    string
		headers []string
		want    int
	}{
		{"foreign Origin", []string{"Content-Type", js, "Origin", "http://evil.example"}, http.StatusForbidden},
		{"rebound Host", []string{"Content-Type", js, "Host", "evil.example:" + u.Port()}, http.StatusForbidden},
		{"text/plain", []string{"Content-Type", "text/plain"}, http.StatusUnsupportedMediaType},
		{"no type", nil, http.StatusUnsupportedMediaType},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, msg := adminCall(t, s, http.MethodPost, "/api/sites/site-a/drain", c.headers...)
			require.Equal(t, c.want, got, msg)
			require.Contains(t, msg, "httpguard: ")
			st, err := s.Site("site-a")
			require.NoError(t, err)
			require.False(t, st.Draining, "a refused request drained the site")
		})
	}
	got, msg := adminCall(t, s, http.MethodGet, "/api/messages", "Origin", "http://evil.example")
	require.Equal(t, http.StatusForbidden, got, msg)
	got, msg = adminCall(t, s, http.MethodGet, "/metrics", "Host", "evil.example:"+u.Port())
	require.Equal(t, http.StatusForbidden, got, msg)

	// From its own origin, or from a script, the drain works.
	got, msg = adminCall(t, s, http.MethodPost, "/api/sites/site-a/drain", "Content-Type", js, "Origin", "http://localhost:"+u.Port())
	require.Equal(t, http.StatusOK, got, msg)
	st, err := s.Site("site-a")
	require.NoError(t, err)
	require.True(t, st.Draining)
	got, msg = adminCall(t, s, http.MethodGet, "/metrics", "Host", "localhost:"+u.Port())
	require.Equal(t, http.StatusOK, got, msg)
}

func TestAdminToken(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, mailstack.ProfileRemediated)
	quietAccess(&cfg)
	s := startStackWith(t, cfg, mailstack.Options{APIToken: "s3cret"})
	const js = "application/json"

	got, msg := adminCall(t, s, http.MethodGet, "/metrics")
	require.Equal(t, http.StatusUnauthorized, got, msg)
	got, msg = adminCall(t, s, http.MethodPost, "/api/sites/site-a/drain", "Content-Type", js, "Authorization", "Bearer wrong")
	require.Equal(t, http.StatusUnauthorized, got, msg)
	st, err := s.Site("site-a")
	require.NoError(t, err)
	require.False(t, st.Draining)

	got, msg = adminCall(t, s, http.MethodPost, "/api/sites/site-a/drain", "Content-Type", js, "Authorization", "Bearer s3cret")
	require.Equal(t, http.StatusOK, got, msg)
	got, msg = adminCall(t, s, http.MethodGet, "/metrics", "Authorization", "Bearer s3cret")
	require.Equal(t, http.StatusOK, got, msg)
}
