package experiments

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/mailchaos/mailchaos/experiments/journal"
	"github.com/mailchaos/mailchaos/experiments/probes"
	"github.com/mailchaos/mailchaos/internal/exitcode"
)

// allRecovered reports whether every SLI has recovered, judged on the
// samples so far.
func (r *runner) allRecovered(removed, now time.Time) bool {
	for _, s := range r.slis {
		end := now
		if oldest, ok := s.series.oldestPending(); ok && oldest.Before(end) {
			end = oldest // a sample still out may be the one that breaks the hold
		}
		if _, ok := timeToRecover(s.series.snapshot(), s.spec.Tolerance, removed, end, r.exp.Recovery.Hold); !ok {
			return false
		}
	}
	return true
}

// recoveryAnchor names the step whose planned end starts the recovery
// clock, for messages.
func (r *runner) recoveryAnchor() string {
	from := r.exp.recoveryStart()
	for i, st := range r.exp.Method {
		if (r.exp.Recovery.From == "" || st.Name == r.exp.Recovery.From) && st.At+st.For == from {
			if st.Name != "" {
				return fmt.Sprintf("step %s (method[%d] %s)", st.Name, i, st.Fault)
			}
			return fmt.Sprintf("method[%d] %s", i, st.Fault)
		}
	}
	return "the method"
}

// sliFigures is an SLI's figures up to now, whatever the exit path: its
// samples, the baseline its assertion judged, its worst window while the
// faults were planned to be in place (from injectStart to methodEnd; none
// when the method never started) and its last value.
func (r *runner) sliFigures(i int, s *sliState, pts []point, injectStart, methodEnd time.Time) journal.SLISummary {
	tol := s.spec.Tolerance
	ss := journal.SLISummary{Name: s.spec.Name, Unit: r.unit(s), Samples: len(pts), Hold: r.exp.Recovery.Hold}
	ss.Tolerance = tol.format(ss.Unit)
	_, stepped := s.probe.(probes.Stepped)
	switch {
	case i >= len(r.baseline):
		// The baseline was never judged.
	case stepped && r.baseline[i].at.IsZero():
		ss.NoBaseline = true
	default:
		// The value the baseline assertion judged, not a later one.
		b := r.baseline[i]
		ss.BaselineJudged, ss.BaselinePassed = true, b.ok
		ss.Baseline = b.stat
		if i < len(r.baselineWin) {
			ss.BaselineFailed, ss.BaselineMeasured = r.baselineWin[i].failed, r.baselineWin[i].measured
		}
	}
	for _, p := range pts {
		if p.failed {
			ss.FailedSamples++
			ss.LastFailure = oneLine(p.err)
		} else {
			ss.Last, ss.LastMeasured = p.value, true
		}
	}
	if n := len(pts); n > 0 {
		ss.LastFailed = pts[n-1].failed
	}
	if injectStart.IsZero() {
		return ss
	}
	for _, ev := range evaluate(pts, tol, injectStart, methodEnd) {
		ss.Evaluations++
		if ev.failed {
			ss.Failures++
			continue
		}
		if !ss.WorstMeasured || tol.worse(ev.stat, ss.Worst) {
			ss.Worst, ss.WorstMeasured = ev.stat, true
		}
	}
	ss.WorstOut = ss.WorstMeasured && !tol.within(ss.Worst)
	return ss
}

// partialSummary is the summary of a run that stopped before its recovery
// was judged: each SLI's figures so far.
func (r *runner) partialSummary() journal.Summary {
	sum := journal.Summary{Version: journal.SummaryVersion, RecoveryBound: r.exp.Recovery.Within, RecoveryFrom: r.recoveryAnchor()}
	end := time.Now()
	if !r.methodEnd.IsZero() && r.methodEnd.Before(end) {
		end = r.methodEnd
	}
	for i, s := range r.slis {
		sum.SLIs = append(sum.SLIs, r.sliFigures(i, s, s.series.snapshot(), r.injectStart, end))
	}
	return sum
}

