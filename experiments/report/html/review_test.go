package htmlreport_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/experiments/journal"
)

// TestReportIgnoresStepsOutsideThePlan feeds fault and load events whose
// step is negative or far past the plan (and, without a plan, past the
// cap): the page neither panics nor grows a row for them.
func TestReportIgnoresStepsOutsideThePlan(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	plan := []byte(`{"method":[{"name":"slow","fault":"av-latency","at":0,"for":1000000000}]}`)
	hostileSteps := func(start journal.Event, steps ...int) []journal.Event {
		evs := []journal.Event{start, {T: t0, Type: journal.TypePhase, Run: "r", Phase: "inject"}}
		for _, s := range steps {
			evs = append(evs,
				journal.Event{T: t0, Type: journal.TypeInject, Run: "r", Step: s, Fault: "x"},
				journal.Event{T: t0, Type: journal.TypeRemove, Run: "r", Step: s, Fault: "x"},
				journal.Event{T: t0, Type: journal.TypeLoad, Run: "r", Step: s, At: t0, Load: &journal.LoadWindow{Seconds: 1, OfferedRate: 1}})
		}
		return evs
	}
	for _, c := range []struct {
		name  string
		evs   []journal.Event
		steps int
	}{
		{"plan", hostileSteps(journal.Event{T: t0, Type: journal.TypeRunStart, Run: "r", Experiment: plan}, -1, 0, 1, 100000), 1},
		{"no plan", hostileSteps(journal.Event{T: t0, Type: journal.TypeRunStart, Run: "r"}, -1, 0, 1024, 100000), 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			page := render(t, c.evs)
			require.Contains(t, page, fmt.Sprintf(`data-steps="%d"`, c.steps))
			require.Equal(t, 1, strings.Count(page, `data-chart="method[`)/2, "one load step drawn")
			require.NotContains(t, page, "method[-1]")
			require.NotContains(t, page, "method[100000]")
		})
	}
}
