package experiments_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/experiments"
	"github.com/mailchaos/mailchaos/experiments/journal"
)

// TestARunJournalsItsLoad runs a load on the embedded stack with no SLI
// reading it: the journal still has what the load did, window by window,
// for reports to draw; and nothing once it was removed.
func TestARunJournalsItsLoad(t *testing.T) {
	cat := builtinCatalog(t)
	e, err := experiments.Parse(context.Background(), "load.yaml", []byte(`
version: 1
title: a load, journalled
baseline: 1s
steady-state:
  - name: queue
    probe: metric
    interval: 500ms
    params: { metric: mailstack_queue_messages }
    tolerance: { max: 1000 }
method:
  - name: surge
    fault: load-surge
    for: 4s
    params: { rate: 40/s, concurrency: 10 }
recovery: { within: 5s, hold: 500ms }
`), cat)
	require.NoError(t, err)
	var buf bytes.Buffer
	res := experiments.Run(context.Background(), e, experiments.Options{Catalog: cat, Journal: journal.NewWriter(&buf, "load")})
	require.Equal(t, journal.StatusCompleted, res.Status, "%s %v", res.Message, res.Err)
	evs, err := journal.Read(&buf)
	require.NoError(t, err)

	var removedAt time.Time
	for _, ev := range evs {
		if ev.Type == journal.TypeRemove && ev.Fault == "load-surge" {
			removedAt = ev.T
		}
	}
	require.False(t, removedAt.IsZero())
	var loads []journal.Event
	var offered, accepted, seconds float64
	for _, ev := range evs {
		switch {
		case ev.Type == journal.TypeLoad:
			require.True(t, ev.At.Before(removedAt), "a load window ends after the load was removed: %+v", ev)
			require.Equal(t, 0, ev.Step)
			require.Equal(t, "load-surge", ev.Fault)
			require.NotNil(t, ev.Load)
			require.Positive(t, ev.Load.Seconds)
			loads = append(loads, ev)
			offered += ev.Load.OfferedRate * ev.Load.Seconds
			accepted += ev.Load.AcceptedRate * ev.Load.Seconds
			seconds += ev.Load.Seconds
			if ev.Load.AcceptedRate > 0 {
				require.NotNil(t, ev.Load.P50, "accepted messages have a latency: %+v", ev.Load)
				require.NotNil(t, ev.Load.P99)
				require.LessOrEqual(t, *ev.Load.P50, *ev.Load.P99)
			}
		}
	}
	// About one window a second over the 4 s load; how many exactly
	// depends on the machine's pace, the figures do not.
	require.GreaterOrEqual(t, len(loads), 2, "%d windows", len(loads))
	// The windows add up: what they counted is what the schedule made
	// due (40 a second) over the time they covered, all accepted.
	require.InDelta(t, 40*seconds, offered, 40*0.25*seconds+2, "offered over %.1fs", seconds)
	require.InDelta(t, offered, accepted, offered*0.1+2, "accepted")
}
