package probes_test

import (
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/experiments/probes"
	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/internal/testnet"
	"github.com/mailchaos/mailchaos/targets/mailstack"
)

func TestMetricGaugeFromTheStack(t *testing.T) {
	t.Parallel()
	s, target := startStack(t, testConfig(t))
	p := newProbe(t, probes.MetricKind(), target, faults.Params{"metric": mailstack.MetricQueueDepth})
	require.Equal(t, "", p.(probes.Uniter).Unit())
	sample := measure(p, waitFor)
	requireOK(t, sample)
	require.Equal(t, 0.0, sample.Value)

	waitDelivered(t, s, sendMail(t, target.Endpoints["smtp"], 1))

	p = newProbe(t, probes.MetricKind(), target, faults.Params{"metric": mailstack.MetricScans,
		"labels": "result=clean, engine=\"av-engine-2\"", "unit": "scans"})
	require.Equal(t, "scans", p.(probes.Uniter).Unit())
	sample = measure(p, waitFor)
	requireOK(t, sample)
	require.Equal(t, 1.0, sample.Value, "one clean scan by av-engine-2")

	p = newProbe(t, probes.MetricKind(), target, faults.Params{"metric": mailstack.MetricScans, "labels": "result=clean"})
	sample = measure(p, waitFor)
	requireOK(t, sample)
	require.Equal(t, 3.0, sample.Value, "matching series are summed over the three engines")

	p = newProbe(t, probes.MetricKind(), target, faults.Params{"metric": mailstack.MetricDeliveryLatency + "_count"})
	sample = measure(p, waitFor)
	requireOK(t, sample)
	require.Equal(t, 1.0, sample.Value, "NAME_count of a histogram")

	p = newProbe(t, probes.MetricKind(), target, faults.Params{"url": "http://" + target.Endpoints["metrics"] + "/metrics",
		"metric": mailstack.MetricDelivered})
	sample = measure(p, waitFor)
	requireOK(t, sample)
	require.Equal(t, 1.0, sample.Value, "a counter's current value")
}

func TestMetricRateFromTheStack(t *testing.T) {
	t.Parallel()
	s, target := startStack(t, testConfig(t))
	p := newProbe(t, probes.MetricKind(), target, faults.Params{"metric": mailstack.MetricAccepted, "kind": "rate"})
	first := measure(p, waitFor)
	require.True(t, first.Skip, "the first rate sample has nothing to compare with")
	require.False(t, first.Failed, first.Err)

	var ids []string
	for i := range 3 {
		ids = append(ids, sendMail(t, target.Endpoints["smtp"], i))
	}
	waitDelivered(t, s, ids...)
	second := measure(p, waitFor)
	requireOK(t, second)
	require.Greater(t, second.Value, 0.0)
	require.InDelta(t, 3/second.At.Sub(first.At).Seconds(), second.Value, 1e-9)
}

func TestMetricQuantileFromTheStack(t *testing.T) {
	t.Parallel()
	s, target := startStack(t, testConfig(t))
	p := newProbe(t, probes.MetricKind(), target, faults.Params{"metric": mailstack.MetricDeliveryLatency,
		"kind": "quantile", "quantile": "0.99", "unit": "s"})
	require.True(t, measure(p, waitFor).Skip, "first sample")

	var ids []string
	for i := range 5 {
		ids = append(ids, sendMail(t, target.Endpoints["smtp"], i))
	}
	waitDelivered(t, s, ids...)
	sample := measure(p, waitFor)
	requireOK(t, sample)
	require.False(t, math.IsNaN(sample.Value) || math.IsInf(sample.Value, 0), "value %v", sample.Value)
	require.Greater(t, sample.Value, 0.0)

	sample = measure(p, waitFor)
	require.True(t, sample.Skip, "no delivery since the previous sample")
	require.False(t, sample.Failed)
}

func TestMetricMissingOrUnmatched(t *testing.T) {
	t.Parallel()
	_, target := startStack(t, testConfig(t))
	p := newProbe(t, probes.MetricKind(), target, faults.Params{"metric": "mailstack_queue_dept"})
	s := measure(p, waitFor)
	require.True(t, s.Failed)
	require.Contains(t, s.Err, "metric mailstack_queue_dept not found")
	require.Contains(t, s.Err, `did you mean "mailstack_queue_depth"?`)

	p = newProbe(t, probes.MetricKind(), target, faults.Params{"metric": mailstack.MetricQueueMessages, "labels": "state=bogus"})
	s = measure(p, waitFor)
	require.True(t, s.Failed)
	require.Contains(t, s.Err, `no series of mailstack_queue_messages`)
	require.Contains(t, s.Err, `state="ready"`, "the error lists the series there are")

	p = newProbe(t, probes.MetricKind(), target, faults.Params{"metric": mailstack.MetricDeliveryLatency})
	s = measure(p, waitFor)
	require.True(t, s.Failed)
	require.Contains(t, s.Err, "is a histogram")

	p = newProbe(t, probes.MetricKind(), target, faults.Params{"metric": mailstack.MetricQueueDepth, "kind": "rate"})
	s = measure(p, waitFor)
	require.True(t, s.Failed)
	require.Contains(t, s.Err, "is a gauge")

	p = newProbe(t, probes.MetricKind(), target, faults.Params{"metric": mailstack.MetricAccepted, "kind": "quantile"})
	s = measure(p, waitFor)
	require.True(t, s.Failed)
	require.Contains(t, s.Err, "needs a histogram")

	p = newProbe(t, probes.MetricKind(), target, faults.Params{"metric": "up", "url": "http://" + target.Endpoints["metrics"] + "/nothing"})
	s = measure(p, waitFor)
	require.True(t, s.Failed)
	require.Contains(t, s.Err, "404")

	p = newProbe(t, probes.MetricKind(), target, faults.Params{"metric": "up", "endpoint": testnet.FreeAddr(t)})
	s = measure(p, waitFor)
	require.True(t, s.Failed)
	require.Contains(t, s.Err, "scrape")
}

