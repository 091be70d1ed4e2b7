package experiments

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/mailchaos/mailchaos/experiments/probes"
	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/internal/exitcode"
)

// PhaseCheck is the one phase of a [Check].
const PhaseCheck = "check"

// MinCheckDuration is the shortest a [Check] samples by default: enough
// samples of a one-second SLI to see their spread.
const MinCheckDuration = 30 * time.Second

// CheckOptions are the surroundings of [Check]. Every field but Catalog
// is optional.
type CheckOptions struct {
	// Catalog names the probes (and the faults the file was validated
	// with).
	Catalog Catalog
	// Log receives operational messages; nil discards them.
	Log *slog.Logger
	// View shows the check as it happens; nil shows nothing.
	View View
	// Kill ends when the check must stop at once (a second signal): the
	// target is then stopped without waiting.
	Kill context.Context
	// For is how long the SLIs are sampled; 0 means the experiment's
	// [Experiment.CheckDuration].
	For time.Duration
	// Ready is called once the target is up, with its description (its
	// endpoints), before the first sample.
	Ready func(faults.Target)
}

// CheckResult is what a [Check] measured: each SLI's samples and whether
// it held.
type CheckResult struct {
	// For is how long the SLIs were sampled: less than planned when the
	// check was interrupted.
	For time.Duration
	// SLIs are the experiment's SLIs, in its order.
	SLIs []SLICheck
}

// SLICheck is one SLI during a [Check].
type SLICheck struct {
	Name  string
	Probe string
	// Unit is the unit of its values ("s": seconds).
	Unit string
	// Bound is its tolerance, as a user reads it.
	Bound string
	// NotMeasured says why the SLI was not measured (it reads the load of
	// a method step, and a check runs none); "" when it was.
	NotMeasured string
	// Values are the values of the samples that did not fail, in time
	// order.
	Values []float64
	// Failed counts the samples that failed; LastFailure is the last one's
	// reason.
	Failed      int
	LastFailure string
	// Windows counts the moments the tolerance was judged at (one a
	// sample, over its window); Out those out of tolerance, the first of
	// them FirstOut after the check started.
	Windows  int
	Out      int
	FirstOut time.Duration
	// Stat is the statistic judged over each window, for a tolerance over
	// a window ("" when each sample is judged alone, or when every window
	// held a failed sample); Worst is the worst window's.
	Stat  string
	Worst float64
	// Held is true when the SLI was measured and every window was within
	// tolerance.
	Held bool
}

// CheckDuration is how long [Check] samples by default: the experiment's
// baseline, which spans its longest tolerance window, and at least
// [MinCheckDuration].
func (e *Experiment) CheckDuration() time.Duration {
	return max(e.Baseline, MinCheckDuration)
}

// CheckIgnores says in one line what of the experiment [Check] leaves
// aside (the method, the recovery bound, the invariants), or returns ""
// when the file describes a steady state alone.
func (e *Experiment) CheckIgnores() string {
	if len(e.Method) == 0 && len(e.Invariants) == 0 {
		return ""
	}
	var parts []string
	if n := len(e.Method); n > 0 {
		parts = append(parts, fmt.Sprintf("the method (%d %s)", n, plural(n, "fault", "faults")), "the recovery bound")
	}
	if len(e.Invariants) > 0 {
		parts = append(parts, "the invariants")
	}
	return "check: " + strings.Join(parts, ", ") + " are ignored: check measures the steady state alone, with no fault"
}

// plural picks the word for n.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// errCheckInterrupted ends a check stopped by a signal.
var errCheckInterrupted = exitcode.New(exitcode.Aborted, "interrupted: the check stopped early and its target was stopped")

