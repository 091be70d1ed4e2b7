package maintenance_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/maintenance"
	"github.com/mailchaos/mailchaos/targets"
	"github.com/mailchaos/mailchaos/targets/mailstack"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func stack(t *testing.T) *targets.Running {
	t.Helper()
	run, err := targets.StartMailstack(context.Background(), mailstack.DefaultConfig(), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = run.Close(ctx)
	})
	return run
}

func site(t *testing.T, run *targets.Running, name string) mailstack.SiteStatus {
	t.Helper()
	st, err := run.Stack.Site(name)
	require.NoError(t, err)
	return st
}

func request(run *targets.Running, params faults.Params, ttl time.Duration) faults.Request {
	return faults.Request{ID: "m1", Owner: "test", Fault: maintenance.Name, Target: run.Target, Params: params,
		Duration: ttl, TTL: ttl}
}

func TestDrainForTheFaultRestoreAtRemoval(t *testing.T) {
	run := stack(t)
	inj := maintenance.New()
	ctx := context.Background()
	h, err := inj.Inject(ctx, request(run, faults.Params{"site": "site-b"}, time.Minute))
	require.NoError(t, err)
	require.True(t, site(t, run, "site-b").Draining)
	require.False(t, site(t, run, "site-a").Draining)
	st, err := inj.Status(ctx, h)
	require.NoError(t, err)
	require.True(t, st.Active)

	require.NoError(t, inj.Remove(ctx, h))
	require.False(t, site(t, run, "site-b").Draining)
	st, err = inj.Status(ctx, h)
	require.NoError(t, err)
	require.False(t, st.Active)
	require.NoError(t, inj.Remove(ctx, h), "restoring twice is not an error")
}

func TestEndsByItselfAtTTL(t *testing.T) {
	run := stack(t)
	inj := maintenance.New()
	_, err := inj.Inject(context.Background(), request(run, faults.Params{"site": "site-a"}, time.Second))
	require.NoError(t, err)
	require.True(t, site(t, run, "site-a").Draining)
	require.Eventually(t, func() bool { return !site(t, run, "site-a").Draining }, 20*time.Second, 20*time.Millisecond,
		"the site stayed drained past the TTL")
}

func TestValidate(t *testing.T) {
	run := stack(t)
	inj := maintenance.New()
	err := inj.Validate(context.Background(), request(run, faults.Params{"site": "site-d"}, time.Minute))
	var pe *faults.ParamError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "site", pe.Param)
	require.Contains(t, err.Error(), "one of site-a, site-b, site-c")
	err = inj.Validate(context.Background(), request(run, faults.Params{}, time.Minute))
	require.ErrorContains(t, err, "site: is required")
	err = inj.Validate(context.Background(), request(run, faults.Params{"site": "site-a", "admin": "nowhere"}, time.Minute))
	require.ErrorContains(t, err, "admin")
}
