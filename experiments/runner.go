package experiments

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailchaos/mailchaos/experiments/journal"
	"github.com/mailchaos/mailchaos/experiments/probes"
	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/targets"
)

// Phases of a run.
const (
	PhaseBaseline   = "baseline"
	PhaseInject     = "inject"
	PhaseRecover    = "recover"
	PhaseAccounting = "accounting"
	PhaseRollback   = "rollback"
)

// Options are a run's surroundings.
type Options struct {
	// Catalog names the faults and probes.
	Catalog Catalog
	// Journal receives every event; required by [Run]. [Check] writes
	// none.
	Journal *journal.Writer
	// Log receives operational messages; nil discards them.
	Log *slog.Logger
	// View shows the run as it happens; nil shows nothing.
	View View
	// Kill ends when the run must stop at once (a second signal): rollbacks
	// are then attempted only briefly.
	Kill context.Context
	// RunID identifies the run; default run-<unix ms>.
	RunID string
	// File is the experiment file, for reports.
	File string
	// Observe, when set, is called with each event once it is journaled,
	// in journal order (a live view). It must not block for long.
	Observe func(journal.Event)
}

// View shows a run as it happens ([LineView], [TerminalView]). The runner
// calls Line from several goroutines, so a View must be safe for
// concurrent use.
type View interface {
	// Line shows one progress line: a phase change, an injection, a
	// removal, an assertion, an abort.
	Line(text string)
	// Live starts showing the run's status, as status returns it (phase,
	// elapsed and planned time, latest SLI values, faults in place), for
	// views that keep it in sight; stop ends that and returns once it has
	// ended.
	Live(status func() string) (stop func())
}

// Result is a run's outcome; [Outcome] is the error, carrying its exit
// code, that reports it.
type Result struct {
	// Status is one of journal.StatusCompleted, StatusFailed (the system
	// under test failed), StatusAborted (the run failed or a safety
	// condition stopped it) or StatusInterrupted.
	Status string
	// Deviated is true when an SLI, recovery bound or invariant failed.
	Deviated bool
	// RollbackFailed is true when a fault may still be in place; Err then
	// says which.
	RollbackFailed bool
	// Summary holds the per-SLI figures.
	Summary journal.Summary
	// Message explains an abort.
	Message string
	// Err is the error that aborted the run or a rollback failure.
	Err error
}

// windowCount counts a window's samples: failed, and whether any measured
// a value.
type windowCount struct {
	failed   int
	measured bool
}

// runner is the state of one run.
type runner struct {
	exp  *Experiment
	opts Options
	log  *slog.Logger
	j    *journal.Writer
	run  *targets.Running

	slis []*sliState
	// baseline is each SLI's evaluation the baseline assertion used, by
	// SLI index, for the summary.
	baseline []evaluation
	// baselineWin counts each baseline window's samples, by SLI index.
	baselineWin []windowCount
	// injectStart is when the inject phase started and methodEnd the
	// planned end of its last fault; zero before.
	injectStart, methodEnd time.Time
	// lifecycle holds the faults in place.
	lifecycle *Lifecycle
	mu        sync.Mutex
	phaseName string    // guarded by mu
	started   time.Time // when the run started
	planned   time.Duration

	abort chan string // safety conditions and probe failures, first one wins
	once  sync.Once
	// cutoff is set when the run stops waiting for samples in flight.
	cutoff atomic.Bool
	// cleaned is set once the run's messages were removed from an
	// external target's mailboxes (accounting.cleanup).
	cleaned bool
	// wmu keeps Observe in journal order.
	wmu sync.Mutex
}

