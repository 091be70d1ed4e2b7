package probes_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/experiments/probes"
	"github.com/mailchaos/mailchaos/faults"
)

func TestMetricRatio(t *testing.T) {
	t.Parallel()
	s, target := startStack(t, testConfig(t))
	p := newProbe(t, probes.MetricKind(), target, faults.Params{
		"metric": "mailstack_delivered_total", "kind": "ratio", "per": "mailstack_accepted_total"})
	first := p.Measure(context.Background())
	require.True(t, first.Skip, "the first sample has nothing to compare with")
	idle := p.Measure(context.Background())
	require.True(t, idle.Skip, "no mail accepted: no ratio")
	for i := 0; i < 4; i++ {
		sendMail(t, s.Endpoint("smtp"), i)
	}
	require.Eventually(t, func() bool { return s.Counts().Delivered == 4 }, 30*time.Second, 10*time.Millisecond)
	smp := p.Measure(context.Background())
	require.False(t, smp.Failed, smp.Err)
	require.False(t, smp.Skip)
	require.Equal(t, 1.0, smp.Value, "every accepted message was delivered")

	_, err := probes.MetricKind().New(probes.Config{Name: "tp", Target: target, Params: faults.Params{
		"metric": "mailstack_delivered_total", "kind": "ratio"}})
	require.ErrorContains(t, err, "per")
}