// Check measures an experiment's steady state alone, as `mailchaos check`
// does: it starts or opens the target, samples every SLI for opts.For with
// no fault, as a run's baseline does, and stops what it started. An SLI
// holds when every sample was taken and every window of its tolerance
// over the check was within it.
//
// The error carries the exit code ([exitcode.Error]): nil when every SLI
// that could be measured held; Failed when one did not; Aborted when the
// check was interrupted (ctx ended: a signal), the target could not start,
// or a probe could not keep up. The result holds what was measured, also
// when the check stopped early. The experiment must have been loaded with
// Catalog.SteadyStateOnly when its method may be empty.
func Check(ctx context.Context, exp *Experiment, opts CheckOptions) (res CheckResult, err error) {
	measurable := slices.ContainsFunc(exp.SteadyState, func(s SLI) bool { return s.Probe != probes.KindLoad })
	if !measurable {
		return CheckResult{}, exitcode.New(exitcode.Invalid,
			"check: every SLI reads the load of a method step, and check runs no fault: there is nothing to measure")
	}
	d := opts.For
	if d <= 0 {
		d = exp.CheckDuration()
	}
	r := newRunner(ctx, exp, Options{Catalog: opts.Catalog, Log: opts.Log, View: opts.View, Kill: opts.Kill,
		RunID: fmt.Sprintf("check-%d", time.Now().UnixMilli())}, d)
	defer func() {
		if p := recover(); p != nil {
			err = exitcode.Wrap(fmt.Errorf("internal error: %v\n%s", p, debug.Stack()), exitcode.Aborted)
		}
		r.closeTarget()
	}()
	return r.check(ctx, d, opts.Ready)
}

// check starts the target and the probes, samples for d and judges the
// samples.
func (r *runner) check(ctx context.Context, d time.Duration, ready func(faults.Target)) (CheckResult, error) {
	if err := r.startTarget(ctx); err != nil {
		if ctx.Err() != nil {
			return CheckResult{}, errCheckInterrupted
		}
		return CheckResult{}, fmt.Errorf("cannot start the target: %w", err)
	}
	if ready != nil {
		ready(r.run.Target)
	}
	if err := r.startProbes(); err != nil {
		for _, s := range r.slis {
			_ = s.probe.Close()
		}
		return CheckResult{}, fmt.Errorf("cannot start the probes: %w", err)
	}
	// No fault is ever in place: there is nothing to stop a run for.
	for _, s := range r.slis {
		s.cond = nil
	}
	start := time.Now()
	r.started = start
	r.phase(PhaseCheck)
	stopLive := r.opts.View.Live(r.statusLine)
	smp := r.startSamplers(ctx)
	msg, ok := r.wait(ctx, start.Add(d))
	if ok {
		// A sample still out at the end is waited for, up to its timeout:
		// a slow one is a measure, not a failure.
		smp.drain(ctx, r.maxTimeout())
	}
	end := time.Now()
	smp.close()
	stopLive()
	res := r.checkResult(start, end)
	switch {
	case msg != "":
		r.progress("ABORT %s", msg)
		return res, exitcode.New(exitcode.Aborted, "the check did not complete: "+msg)
	case ctx.Err() != nil:
		return res, errCheckInterrupted
	}
	return res, res.Err()
}

// maxTimeout is the longest SLI timeout.
func (r *runner) maxTimeout() time.Duration {
	var d time.Duration
	for _, s := range r.slis {
		d = max(d, s.spec.Timeout)
	}
	return d
}