// Run runs an experiment that Load validated. ctx ends at the first signal:
// every fault is then rolled back and the run ends as interrupted. Faults
// are removed on every exit path, panics included.
func Run(ctx context.Context, exp *Experiment, opts Options) (res Result) {
	r := newRunner(ctx, exp, opts, exp.plannedDuration())
	start := r.started
	sig := ctx
	if d := exp.Safety.MaxDuration; d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, d, errMaxDuration)
		defer cancel()
	}
	defer func() {
		if p := recover(); p != nil {
			res = Result{Status: journal.StatusAborted, Message: fmt.Sprintf("internal error: %v", p),
				Err: fmt.Errorf("panic: %v\n%s", p, debug.Stack())}
		}
		if !res.Summary.RecoveryJudged && len(r.slis) > 0 {
			// Stopped early: the figures it got to, never an empty table.
			res.Summary = r.partialSummary()
		}
		var partial *faults.RollbackError
		if errors.As(res.Err, &partial) {
			res.RollbackFailed = true
		}
		if rb := r.rollback(); rb != nil {
			res.RollbackFailed, res.Err = true, errors.Join(res.Err, rb)
			if res.Status == journal.StatusCompleted || res.Status == journal.StatusFailed {
				res.Status = journal.StatusAborted
			}
		}
		r.cleanupAfterStop()
		r.closeTarget()
		r.verdict(res, time.Since(start))
	}()
	return r.execute(ctx, sig)
}