// exposition serves one of a fixed series of scrapes, chosen by the test.
type exposition struct {
	step   atomic.Int32
	bodies []string
}

func (e *exposition) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	_, _ = fmt.Fprint(w, e.bodies[e.step.Load()])
}

func scrapeBody(ok200, err500 int, buckets [4]int) string {
	return fmt.Sprintf(`# TYPE reqs_total counter
reqs_total{code="200"} %d
reqs_total{code="500"} %d
# TYPE lat histogram
lat_bucket{le="0.1"} %d
lat_bucket{le="0.2"} %d
lat_bucket{le="0.4"} %d
lat_bucket{le="+Inf"} %d
lat_sum 1
lat_count %d
`, ok200, err500, buckets[0], buckets[1], buckets[2], buckets[3], buckets[3])
}

func TestMetricRateAndQuantileArithmetic(t *testing.T) {
	t.Parallel()
	e := &exposition{bodies: []string{
		scrapeBody(10, 5, [4]int{0, 0, 0, 0}),
		scrapeBody(20, 5, [4]int{2, 6, 10, 10}), // 10 observations
		scrapeBody(3, 6, [4]int{2, 6, 10, 10}),  // code 200 reset; no observations
		scrapeBody(4, 6, [4]int{2, 6, 10, 20}),  // 10 observations above 0.4
		scrapeBody(4, 6, [4]int{0, 10, 10, 10}), // histogram reset
	}}
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	target := faults.Target{Endpoints: map[string]string{"metrics": srv.Listener.Addr().String()}}
	all := newProbe(t, probes.MetricKind(), target, faults.Params{"metric": "reqs_total", "kind": "rate"})
	ok := newProbe(t, probes.MetricKind(), target, faults.Params{"metric": "reqs_total", "kind": "rate", "labels": "code=200"})
	p50 := newProbe(t, probes.MetricKind(), target, faults.Params{"metric": "lat", "kind": "quantile", "quantile": "0.5"})
	p99 := newProbe(t, probes.MetricKind(), target, faults.Params{"metric": "lat", "kind": "quantile"})
	ps := []probes.Probe{all, ok, p50, p99}
	prev := make([]probes.Sample, len(ps))
	scrapeAll := func() []probes.Sample {
		out := make([]probes.Sample, len(ps))
		for i, p := range ps {
			out[i] = measure(p, waitFor)
			require.False(t, out[i].Failed, out[i].Err)
		}
		return out
	}
	rate := func(i int, cur []probes.Sample, inc float64) {
		t.Helper()
		requireOK(t, cur[i])
		require.InDelta(t, inc/cur[i].At.Sub(prev[i].At).Seconds(), cur[i].Value, 1e-6)
	}

	prev = scrapeAll()
	for _, s := range prev {
		require.True(t, s.Skip, "first samples are skipped")
	}

	e.step.Store(1)
	cur := scrapeAll()
	rate(0, cur, 10)
	rate(1, cur, 10)
	require.InDelta(t, 0.175, cur[2].Value, 1e-9) // rank 5 of 10: 3/4 into (0.1, 0.2]
	require.InDelta(t, 0.395, cur[3].Value, 1e-9) // rank 9.9: 3.9/4 into (0.2, 0.4]
	prev = cur

	e.step.Store(2)
	cur = scrapeAll()
	rate(0, cur, 3+1) // the reset series counts from zero
	rate(1, cur, 3)
	require.True(t, cur[2].Skip, "no observations")
	require.True(t, cur[3].Skip, "no observations")
	prev = cur

	e.step.Store(3)
	cur = scrapeAll()
	rate(0, cur, 1)
	require.Equal(t, 0.4, cur[2].Value, "rank in the +Inf bucket: the highest finite bound")
	require.Equal(t, 0.4, cur[3].Value)

	e.step.Store(4)
	cur = scrapeAll()
	require.InDelta(t, 0.15, cur[2].Value, 1e-9, "after a reset the new counts are the observations") // rank 5: 5/10 into (0.1, 0.2]
}
