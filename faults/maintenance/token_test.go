package maintenance_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/maintenance"
	"github.com/mailchaos/mailchaos/internal/httpguard"
	"github.com/mailchaos/mailchaos/targets/mailstack"
)

// TestDrainWithToken drains and restores a site on a stack whose admin API
// wants a bearer token: refused without $MAILCHAOS_TOKEN, done with it.
func TestDrainWithToken(t *testing.T) {
	cfg := mailstack.DefaultConfig()
	cfg.SMTP.Listen, cfg.IMAP.Listen, cfg.Metrics.Listen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	s, err := mailstack.New(cfg, mailstack.Options{APIToken: "s3cret"})
	require.NoError(t, err)
	require.NoError(t, s.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		_ = s.Close()
	})
	ctx := context.Background()
	req := faults.Request{ID: "m1", Owner: "test", Fault: maintenance.Name, Duration: time.Minute, TTL: time.Minute,
		Target: faults.Target{Endpoints: map[string]string{"metrics": s.Endpoint("metrics")}},
		Params: faults.Params{"site": "site-b"}}

	t.Setenv(httpguard.TokenEnv, "")
	_, err = maintenance.New().Inject(ctx, req)
	require.ErrorContains(t, err, "HTTP 401")
	st, err := s.Site("site-b")
	require.NoError(t, err)
	require.False(t, st.Draining)

	t.Setenv(httpguard.TokenEnv, "s3cret")
	inj := maintenance.New()
	h, err := inj.Inject(ctx, req)
	require.NoError(t, err)
	st, err = s.Site("site-b")
	require.NoError(t, err)
	require.True(t, st.Draining)
	stat, err := inj.Status(ctx, h)
	require.NoError(t, err)
	require.True(t, stat.Active)
	require.NoError(t, inj.Remove(ctx, h))
	st, err = s.Site("site-b")
	require.NoError(t, err)
	require.False(t, st.Draining)
}