// newRunner returns the state of a run of exp planned to take planned,
// with the defaults of opts filled in; ctx is the run's.
func newRunner(ctx context.Context, exp *Experiment, opts Options, planned time.Duration) *runner {
	if opts.RunID == "" {
		opts.RunID = fmt.Sprintf("run-%d", time.Now().UnixMilli())
	}
	if opts.Kill == nil {
		opts.Kill = context.WithoutCancel(ctx)
	}
	if opts.View == nil {
		opts.View = noView{}
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &runner{exp: exp, opts: opts, log: log, j: opts.Journal, abort: make(chan string, 1), started: time.Now(), planned: planned}
	r.lifecycle = NewLifecycle(exp.Rollbacks.Timeout, r.removed)
	return r
}

// execute runs the phases; Run's deferred code rolls back and writes the
// verdict whatever happens here. ctx ends at a signal, an abort or the
// hard time limit; sig only at a signal (accounting runs on it).
func (r *runner) execute(ctx, sig context.Context) Result {
	if err := r.startTarget(ctx); err != nil {
		return r.aborted(ctx, "cannot start the target", err)
	}
	if err := r.preflight(ctx); err != nil {
		return r.aborted(ctx, "preflight", err)
	}
	if err := r.startProbes(); err != nil {
		return r.aborted(ctx, "cannot start the probes", err)
	}
	stopLive := r.opts.View.Live(r.statusLine)
	defer stopLive()
	smp := r.startSamplers(ctx)
	defer smp.close()

	if res, ok := r.baselinePhase(ctx); !ok {
		return res
	}
	// A fault plugin that dies from here on stops the run.
	stopWatching := r.watchInjectors()
	defer stopWatching()
	stopLoads := r.watchLoads(ctx)
	defer stopLoads()
	t0, res, ok := r.injectPhase(ctx)
	if !ok {
		return res
	}
	// The recovery clock starts at a planned end, not when a removal
	// finished: a load generator drains its messages in flight for a
	// while after its planned end, and that is not the stack recovering.
	recoveryStart := t0.Add(r.exp.recoveryStart())
	methodEnd := t0.Add(r.exp.methodEnd())
	if res, ok := r.recoverPhase(ctx, recoveryStart); !ok {
		return res
	}
	// Let the samples in flight land (a slow one decides whether the hold
	// held); those still out after one more interval are recorded as failed.
	smp.drain(ctx, r.maxInterval())
	summary, deviated := r.recoverySummary(t0, recoveryStart, methodEnd, time.Now())

	// Accounting: the invariants. It runs past the hard time limit (it
	// waits for the queue to drain), but not past a signal.
	if len(r.exp.Invariants) > 0 {
		r.phase(PhaseAccounting)
		if !r.accounting(sig) {
			deviated = true
		}
		if sig.Err() != nil {
			res := r.stopped(sig, "")
			res.Summary, res.Deviated = summary, deviated
			return res
		}
	}
	status := journal.StatusCompleted
	if deviated {
		status = journal.StatusFailed
	}
	return Result{Status: status, Deviated: deviated, Summary: summary}
}

// baselinePhase waits for the baseline and asserts the steady state: it
// must hold before anything is hurt. It returns false, with the result,
// when the run must stop.
func (r *runner) baselinePhase(ctx context.Context) (Result, bool) {
	r.phase(PhaseBaseline)
	if msg, ok := r.wait(ctx, time.Now().Add(r.exp.Baseline)); !ok {
		return r.stopped(ctx, msg), false
	}
	now := time.Now()
	var bad []string
	r.baseline = make([]evaluation, len(r.slis))
	r.baselineWin = make([]windowCount, len(r.slis))
	for i, s := range r.slis {
		pts := s.series.snapshot()
		if _, ok := s.probe.(probes.Stepped); ok && len(pts) == 0 {
			continue // it measures a method step (the load), not started yet
		}
		win := window(pts, s.spec.Tolerance, now)
		ev := s.spec.Tolerance.check(now, win)
		r.baseline[i] = ev
		for _, p := range win {
			if p.failed {
				r.baselineWin[i].failed++
			} else {
				r.baselineWin[i].measured = true
			}
		}
		tol := s.spec.Tolerance.format(r.unit(s))
		r.assert("baseline: "+s.spec.Name, ev.ok, r.describe(s, ev), tol, "")
		if !ev.ok {
			bad = append(bad, s.spec.Name)
		}
	}
	if len(bad) > 0 {
		// The values are in the baseline assertions, said once.
		return r.aborted(ctx, "the steady state does not hold before any fault ("+strings.Join(bad, ", ")+
			" out of tolerance); nothing was injected", nil), false
	}
	return Result{}, true
}

// injectPhase runs the method's timeline: each step's fault injected at
// its time and removed at its end. It returns when the method started, or
// false, with the result, when the run must stop.
func (r *runner) injectPhase(ctx context.Context) (time.Time, Result, bool) {
	r.phase(PhaseInject)
	t0 := time.Now()
	r.injectStart, r.methodEnd = t0, t0.Add(r.exp.methodEnd())
	type event struct {
		at     time.Time
		step   int
		remove bool
	}
	var timeline []event
	for i, st := range r.exp.Method {
		timeline = append(timeline, event{at: t0.Add(st.At), step: i}, event{at: t0.Add(st.At + st.For), step: i, remove: true})
	}
	sort.SliceStable(timeline, func(i, j int) bool { return timeline[i].at.Before(timeline[j].at) })
	handles := map[int]string{}
	for i := 0; i < len(timeline); i++ {
		ev := timeline[i]
		if msg, ok := r.wait(ctx, ev.at); !ok {
			return t0, r.stopped(ctx, msg), false
		}
		if ev.remove {
			// Faults due to end together are removed together: one that
			// takes long to remove (a load generator finishing its last
			// sessions) does not keep the others in place.
			var ids []string
			for ; i < len(timeline) && timeline[i].remove && timeline[i].at.Equal(ev.at); i++ {
				ids = append(ids, handles[timeline[i].step])
			}
			i--
			if err := r.lifecycle.Remove(r.opts.Kill, ids...); err != nil {
				return t0, r.aborted(ctx, "a fault could not be removed", err), false
			}
			continue
		}
		id, err := r.inject(ctx, ev.step, ev.at)
		if err != nil {
			return t0, r.aborted(ctx, fmt.Sprintf("method[%d] %s could not be injected", ev.step, r.exp.Method[ev.step].Fault), err), false
		}
		handles[ev.step] = id
	}
	return t0, Result{}, true
}

// recoverPhase waits until every SLI is back within tolerance and has held
// there (from recoveryStart), or until the bound has passed. It returns
// false, with the result, when the run must stop.
func (r *runner) recoverPhase(ctx context.Context, recoveryStart time.Time) (Result, bool) {
	r.phase(PhaseRecover)
	r.progress("recovery clock started at %s, the planned end of %s", recoveryStart.Format("15:04:05.000"), r.recoveryAnchor())
	deadline := recoveryStart.Add(r.exp.Recovery.Within + r.exp.Recovery.Hold).Add(r.maxInterval())
	for {
		next := time.Now().Add(100 * time.Millisecond)
		if r.allRecovered(recoveryStart, time.Now()) {
			select {
			case msg := <-r.abort:
				return r.stopped(ctx, msg), false
			default:
			}
			return Result{}, true
		}
		if !next.Before(deadline) {
			next = deadline
		}
		if msg, ok := r.wait(ctx, next); !ok {
			return r.stopped(ctx, msg), false
		}
		if time.Now().After(deadline) {
			return Result{}, true
		}
	}
}

// wait blocks until t, a signal (ctx) or an abort condition. It returns
// false with the reason when the run must stop.
func (r *runner) wait(ctx context.Context, t time.Time) (string, bool) {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return "", true
	case <-ctx.Done():
		return "", false
	case msg := <-r.abort:
		return msg, false
	}
}

