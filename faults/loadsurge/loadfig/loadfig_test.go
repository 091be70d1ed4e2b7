package loadfig_test

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/faults/loadsurge/loadfig"
)

func TestLatencyBounds(t *testing.T) {
	b := loadfig.LatencyBounds()
	require.Equal(t, loadfig.LatencyMin, b[0])
	require.Equal(t, loadfig.LatencyMax, b[len(b)-1])
	for i := 1; i < len(b); i++ {
		require.Greater(t, b[i], b[i-1], "bound %d", i)
		require.LessOrEqual(t, float64(b[i])/float64(b[i-1]), loadfig.LatencyRatio, "bound %d", i)
	}
	// No more bounds than it takes: 100µs·1.05^n reaches 5 min at
	// n = ⌈ln(3e6)/ln(1.05)⌉ = 306, one more for the rounding down.
	n := int(math.Ceil(math.Log(float64(loadfig.LatencyMax/loadfig.LatencyMin)) / math.Log(loadfig.LatencyRatio)))
	require.Contains(t, []int{n + 1, n + 2}, len(b))
	require.GreaterOrEqual(t, float64(b[len(b)-2])*loadfig.LatencyRatio, float64(loadfig.LatencyMax)-1)
	require.Equal(t, len(b)+1, loadfig.NumBuckets())
	b[0] = 0
	require.Equal(t, loadfig.LatencyMin, loadfig.LatencyBounds()[0], "every call returns a new slice")

	require.Equal(t, "lat_b000", loadfig.BucketName(0))
	require.Equal(t, fmt.Sprintf("lat_b%d", len(b)), loadfig.BucketName(loadfig.NumBuckets()-1))
}

func TestBucket(t *testing.T) {
	b := loadfig.LatencyBounds()
	for _, tc := range []struct {
		d    time.Duration
		want int
	}{
		{0, 0},
		{loadfig.LatencyMin, 0},
		{loadfig.LatencyMin + 1, 1},
		{b[10], 10},
		{b[10] + 1, 11},
		{loadfig.LatencyMax, len(b) - 1},
		{loadfig.LatencyMax + 1, len(b)},
		{time.Hour, len(b)},
	} {
		require.Equal(t, tc.want, loadfig.Bucket(b, tc.d), "latency %s", tc.d)
	}
}

// figures builds a snapshot of an SMTP run: its age, counts, and the
// latencies of its accepted messages.
func figures(elapsed float64, counts map[string]float64, latencies ...time.Duration) loadfig.Figures {
	f := loadfig.Figures{loadfig.Elapsed: elapsed}
	for k, v := range counts {
		f[k] = v
	}
	b := loadfig.LatencyBounds()
	for _, d := range latencies {
		f[loadfig.BucketName(loadfig.Bucket(b, d))]++
	}
	return f
}

