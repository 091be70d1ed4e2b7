package loadsurge_test

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/faults/loadsurge"
)

// due counts the messages a schedule makes due in [from, to), checking on
// the way that send times never go backwards.
func due(t *testing.T, s loadsurge.Schedule, from, to time.Duration) int64 {
	t.Helper()
	var n int64
	prev := time.Duration(-1)
	for i := int64(0); ; i++ {
		at, ok := s.At(i)
		if !ok || at >= to {
			return n
		}
		require.GreaterOrEqual(t, at, prev, "message %d goes back in time", i)
		prev = at
		if at >= from {
			n++
		}
	}
}

func TestScheduleCounts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		s        loadsurge.Schedule
		from, to time.Duration
		want     float64
	}{
		{"constant", loadsurge.Constant(100), 0, 10 * time.Second, 1000},
		{"constant fractional", loadsurge.Constant(0.5), 0, 9 * time.Second, 5},
		{"ramp up", loadsurge.Ramp(0, 100, 10*time.Second), 0, 10 * time.Second, 500},
		{"ramp up, first half", loadsurge.Ramp(0, 100, 10*time.Second), 0, 5 * time.Second, 125},
		{"ramp up, after the ramp", loadsurge.Ramp(0, 100, 10*time.Second), 10 * time.Second, 20 * time.Second, 1000},
		{"ramp down", loadsurge.Ramp(300, 100, 10*time.Second), 0, 10 * time.Second, 2000},
		{"ramp to zero", loadsurge.Ramp(100, 0, 10*time.Second), 0, time.Hour, 500},
		{"step", mustSteps(t, "100@0s,300@10s,50@20s"), 0, 30 * time.Second, 1000 + 3000 + 500},
		{"step, middle", mustSteps(t, "100@0s,300@10s,50@20s"), 10 * time.Second, 20 * time.Second, 3000},
		{"step, late start", mustSteps(t, "200@5s"), 0, 10 * time.Second, 1000},
		{"step to zero", mustSteps(t, "100@0s,0@2s"), 0, time.Hour, 200},
		{"spike", loadsurge.Spike(100, 1000, 5*time.Second, 2*time.Second), 0, 10 * time.Second, 8*100 + 2*1000},
		{"spike itself", loadsurge.Spike(100, 1000, 5*time.Second, 2*time.Second), 5 * time.Second, 7 * time.Second, 2000},
		{"spike at start", loadsurge.Spike(0, 500, 0, time.Second), 0, 10 * time.Second, 500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := due(t, tc.s, tc.from, tc.to)
			require.InDelta(t, tc.want, float64(got), 1, "messages due in [%s, %s)", tc.from, tc.to)
			if tc.from == 0 && tc.to < time.Hour {
				// Message i is due when the integral of the rate reaches i.
				require.Equal(t, int64(math.Ceil(tc.s.Expected(tc.to)-1e-9)), got, "Expected(%s) = %v", tc.to, tc.s.Expected(tc.to))
			}
		})
	}
}

func TestScheduleTimes(t *testing.T) {
	t.Parallel()
	c := loadsurge.Constant(200)
	for i, want := range map[int64]time.Duration{0: 0, 1: 5 * time.Millisecond, 200: time.Second, 1999: 9995 * time.Millisecond} {
		got, ok := c.At(i)
		require.True(t, ok)
		require.InDelta(t, float64(want), float64(got), float64(time.Microsecond), "message %d", i)
	}
	// Under a linear ramp from 0, message i is due at sqrt(2·i·T/r).
	r := loadsurge.Ramp(0, 100, 10*time.Second)
	got, ok := r.At(200)
	require.True(t, ok)
	require.InDelta(t, math.Sqrt(2*200*10/100.0), got.Seconds(), 1e-9)
	require.InDelta(t, 50, r.Rate(5*time.Second), 1e-9)
	require.InDelta(t, 100, r.Rate(time.Minute), 1e-9)

	_, ok = loadsurge.Ramp(100, 0, 10*time.Second).At(500)
	require.False(t, ok, "a ramp down to 0 ends")
	require.True(t, loadsurge.Constant(0).Closed())
	require.True(t, loadsurge.Schedule{}.Closed())
	_, ok = loadsurge.Schedule{}.At(0)
	require.False(t, ok)
	require.False(t, loadsurge.Constant(1).Closed())
}

func TestParseSteps(t *testing.T) {
	t.Parallel()
	steps, err := loadsurge.ParseSteps("100@0s, 300/s@10s,18000/m@20s")
	require.NoError(t, err)
	require.Equal(t, []loadsurge.Step{{Rate: 100}, {Rate: 300, At: 10 * time.Second}, {Rate: 300, At: 20 * time.Second}}, steps)
	for _, bad := range []string{"", "100", "fast@0s", "100@soon", "100@-1s", "100@2s,50@1s", "100@1s,50@1s", "100@0s,"} {
		_, err := loadsurge.ParseSteps(bad)
		require.Error(t, err, "%q", bad)
	}
}

func mustSteps(t *testing.T, v string) loadsurge.Schedule {
	t.Helper()
	steps, err := loadsurge.ParseSteps(v)
	require.NoError(t, err)
	return loadsurge.Steps(steps)
}