// stopped turns a stop during wait into a result: a signal, the hard time
// limit, or a safety condition.
func (r *runner) stopped(ctx context.Context, msg string) Result {
	if msg == "" && errors.Is(context.Cause(ctx), errMaxDuration) {
		msg = fmt.Sprintf("safety: the run reached its max-duration of %s", r.exp.Safety.MaxDuration)
	}
	if msg != "" {
		_ = r.write(journal.Event{Type: journal.TypeAbort, Message: msg})
		r.progress("ABORT %s", msg)
		return Result{Status: journal.StatusAborted, Message: msg}
	}
	return Result{Status: journal.StatusInterrupted, Message: "interrupted by a signal; every fault was rolled back"}
}

// errMaxDuration is the cause of a run cut short by safety.max-duration.
var errMaxDuration = errors.New("max-duration reached")

func (r *runner) aborted(ctx context.Context, msg string, err error) Result {
	if ctx.Err() != nil && !errors.Is(context.Cause(ctx), errMaxDuration) {
		return r.stopped(ctx, "")
	}
	if err != nil {
		msg += ": " + err.Error()
	}
	_ = r.write(journal.Event{Type: journal.TypeAbort, Message: msg})
	r.progress("ABORT %s", msg)
	return Result{Status: journal.StatusAborted, Message: msg, Err: err}
}

// startTarget starts or opens the target and journals the run's start.
func (r *runner) startTarget(ctx context.Context) error {
	start := journal.Event{Type: journal.TypeRunStart, Title: r.exp.Title, File: r.opts.File}
	spec, err := r.exp.Target.spec(r.opts.Catalog.AllowRemote)
	if err == nil {
		// The target's components log what they do (every message
		// quarantined, a site found unhealthy under a fault): during a
		// run that is the stack answering the faults, a debug matter;
		// the progress lines and the summary say what counts. Errors
		// stay.
		r.run, err = spec.Start(ctx, slog.New(demoted{r.log.Handler()}))
	}
	exp := redacted(r.exp)
	if err != nil {
		// The journal still says which run this was.
		start.Experiment, _ = json.Marshal(exp)
		_ = r.write(start)
		return err
	}
	if r.exp.Target.File != "" {
		// The target file's consent to hosts off loopback is the target's.
		exp.Target.AllowRemote = spec.File.AllowRemote
	}
	start.Experiment, _ = json.Marshal(exp)
	tg := r.run.Target
	start.Target = &tg
	return r.write(start)
}

// demoted is a log handler that passes records below Error on at Debug.
type demoted struct{ h slog.Handler }