func TestWindow(t *testing.T) {
	var lat []time.Duration
	for range 90 {
		lat = append(lat, 10*time.Millisecond)
	}
	a := figures(2, map[string]float64{loadfig.Offered: 200, loadfig.Accepted: 90, loadfig.Tempfail: 5, loadfig.Unsent: 1}, lat...)
	// One second later: 100 more offered; 80 more accepted (the first 10 of
	// them slow), 8 tempfail, 4 rejected, 3 conn-errors, 2 timeouts, 2 cut
	// and 1 unsent: 100 more ended.
	for i := range 80 {
		if i < 10 {
			lat = append(lat, time.Second)
		} else {
			lat = append(lat, 10*time.Millisecond)
		}
	}
	b := figures(3, map[string]float64{loadfig.Offered: 300, loadfig.Accepted: 170, loadfig.Tempfail: 13, loadfig.Rejected: 4,
		loadfig.ConnError: 3, loadfig.Timeout: 2, loadfig.Cut: 2, loadfig.Unsent: 2}, lat...)

	w := loadfig.Window(a, b)
	require.InDelta(t, 1.0, w.Seconds, 1e-12)
	require.InDelta(t, 100.0, w.Offered, 1e-12)
	require.InDelta(t, 100.0, w.OfferedRate, 1e-12)
	require.InDelta(t, 80.0, w.Succeeded, 1e-12)
	require.InDelta(t, 80.0, w.AcceptedRate, 1e-12)
	require.InDelta(t, 100.0, w.Ended, 1e-12)
	for _, tc := range []struct {
		name      string
		got, want float64
	}{
		{"tempfail", w.Tempfail, 0.08}, {"rejected", w.Rejected, 0.04}, {"conn-error", w.ConnError, 0.03},
		{"timeout", w.Timeout, 0.02}, {"cut", w.Cut, 0.02}, {"unsent", w.Unsent, 0.01},
	} {
		require.InDelta(t, tc.want, tc.got, 1e-12, tc.name)
	}
	require.InDelta(t, 80.0, w.Latencies(), 1e-12)

	// Of the 80 latencies of the window, 10 are 1 s: p50 is 10 ms and
	// p90 (rank 72) still 10 ms, p99 (rank 80) 1 s; each within a bucket.
	near := func(want time.Duration, q float64) {
		t.Helper()
		got, ok := w.Quantile(q)
		require.True(t, ok)
		require.InEpsilon(t, float64(want), float64(got), loadfig.LatencyRatio-1, "q%g: got %s, want %s", q, got, want)
	}
	near(10*time.Millisecond, 0.5)
	near(10*time.Millisecond, 0.875)
	near(time.Second, 0.9)
	near(time.Second, 0.99)

	// The whole run so far, from a nil (start-of-run) snapshot.
	all := loadfig.Window(nil, b)
	require.InDelta(t, 100.0, all.OfferedRate, 1e-12)
	require.InDelta(t, 170.0, all.Succeeded, 1e-12)
	require.InDelta(t, 170.0, all.Latencies(), 1e-12)

	// An empty window: no rates, no shares, no latency.
	empty := loadfig.Window(b, b)
	require.Zero(t, empty.Seconds)
	require.Zero(t, empty.AcceptedRate)
	require.Zero(t, empty.Ended)
	require.Zero(t, empty.Tempfail)
	_, ok := empty.Quantile(0.99)
	require.False(t, ok)

	// Snapshots the wrong way round give nothing negative.
	back := loadfig.Window(b, a)
	require.Zero(t, back.Offered)
	require.Zero(t, back.Latencies())
}

func TestWindowIMAP(t *testing.T) {
	// An IMAP run counts failures by step; failed is their sum, cut and
	// timeouts included.
	a := loadfig.Figures{loadfig.Elapsed: 1, loadfig.Offered: 10, loadfig.Succeeded: 10, loadfig.Failed: 0}
	b := loadfig.Figures{loadfig.Elapsed: 3, loadfig.Offered: 30, loadfig.Succeeded: 20, loadfig.Failed: 8,
		"login": 5, loadfig.Timeout: 2, loadfig.Cut: 1, loadfig.Unsent: 2}
	w := loadfig.Window(a, b)
	require.InDelta(t, 10.0, w.OfferedRate, 1e-12)
	require.InDelta(t, 5.0, w.AcceptedRate, 1e-12)
	require.InDelta(t, 20.0, w.Ended, 1e-12)
	require.InDelta(t, 0.1, w.Timeout, 1e-12)
	require.InDelta(t, 0.05, w.Cut, 1e-12)
	require.InDelta(t, 0.1, w.Unsent, 1e-12)
	require.Zero(t, w.Tempfail)
}

func TestQuantileBeyondTheLastBound(t *testing.T) {
	w := loadfig.Window(nil, figures(1, map[string]float64{loadfig.Accepted: 2}, time.Millisecond, time.Hour))
	got, ok := w.Quantile(0.99)
	require.True(t, ok)
	require.Equal(t, loadfig.LatencyMax, got)
	got, _ = w.Quantile(0.5)
	require.InEpsilon(t, float64(time.Millisecond), float64(got), loadfig.LatencyRatio-1)
}
