package experiments_test

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/experiments"
	"github.com/mailchaos/mailchaos/experiments/journal"
	"github.com/mailchaos/mailchaos/experiments/report"
	"github.com/mailchaos/mailchaos/internal/exitcode"
)

// writeJournals, when set, keeps each exit path's journal in that folder
// (how experiments/report/testdata's run journals were made).
var writeJournals = flag.String("write-journals", "", "write each exit path's journal to this `DIR`")

// exitPath is one way a run ends, as the summary must tell it.
type exitPath struct {
	name string
	body string
	// setup prepares the lab; run may replace the context.
	setup func(t *testing.T, l *lab) context.Context
	// target replaces the lab's target block.
	target string
	status string
	code   exitcode.Code
}

func exitPaths() []exitPath {
	short := banner + `
baseline: 300ms
method:
  - fault: synthetic
    at: 0s
    for: 300ms
`
	return []exitPath{
		{name: "pass", body: short + "recovery: { within: 2s, hold: 200ms }\n", status: report.StatusPass, code: exitcode.OK},
		{name: "fail", body: banner + `
baseline: 300ms
method:
  - fault: synthetic
    at: 0s
    for: 300ms
    params: { delay: 400ms, recover-after: 1500ms }
recovery: { within: 500ms, hold: 300ms }
`, status: report.StatusFail, code: exitcode.Failed},
		{name: "aborted-baseline", body: short + "recovery: { within: 1s, hold: 100ms }\n",
			setup: func(t *testing.T, l *lab) context.Context {
				l.srv.delay.Store(int64(400 * time.Millisecond))
				return context.Background()
			}, status: report.StatusAborted, code: exitcode.Aborted},
		{name: "interrupted", body: banner + `
baseline: 300ms
method:
  - fault: synthetic
    at: 0s
    for: 1m
recovery: { within: 1s, hold: 100ms }
`, setup: func(t *testing.T, l *lab) context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			t.Cleanup(cancel)
			// until polls cond; false if the run ended first.
			until := func(cond func() bool) bool {
				for !cond() {
					select {
					case <-ctx.Done():
						return false
					case <-time.After(10 * time.Millisecond):
					}
				}
				return true
			}
			go func() {
				// A first Ctrl-C once the fault is in place, with some
				// samples taken while it is.
				if !until(l.syn.isActive) {
					return
				}
				from := l.srv.conns.Load()
				if until(func() bool { return l.srv.conns.Load() >= from+3 }) {
					cancel()
				}
			}()
			return ctx
		}, status: report.StatusInterrupted, code: exitcode.Aborted},
		{name: "target-cannot-start", body: short + "recovery: { within: 1s, hold: 100ms }\n",
			target: `target:
  kind: external
  toxiproxy: http://127.0.0.1:1
  endpoints: { svc: "127.0.0.1:1" }
  links:
    - name: svc
      upstream: 127.0.0.1:1
`, status: report.StatusError, code: exitcode.Aborted},
		{name: "rollback-failed", body: banner + `
baseline: 300ms
method:
  - fault: sticky
    at: 0s
    for: 300ms
recovery: { within: 1s, hold: 100ms }
`, setup: func(t *testing.T, l *lab) context.Context {
			require.NoError(t, l.cat.Faults.Add(context.Background(), &failingRemove{synthetic{srv: startSlowServer(t)}}))
			return context.Background()
		}, status: report.StatusRollbackFailed, code: exitcode.RollbackFailed},
	}
}

// TestSummaryOnEveryExitPath runs one experiment per way a run ends and
// checks that the summary never contradicts the exit code: the status
// word is the exit code's meaning, the overall row says it too, SLI rows
// are there whenever samples are, an unmeasured value is never a 0, and
// the reason is said once.
func TestSummaryOnEveryExitPath(t *testing.T) {
	for _, p := range exitPaths() {
		t.Run(p.name, func(t *testing.T) {
			l := newLab(t)
			ctx := context.Background()
			if p.setup != nil {
				ctx = p.setup(t, l)
			}
			if p.target != "" {
				l.yaml = p.target
			}
			e := l.experiment(t, p.body)
			var buf bytes.Buffer
			jw := journal.NewWriter(&buf, "run-"+p.name)
			res := experiments.Run(ctx, e, experiments.Options{Catalog: l.cat, Journal: jw, RunID: "run-" + p.name, File: p.name + ".yaml"})
			code := exitcode.Of(experiments.Outcome(res))
			require.Equal(t, p.code, code, "%s: %v", res.Message, res.Err)
			evs, err := journal.Read(bytes.NewReader(buf.Bytes()))
			require.NoError(t, err)
			if *writeJournals != "" {
				require.NoError(t, os.WriteFile(filepath.Join(*writeJournals, p.name+".jsonl"), buf.Bytes(), 0o644))
			}

			sum := report.Summarize(evs)
			require.Equal(t, report.SummarySchema, sum.Schema)
			require.Equal(t, int(code), sum.ExitCode)
			require.Equal(t, p.status, sum.Status)
			require.Len(t, sum.Runs, 1)
			run := sum.Runs[0]
			require.Equal(t, p.status, run.Status)
			require.Equal(t, "synthetic", run.Title, "the run-start is journalled on every path")

			samples := 0
			for _, ev := range evs {
				if ev.Type == journal.TypeSample {
					samples++
				}
			}
			var out bytes.Buffer
			require.NoError(t, report.Terminal(&out, evs))
			text := out.String()
			if samples > 0 {
				require.NotEmpty(t, run.SLIs, "samples were taken: the SLI has a row")
				require.Contains(t, text, "  banner ")
				require.Regexp(t, `(?m)^  overall .* `+p.status+`$`, text, "the overall row says the run's status")
				for _, s := range run.SLIs {
					if s.Worst != nil && s.Worst.AllFailed {
						require.Nil(t, s.Worst.Value)
						require.Contains(t, s.Worst.Text, "all ")
					}
					if s.Baseline != nil && s.Baseline.Value != nil && !s.Baseline.Passed {
						require.Equal(t, report.StatusAborted, p.status, "only a failed steady state has a failed baseline")
					}
				}
			}
			switch p.code {
			case exitcode.OK:
			case exitcode.Failed:
				require.NotEmpty(t, run.Failed, "a failed run names what failed")
			default:
				require.NotRegexp(t, `(?m)^  overall .* pass$`, text)
				require.NotEmpty(t, run.Reason)
				require.Equal(t, 1, strings.Count(text, run.Reason), "the reason is said once:\n%s", text)
			}
			require.NotRegexp(t, `\bmeasured \S+ vs bound`, text, "sentences, not machine text")
		})
	}
}