func demote(l slog.Level) slog.Level {
	if l < slog.LevelError {
		return slog.LevelDebug
	}
	return l
}

func (d demoted) Enabled(ctx context.Context, l slog.Level) bool {
	return d.h.Enabled(ctx, demote(l))
}

func (d demoted) Handle(ctx context.Context, rec slog.Record) error {
	rec.Level = demote(rec.Level)
	return d.h.Handle(ctx, rec)
}

func (d demoted) WithAttrs(as []slog.Attr) slog.Handler { return demoted{d.h.WithAttrs(as)} }
func (d demoted) WithGroup(name string) slog.Handler    { return demoted{d.h.WithGroup(name)} }

// sliInfo is each SLI's unit (as its probe measures it) and tolerance,
// for reports of a run that ends before its verdict.
func (r *runner) sliInfo() []journal.SLIInfo {
	out := make([]journal.SLIInfo, 0, len(r.slis))
	for _, s := range r.slis {
		unit := r.unit(s)
		out = append(out, journal.SLIInfo{Name: s.spec.Name, Unit: unit, Tolerance: s.spec.Tolerance.format(unit)})
	}
	return out
}

// redacted returns a copy of e for the journal, with the values of
// password parameters and the embedded stack's account passwords replaced:
// a journal is shared, a password is not.
func redacted(e *Experiment) *Experiment {
	c := *e
	hide := func(p map[string]string) map[string]string {
		if _, ok := p["password"]; !ok {
			return p
		}
		out := make(map[string]string, len(p))
		for k, v := range p {
			out[k] = v
		}
		out["password"] = "(redacted)"
		return out
	}
	c.SteadyState = append([]SLI(nil), e.SteadyState...)
	for i := range c.SteadyState {
		c.SteadyState[i].Params = hide(c.SteadyState[i].Params)
	}
	c.Method = append([]Step(nil), e.Method...)
	for i := range c.Method {
		c.Method[i].Params = hide(c.Method[i].Params)
	}
	// The embedded stack's configuration holds its accounts' passwords.
	if e.Target.Config != nil {
		cfg := *e.Target.Config
		cfg.Users = append(cfg.Users[:0:0], cfg.Users...)
		for i := range cfg.Users {
			if cfg.Users[i].Password != "" {
				cfg.Users[i].Password = "(redacted)"
			}
		}
		if cfg.Quarantine.Password != "" {
			cfg.Quarantine.Password = "(redacted)"
		}
		if l := cfg.Access.Health.Login; l != nil && l.Password != "" {
			cp := *l
			cp.Password = "(redacted)"
			cfg.Access.Health.Login = &cp
		}
		c.Target.Config = &cfg
	}
	return &c
}

func (r *runner) closeTarget() {
	if r.run == nil {
		return
	}
	ctx, cancel := context.WithTimeout(r.opts.Kill, r.exp.Rollbacks.Timeout)
	defer cancel()
	if err := r.run.Close(ctx); err != nil {
		r.log.Warn("closing the target", "err", err)
	}
}

// raise stops the run with a reason; the first one wins.
func (r *runner) raise(msg string) {
	r.once.Do(func() { r.abort <- msg })
}

func (r *runner) phase(name string) {
	r.mu.Lock()
	r.phaseName = name
	r.mu.Unlock()
	ev := journal.Event{Type: journal.TypePhase, Phase: name}
	if name == PhaseBaseline {
		// The probes are known from here: their units.
		ev.SLIs = r.sliInfo()
	}
	_ = r.write(ev)
	r.progress("phase %s", name)
}

// write journals an event of this run, when it has a journal.
func (r *runner) write(e journal.Event) error {
	if r.j == nil {
		return nil
	}
	e.Run = r.opts.RunID
	if r.opts.Observe == nil {
		return r.j.Write(e)
	}
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if e.T.IsZero() {
		e.T = time.Now()
	}
	err := r.j.Write(e)
	if err == nil {
		r.opts.Observe(e)
	}
	return err
}