// checkResult judges each SLI's samples taken from start to end.
func (r *runner) checkResult(start, end time.Time) CheckResult {
	res := CheckResult{For: end.Sub(start)}
	for _, s := range r.slis {
		c := SLICheck{Name: s.spec.Name, Probe: s.spec.Probe, Unit: r.unit(s)}
		tol := s.spec.Tolerance
		c.Bound = tol.format(c.Unit)
		if tol.Over > 0 {
			c.Stat = tol.Stat
		}
		if _, ok := s.probe.(probes.Stepped); ok {
			c.NotMeasured = "it reads the load of a method step, and check runs no fault"
			res.SLIs = append(res.SLIs, c)
			continue
		}
		pts := s.series.snapshot()
		for _, p := range pts {
			if p.failed {
				c.Failed++
				c.LastFailure = oneLine(p.err)
				continue
			}
			c.Values = append(c.Values, p.value)
		}
		first := true
		for _, ev := range evaluate(pts, tol, start, end) {
			c.Windows++
			if !ev.ok {
				if c.Out == 0 {
					c.FirstOut = ev.at.Sub(start)
				}
				c.Out++
			}
			if !ev.failed && (first || tol.worse(ev.stat, c.Worst)) {
				c.Worst, first = ev.stat, false
			}
		}
		if first {
			c.Stat = "" // no window without a failed sample: no worst value
		}
		c.Held = c.Windows > 0 && c.Out == 0
		res.SLIs = append(res.SLIs, c)
	}
	return res
}

// Err is the error that reports the result, carrying its exit code: nil
// when every SLI measured held, else Failed, naming those that did not.
func (res CheckResult) Err() error {
	var bad []string
	for _, c := range res.SLIs {
		if c.NotMeasured == "" && !c.Held {
			bad = append(bad, c.Name)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return exitcode.New(exitcode.Failed, "the steady state does not hold: "+strings.Join(bad, ", "))
}

// Write writes the result, one line an SLI (its samples: how many, how
// many failed, minimum, median and maximum; its bound; whether it held),
// then the verdict.
func (res CheckResult) Write(w io.Writer) error {
	width := 0
	for _, c := range res.SLIs {
		width = max(width, len(c.Name))
	}
	var b strings.Builder
	for _, c := range res.SLIs {
		fmt.Fprintf(&b, "%-*s  %s\n", width, c.Name, c.line())
	}
	if err := res.Err(); err != nil {
		fmt.Fprintf(&b, "%s (sampled %s)\n", err, res.For.Round(100*time.Millisecond))
	} else {
		fmt.Fprintf(&b, "the steady state holds (sampled %s)\n", res.For.Round(100*time.Millisecond))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// line is an SLI's line without its name.
func (c SLICheck) line() string {
	if c.NotMeasured != "" {
		return "not measured: " + c.NotMeasured + "; bound " + c.Bound
	}
	verdict := "holds"
	if !c.Held {
		verdict = "DOES NOT HOLD"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-13s %d %s", verdict, len(c.Values)+c.Failed, plural(len(c.Values)+c.Failed, "sample", "samples"))
	if c.Failed > 0 {
		fmt.Fprintf(&b, ", %d failed (last: %s)", c.Failed, c.LastFailure)
	}
	if len(c.Values) > 0 {
		fmt.Fprintf(&b, "  min %s  median %s  max %s", c.value(slices.Min(c.Values)),
			c.value(statistic("p50", c.Values)), c.value(slices.Max(c.Values)))
	}
	if c.Stat != "" {
		fmt.Fprintf(&b, "  worst %s %s", c.Stat, c.value(c.Worst))
	}
	fmt.Fprintf(&b, "  bound %s", c.Bound)
	if c.Out > 0 {
		fmt.Fprintf(&b, "  out of tolerance at %d of %d samples, first %s in", c.Out, c.Windows,
			c.FirstOut.Round(100*time.Millisecond))
	}
	if c.Windows == 0 {
		b.WriteString("  no sample was taken")
	}
	return b.String()
}

// value writes one of the SLI's values in its unit.
func (c SLICheck) value(v float64) string {
	switch {
	case c.Unit == "s":
		return time.Duration(v * float64(time.Second)).Round(time.Microsecond).String()
	case c.Unit == "ratio":
		return fmt.Sprintf("%.4g%%", v*100)
	case strings.HasPrefix(c.Unit, "/"):
		return fmt.Sprintf("%.4g%s", v, c.Unit)
	}
	return fmt.Sprintf("%.4g", v)
}
