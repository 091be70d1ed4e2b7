package experiments

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func q(v float64) *Quantity { x := Quantity(v); return &x }

// synth makes one sample per interval from start to end with value f(t).
func synth(start, end time.Time, interval time.Duration, f func(time.Time) (float64, bool)) []point {
	var pts []point
	for t := start; !t.After(end); t = t.Add(interval) {
		v, failed := f(t)
		pts = append(pts, point{at: t, value: v, failed: failed})
	}
	return pts
}

func TestTimeToRecoverOnSyntheticSeries(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	removed := t0.Add(10 * time.Second)
	interval := 250 * time.Millisecond
	for _, tt := range []struct {
		name      string
		tol       Tolerance
		recoverAt time.Duration // true recovery moment after removal
		hold      time.Duration
	}{
		{"per sample", Tolerance{Max: q(1), Stat: "max"}, 3 * time.Second, 2 * time.Second},
		{"immediately", Tolerance{Max: q(1), Stat: "max"}, 0, time.Second},
		{"windowed p99", Tolerance{Max: q(1), Stat: "p99", Over: 2 * time.Second}, 4 * time.Second, time.Second},
		{"min bound", Tolerance{Min: q(0.9), Stat: "mean"}, 1500 * time.Millisecond, time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			truth := removed.Add(tt.recoverAt)
			good, bad := 0.5, 5.0
			if tt.tol.Min != nil {
				good, bad = 1, 0
			}
			pts := synth(t0, removed.Add(30*time.Second), interval, func(at time.Time) (float64, bool) {
				if at.Before(truth) && at.After(t0.Add(2*time.Second)) {
					return bad, false
				}
				return good, false
			})
			ttr, ok := timeToRecover(pts, tt.tol, removed, removed.Add(30*time.Second), tt.hold)
			require.True(t, ok)
			want := tt.recoverAt + tt.tol.Over // a window clears once the bad samples leave it
			require.InDelta(t, want.Seconds(), ttr.Seconds(), interval.Seconds(),
				"time to recover %s, true %s", ttr, want)
		})
	}
}

func TestTimeToRecoverNeedsTheHold(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	tol := Tolerance{Max: q(1), Stat: "max"}
	// Good for 1 s, bad again, then good for good from 5 s.
	pts := synth(t0, t0.Add(20*time.Second), 100*time.Millisecond, func(at time.Time) (float64, bool) {
		d := at.Sub(t0)
		if d >= time.Second && d < 5*time.Second {
			return 2, false
		}
		return 0, false
	})
	ttr, ok := timeToRecover(pts, tol, t0, t0.Add(20*time.Second), 2*time.Second)
	require.True(t, ok)
	require.Equal(t, 5*time.Second, ttr)
	// Not enough data after the last good stretch: no verdict yet.
	_, ok = timeToRecover(pts, tol, t0, t0.Add(5500*time.Millisecond), 2*time.Second)
	require.False(t, ok)
	// Failed samples are out of tolerance.
	failing := synth(t0, t0.Add(5*time.Second), 100*time.Millisecond, func(time.Time) (float64, bool) { return 0, true })
	_, ok = timeToRecover(failing, tol, t0, t0.Add(5*time.Second), time.Second)
	require.False(t, ok)
}

func TestStatistics(t *testing.T) {
	vals := []float64{5, 1, 3, 2, 4}
	require.Equal(t, 5.0, statistic("max", vals))
	require.Equal(t, 1.0, statistic("min", vals))
	require.Equal(t, 3.0, statistic("mean", vals))
	require.Equal(t, 4.0, statistic("last", vals))
	require.Equal(t, 3.0, statistic("p50", vals))
	require.Equal(t, 5.0, statistic("p99", vals))
}

func TestQuantitiesAndConditions(t *testing.T) {
	for in, want := range map[string]float64{"2s": 2, "250ms": 0.25, "99%": 0.99, "5000": 5000, "1.5": 1.5} {
		got, err := ParseQuantity(in)
		require.NoError(t, err, in)
		require.InDelta(t, want, got, 1e-12, in)
	}
	_, err := ParseQuantity("fast")
	require.Error(t, err)
	c, err := ParseCondition("> 5000")
	require.NoError(t, err)
	require.True(t, c.Holds(5001))
	require.False(t, c.Holds(5000))
	c, err = ParseCondition(">= 30s")
	require.NoError(t, err)
	require.True(t, c.Holds(30))
	_, err = ParseCondition("5000")
	require.Error(t, err)
}
