package experiments_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/experiments"
	"github.com/mailchaos/mailchaos/experiments/journal"
	"github.com/mailchaos/mailchaos/experiments/probes"
)

func TestLoadProbeStepIsValidated(t *testing.T) {
	cat := builtinCatalog(t)
	const head = "version: 1\ntitle: load\n# recovery: at the end\n"
	// The valid files start the recovery clock at the end of the fault
	// that hurts, with the load running past it.
	const fromSlow = "recovery: { from: slow, within: 1s }\n"
	const twoLoads = `
method:
  - name: surge
    fault: load-surge
    for: 5s
  - name: logins
    fault: load-surge
    for: 5s
    params: { protocol: imap }
  - name: slow
    fault: av-latency
    for: 2s
`
	sli := func(params string) string {
		return "steady-state:\n  - name: rate\n    probe: load\n    params: " + params + "\n    tolerance: { min: 10 }\n"
	}
	for _, tc := range []struct {
		name, body string
		want       string // "" if valid
	}{
		{"named", sli("{ step: surge }") + twoLoads + fromSlow, ""},
		{"the only one", sli("{ measure: p99 }") + "method:\n  - fault: load-surge\n    for: 5s\n  - name: slow\n    fault: av-latency\n    for: 2s\n" + fromSlow, ""},
		{"judged after the load", sli("{ step: surge }") + twoLoads,
			`load.yaml:7:15: steady-state[0].params.step: the load of method[0] ends 5s into the method, but the recovery clock starts at 5s, its hold lasts 0s and this SLI samples every 1s: it would have too few samples to recover on`},
		{"at the bound", sli("{ step: surge }\n    interval: 1500ms") + twoLoads + fromSlow,
			`the recovery clock starts at 2s, its hold lasts 0s and this SLI samples every 1.5s: it would have too few samples to recover on`},
		{"too close to the load's end", sli("{ step: surge }\n    interval: 2s") + twoLoads + fromSlow,
			`load.yaml:7:15: steady-state[0].params.step: the load of method[0] ends 5s into the method, but the recovery clock starts at 2s, its hold lasts 0s and this SLI samples every 2s: it would have too few samples to recover on; anchor the clock to the fault that hurts with recovery.from and keep the load running longer than the hold and two sample intervals past its end (past 6s)`},
		{"misspelt", sli("{ step: surg }") + twoLoads,
			`load.yaml:7:15: steady-state[0].params.step: no method step is named "surg"; did you mean "surge"? (load-surge steps: surge, logins)`},
		{"not a load", sli("{ step: slow }") + twoLoads,
			`load.yaml:7:15: steady-state[0].params.step: method step "slow" is not a load-surge step but av-latency (load-surge steps: surge, logins)`},
		{"which one", sli("{ measure: p99 }") + twoLoads,
			`load.yaml:6:5: steady-state[0].probe: the method has 2 load-surge steps (surge, logins): name the one to read with parameter step`},
		{"none", sli("{}") + "method:\n  - fault: av-latency\n    for: 5s\n",
			`load.yaml:6:5: steady-state[0].probe: the method has no load-surge step to read`},
		{"unnamed", sli("{ step: surge }") + "method:\n  - fault: load-surge\n    for: 5s\n",
			`load.yaml:7:15: steady-state[0].params.step: no method step is named "surge" (load-surge steps: none has a name; give it one with name:)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := tc.body
			if !strings.Contains(body, "recovery:") {
				body += "recovery: { within: 1s }\n"
			}
			_, err := experiments.Parse(context.Background(), "load.yaml", []byte(head+body), cat)
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

// TestLoadProbesInARun runs a load on the embedded stack and turns its
// SMTP ingress slow for a while: the load's accepted rate and p99, read
// live by load probes, and an smtp-transaction probe see it, and recover.
func TestLoadProbesInARun(t *testing.T) {
	cat := builtinCatalog(t)
	e, err := experiments.Parse(context.Background(), "load.yaml", []byte(`
version: 1
title: a slow SMTP ingress under load
steady-state:
  - name: accepted
    probe: load
    interval: 200ms
    params: { step: surge, measure: accepted-rate, over: 1s }
    tolerance: { min: 25 }
  - name: p99
    probe: load
    interval: 200ms
    params: { measure: p99, over: 1s }
    tolerance: { max: 1s }
  - name: transaction
    probe: smtp-transaction
    interval: 200ms
    timeout: 1s
    tolerance: { max: 1s }
method:
  - name: surge
    fault: load-surge
    for: 9s
    params: { rate: 50/s, concurrency: 50 }
  - name: slow
    fault: av-latency
    at: 2s
    for: 2s
    link: smtp-ingress
    params: { mode: latency, latency: 1500ms }
recovery: { from: slow, within: 4s, hold: 500ms }
`), cat)
	require.NoError(t, err)
	var buf bytes.Buffer
	res := experiments.Run(context.Background(), e, experiments.Options{Catalog: cat, Journal: journal.NewWriter(&buf, "load")})
	evs, err := journal.Read(&buf)
	require.NoError(t, err)
	require.Equal(t, journal.StatusCompleted, res.Status, "%s %v", res.Message, res.Err)

	var start time.Time
	samples := map[string][]journal.Event{}
	for _, ev := range evs {
		switch ev.Type {
		case journal.TypeInject:
			if ev.Fault == "load-surge" {
				start = ev.Handle.Injected
			}
		case journal.TypeSample:
			samples[ev.SLI] = append(samples[ev.SLI], ev)
		case journal.TypeAssertion:
			// The load is not judged before it runs: no baseline for it.
			require.NotEqual(t, "baseline: accepted", ev.Name)
			require.NotEqual(t, "baseline: p99", ev.Name)
		}
	}
	require.False(t, start.IsZero())
	for _, name := range []string{"accepted", "p99"} {
		require.NotEmpty(t, samples[name], name)
		for _, s := range samples[name] {
			// A sample starts a moment before it reads the load.
			require.False(t, s.At.Before(start.Add(500*time.Millisecond)), "%s: a full window of the load is needed: %+v", name, s)
			require.False(t, s.At.After(start.Add(9500*time.Millisecond)), "%s: nothing after the schedule stopped: %+v", name, s)
		}
	}
	// Before the ingress turns slow, the load gets its 50 messages a second
	// through in a few milliseconds each.
	var good []float64
	for _, s := range samples["accepted"] {
		if s.At.Before(start.Add(2 * time.Second)) {
			good = append(good, s.Value)
		}
	}
	require.NotEmpty(t, good)
	for _, v := range good {
		require.InDelta(t, 50, v, 20, "accepted rate before the fault: %v", good)
	}
	byName := map[string]journal.SLISummary{}
	for _, s := range res.Summary.SLIs {
		byName[s.Name] = s
	}
	require.Less(t, byName["accepted"].Worst, 25.0, "replies held 1.5 s: the accepted rate drops")
	require.GreaterOrEqual(t, byName["p99"].Worst, 1.4, "replies held 1.5 s: the p99 rises")
	for _, name := range []string{"accepted", "p99", "transaction"} {
		require.True(t, byName[name].Recovered, name)
		t.Logf("%s: worst %.3g, recovered in %s", name, byName[name].Worst, byName[name].TimeToRecover)
	}
	// The transaction probe saw 2xx, then timeouts: a transaction takes six
	// replies, each held 1.5 s, far over its 1 s timeout.
	classes := map[string]int{}
	for _, s := range samples["transaction"] {
		classes[s.Class]++
		if s.Class == probes.ClassTimeout {
			require.True(t, s.Failed)
			require.True(t, strings.HasPrefix(s.Err, "timeout: "), s.Err)
		}
	}
	require.Positive(t, classes[probes.Class2xx], "%v", classes)
	require.Positive(t, classes[probes.ClassTimeout], "%v", classes)
}