// outFor is how long the samples were out of tolerance from from to end:
// the time from each evaluation out of tolerance to the next evaluation
// (or to end).
func outFor(pts []point, tol Tolerance, from, end time.Time) time.Duration {
	evs := evaluate(pts, tol, from, end)
	var d time.Duration
	for i, ev := range evs {
		if ev.ok {
			continue
		}
		next := end
		if i+1 < len(evs) {
			next = evs[i+1].at
		}
		if start := maxTime(ev.at, from); next.After(start) {
			d += next.Sub(start)
		}
	}
	return d
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// recoverySummary works out each SLI's figures (sliFigures) and its time
// to recover from removed (the planned end that starts the clock),
// journals the recovery assertions and says whether any failed. methodEnd
// is the planned end of the last fault.
func (r *runner) recoverySummary(injectStart, removed, methodEnd, end time.Time) (journal.Summary, bool) {
	sum := journal.Summary{Version: journal.SummaryVersion, RecoveryJudged: true,
		RecoveryBound: r.exp.Recovery.Within, RecoveryFrom: r.recoveryAnchor()}
	deviated := false
	overall := time.Duration(0)
	recoveredAll := true
	for i, s := range r.slis {
		pts := s.series.snapshot()
		tol := s.spec.Tolerance
		ss := r.sliFigures(i, s, pts, injectStart, methodEnd)
		ttr, ok := timeToRecover(pts, tol, removed, end, r.exp.Recovery.Hold)
		ss.Recovered = ok
		ss.TimeToRecover = ttr
		if !ok {
			ss.TimeToRecover = -1
			ss.OutFor = outFor(pts, tol, removed, end)
			recoveredAll = false
		}
		ss.Passed = ok && ttr <= r.exp.Recovery.Within
		if !ss.Passed {
			deviated = true
		}
		overall = max(overall, ttr)
		measured := "did not recover"
		if ok {
			measured = ttr.Round(time.Millisecond).String()
		}
		r.assert("recovery: "+s.spec.Name, ss.Passed, measured,
			fmt.Sprintf("within %s, held %s", r.exp.Recovery.Within, r.exp.Recovery.Hold), "")
		if d := r.exp.Recovery.During; d != nil {
			// With the faults in place: from the first injection to the
			// last removal.
			dttr, dok := timeToRecover(pts, tol, injectStart, methodEnd, d.Hold)
			ds := &journal.DuringSummary{TimeToRecover: dttr, Recovered: dok, Passed: dok && dttr <= d.Within, Bound: d.Within}
			measured := "did not recover while the faults were in place"
			if !dok {
				ds.TimeToRecover = -1
			} else {
				measured = dttr.Round(time.Millisecond).String()
			}
			r.assert("recovery during faults: "+s.spec.Name, ds.Passed, measured,
				fmt.Sprintf("within %s of the first fault, held %s", d.Within, d.Hold), "")
			if !ds.Passed {
				deviated = true
			}
			ss.During = ds
		}
		sum.SLIs = append(sum.SLIs, ss)
	}
	sum.TimeToRecover = overall
	if !recoveredAll {
		sum.TimeToRecover = -1
	}
	return sum, deviated
}

// describe writes an evaluation for messages.
func (r *runner) describe(s *sliState, ev evaluation) string {
	switch {
	case ev.failed:
		return "failing (a probe failed)"
	case math.IsNaN(ev.stat) || (ev.stat == 0 && !ev.ok && len(s.series.snapshot()) == 0):
		return "unmeasured (no sample)"
	}
	if r.unit(s) == "s" {
		return time.Duration(ev.stat * float64(time.Second)).Round(time.Microsecond).String()
	}
	return fmt.Sprintf("%g", ev.stat)
}

func (r *runner) assert(name string, passed bool, measured, bound, msg string) {
	p := passed
	_ = r.write(journal.Event{Type: journal.TypeAssertion, Name: name, Passed: &p, Measured: measured, Bound: bound, Message: msg})
	verdict := "ok"
	if !passed {
		verdict = "FAILED"
	}
	r.progress("%s: %s: %s (bound %s)", name, verdict, measured, bound)
}

// verdict journals the run's end.
func (r *runner) verdict(res Result, d time.Duration) {
	ev := journal.Event{Type: journal.TypeVerdict, Status: res.Status, Deviated: res.Deviated, Duration: d,
		Summary: &res.Summary, Message: res.Message}
	if res.Err != nil {
		ev.Err = res.Err.Error()
	}
	ev.ExitCode = int(exitcode.Of(Outcome(res)))
	_ = r.write(ev)
	r.progress("verdict %s", res.Status)
}

// Outcome is the error that reports runs' results to a pipeline: nil when
// every run completed with everything held; otherwise an error that
// carries the exit code of the gravest outcome ([exitcode.Error]). A
// rollback that failed is the gravest (RollbackFailed, around the first
// such run's Err, which says how to remove the fault); then a run stopped
// before anything was hurt because a fault needs a toxic type its server
// lacks (Invalid, around the [*ToxicsError]); then a run that did
// not complete (Aborted, with the message of every run that has one);
// then a system under test that failed (Failed).
func Outcome(results ...Result) error {
	var stopped []string // statuses of runs that did not complete
	aborted, failed := false, false
	var invalid error
	for _, r := range results {
		var te *ToxicsError
		switch {
		case r.RollbackFailed && r.Err != nil:
			return exitcode.Wrap(r.Err, exitcode.RollbackFailed)
		case r.RollbackFailed:
			return exitcode.New(exitcode.RollbackFailed, "a rollback failed: a fault may still be in place")
		case errors.As(r.Err, &te):
			// Found before the run: the input's fault, not the run's.
			invalid = cmp.Or(invalid, r.Err)
		case r.Status == journal.StatusFailed:
			failed = true
		case r.Status != journal.StatusCompleted:
			aborted = true
			if !slices.Contains(stopped, r.Status) {
				stopped = append(stopped, r.Status)
			}
		}
	}
	switch {
	case invalid != nil:
		return exitcode.Wrap(invalid, exitcode.Invalid)
	case aborted:
		// The reason is in the summary, said once; this only names the
		// outcome.
		return exitcode.New(exitcode.Aborted, "the run did not complete ("+strings.Join(stopped, ", ")+"): see the summary")
	case failed:
		return exitcode.New(exitcode.Failed, "the system under test failed: see the summary")
	}
	return nil
}
