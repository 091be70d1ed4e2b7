package experiments

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailchaos/mailchaos/experiments/journal"
	"github.com/mailchaos/mailchaos/experiments/probes"
	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/undo"
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
	// Journal receives every event; required.
	Journal *journal.Writer
	// Log receives operational messages; nil discards them.
	Log *slog.Logger
	// Progress receives one line per phase change, injection, removal and
	// assertion, as it happens; nil discards them.
	Progress io.Writer
	// Kill ends when the run must stop at once (a second signal): rollbacks
	// are then attempted only briefly.
	Kill context.Context
	// RunID identifies the run; default run-<unix ms>.
	RunID string
	// File is the experiment file, for reports.
	File string
	// ExitCode maps a result to the process exit code recorded in the
	// journal's verdict (the command line owns that table); nil records 0.
	ExitCode func(Result) int
	// Live, when set, is a terminal: a status line (phase, elapsed and
	// planned time, latest SLI values, faults active) is redrawn on it four
	// times a second, below the progress lines.
	Live io.Writer
}

// Result is a run's outcome.
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
	baseline  []evaluation
	active    map[string]activeFault // by handle ID
	mu        sync.Mutex
	phaseName string     // guarded by mu
	started   time.Time  // when the run started
	outMu     sync.Mutex // orders progress lines and the live status line

	abort chan string // safety conditions and probe failures, first one wins
	once  sync.Once
	// cutoff is set when the run stops waiting for samples in flight.
	cutoff atomic.Bool
}

type sliState struct {
	spec   SLI
	probe  probes.Probe
	series series
	cond   *Condition
}

type activeFault struct {
	inj    faults.Injector
	handle faults.Handle
	step   int
}

// Run runs an experiment that Load validated. ctx ends at the first signal:
// every fault is then rolled back and the run ends as interrupted. Faults
// are removed on every exit path, panics included.
func Run(ctx context.Context, exp *Experiment, opts Options) (res Result) {
	if opts.RunID == "" {
		opts.RunID = fmt.Sprintf("run-%d", time.Now().UnixMilli())
	}
	if opts.Kill == nil {
		opts.Kill = context.WithoutCancel(ctx)
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &runner{exp: exp, opts: opts, log: log, j: opts.Journal, active: map[string]activeFault{},
		abort: make(chan string, 1), started: time.Now()}
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
		r.closeTarget()
		r.verdict(res, time.Since(start))
	}()
	return r.execute(ctx, sig)
}

// execute runs the phases; Run's deferred code rolls back and writes the
// verdict whatever happens here. ctx ends at a signal, an abort or the
// hard time limit; sig only at a signal (accounting runs on it).
func (r *runner) execute(ctx, sig context.Context) Result {
	if err := r.startTarget(ctx); err != nil {
		return r.aborted(ctx, "cannot start the target", err)
	}
	if err := r.startProbes(); err != nil {
		return r.aborted(ctx, "cannot start the probes", err)
	}
	if r.opts.Live != nil {
		stopLive := r.live()
		defer stopLive()
	}
	// Samplers stop taking samples when sctx ends; samples in flight run on
	// mctx, so that the last ones can still come in at the end.
	sctx, stopSamplers := context.WithCancel(ctx)
	mctx, cancelMeasures := context.WithCancel(ctx)
	var samplers sync.WaitGroup
	defer func() {
		stopSamplers()
		cancelMeasures()
		samplers.Wait()
		for _, s := range r.slis {
			_ = s.probe.Close()
		}
	}()
	for _, s := range r.slis {
		samplers.Add(1)
		go func() {
			defer samplers.Done()
			r.sample(sctx, mctx, s)
		}()
	}

	// Baseline: the steady state must hold before anything is hurt.
	r.phase(PhaseBaseline)
	if msg, ok := r.wait(ctx, time.Now().Add(r.exp.Baseline)); !ok {
		return r.stopped(ctx, msg)
	}
	now := time.Now()
	var bad []string
	r.baseline = make([]evaluation, len(r.slis))
	for i, s := range r.slis {
		pts := s.series.snapshot()
		if _, ok := s.probe.(probes.Stepped); ok && len(pts) == 0 {
			continue // it measures a method step (the load), not started yet
		}
		ev := s.spec.Tolerance.check(now, window(pts, s.spec.Tolerance, now))
		r.baseline[i] = ev
		tol := s.spec.Tolerance.format(r.unit(s))
		r.assert("baseline: "+s.spec.Name, ev.ok, r.describe(s, ev), tol, "")
		if !ev.ok {
			bad = append(bad, fmt.Sprintf("%s is %s, tolerance %s", s.spec.Name, r.describe(s, ev), tol))
		}
	}
	if len(bad) > 0 {
		return r.aborted(ctx, "the steady state does not hold before any fault: "+strings.Join(bad, "; ")+"; nothing was injected", nil)
	}

	// Inject: the method's timeline. A fault plugin that dies from here on
	// stops the run.
	stopWatching := r.watchInjectors()
	defer stopWatching()
	r.phase(PhaseInject)
	t0 := time.Now()
	injectStart := t0
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
	// The recovery clock starts at a planned end, not when a removal
	// finished: a load generator drains its messages in flight for a
	// while after its planned end, and that is not the stack recovering.
	recoveryStart := t0.Add(r.exp.recoveryStart())
	methodEnd := t0.Add(r.exp.methodEnd())
	for i := 0; i < len(timeline); i++ {
		ev := timeline[i]
		if msg, ok := r.wait(ctx, ev.at); !ok {
			return r.stopped(ctx, msg)
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
			if err := r.removeAll(r.opts.Kill, ids); err != nil {
				return r.aborted(ctx, "a fault could not be removed", err)
			}
			continue
		}
		id, err := r.inject(ctx, ev.step, ev.at)
		if err != nil {
			return r.aborted(ctx, fmt.Sprintf("method[%d] %s could not be injected", ev.step, r.exp.Method[ev.step].Fault), err)
		}
		handles[ev.step] = id
	}

	// Recover: every SLI back within tolerance within the bound, and held.
	r.phase(PhaseRecover)
	r.progress("recovery clock started at %s, the planned end of %s", recoveryStart.Format("15:04:05.000"), r.recoveryAnchor())
	deadline := recoveryStart.Add(r.exp.Recovery.Within + r.exp.Recovery.Hold)
	for {
		next := time.Now().Add(100 * time.Millisecond)
		if r.allRecovered(recoveryStart, time.Now()) {
			select {
			case msg := <-r.abort:
				return r.stopped(ctx, msg)
			default:
			}
			break
		}
		if !next.Before(deadline.Add(r.maxInterval())) {
			next = deadline.Add(r.maxInterval())
		}
		if msg, ok := r.wait(ctx, next); !ok {
			return r.stopped(ctx, msg)
		}
		if time.Now().After(deadline.Add(r.maxInterval())) {
			break
		}
	}
	// Let the samples in flight land (a slow one decides whether the hold
	// held); those still out after one more interval are recorded as failed.
	end := time.Now()
	stopSamplers()
	r.awaitInflight(ctx, end.Add(r.maxInterval()+250*time.Millisecond))
	r.cutoff.Store(true)
	cancelMeasures()
	samplers.Wait()

	summary, deviated := r.recoverySummary(injectStart, recoveryStart, methodEnd, time.Now())

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

// maxInterval is the longest SLI interval.
func (r *runner) maxInterval() time.Duration {
	var d time.Duration
	for _, s := range r.slis {
		d = max(d, s.spec.Interval)
	}
	return d
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
	spec, err := r.exp.Target.spec(r.opts.Catalog.AllowRemote)
	if err != nil {
		return err
	}
	if r.run, err = spec.Start(ctx, r.log); err != nil {
		return err
	}
	exp := redacted(r.exp)
	if r.exp.Target.File != "" {
		// The target file's consent to hosts off loopback is the target's.
		exp.Target.AllowRemote = spec.File.AllowRemote
	}
	expJSON, _ := json.Marshal(exp)
	tg := r.run.Target
	return r.write(journal.Event{Type: journal.TypeRunStart, Title: r.exp.Title, File: r.opts.File,
		Experiment: expJSON, Target: &tg})
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

func (r *runner) startProbes() error {
	for _, s := range r.exp.SteadyState {
		kind, err := r.opts.Catalog.Probes.Get(s.Probe)
		if err != nil {
			return err
		}
		p, err := kind.New(probes.Config{Name: s.Name, Params: s.Params, Target: r.run.Target, RunID: r.opts.RunID, Loads: r})
		if err != nil {
			return fmt.Errorf("SLI %s: %w", s.Name, err)
		}
		st := &sliState{spec: s, probe: p}
		if c, ok := r.exp.Safety.AbortWhen[s.Name]; ok {
			cond, _ := ParseCondition(c)
			st.cond = &cond
		}
		r.slis = append(r.slis, st)
	}
	return nil
}

// sample takes an SLI's samples on its interval until ctx ends. Each sample
// runs in its own goroutine on mctx, so a slow one does not delay the next;
// at most timeout/interval+2 are in flight.
func (r *runner) sample(ctx, mctx context.Context, s *sliState) {
	var inflight sync.WaitGroup
	defer inflight.Wait()
	slots := make(chan struct{}, int(s.spec.Timeout/s.spec.Interval)+2)
	tick := time.NewTicker(s.spec.Interval)
	defer tick.Stop()
	for {
		select {
		case slots <- struct{}{}:
			inflight.Add(1)
			go func() {
				defer inflight.Done()
				defer func() { <-slots }()
				r.measure(mctx, s)
			}()
		default:
			r.raise(fmt.Sprintf("probe %s of SLI %s cannot keep up: %d samples in flight", s.spec.Probe, s.spec.Name, cap(slots)))
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// measure takes one sample, journals it and checks the abort condition. A
// panicking probe aborts the run. A sample cut off at the end of the run is
// recorded as failed; one cut off by a signal or an abort is dropped.
func (r *runner) measure(ctx context.Context, s *sliState) {
	defer func() {
		if p := recover(); p != nil {
			r.raise(fmt.Sprintf("probe %s of SLI %s panicked: %v", s.spec.Probe, s.spec.Name, p))
		}
	}()
	start := time.Now()
	id := s.series.begin(start)
	defer s.series.finish(id)
	mctx, cancel := context.WithTimeout(ctx, s.spec.Timeout)
	defer cancel()
	smp := s.probe.Measure(mctx)
	if ctx.Err() != nil && (smp.Failed || smp.Skip) {
		if !r.cutoff.Load() {
			return // stopped, not failed
		}
		smp = probes.Sample{At: start, Failed: true, Err: "still in flight when the run ended"}
	}
	if smp.Skip {
		return
	}
	if smp.At.IsZero() {
		smp.At = start
	}
	if s.series.add(point{at: smp.At, value: smp.Value, failed: smp.Failed, err: smp.Err}) {
		// The first failure of a streak, with its cause; the rest of the
		// streak is in the journal and the summary.
		r.progress("SLI %s: sample failed: %s", s.spec.Name, oneLine(smp.Err))
	}
	_ = r.write(journal.Event{Type: journal.TypeSample, SLI: s.spec.Name, At: smp.At, Value: smp.Value,
		Failed: smp.Failed, Err: smp.Err, Class: smp.Class})
	if s.cond != nil && !smp.Failed && s.cond.Holds(smp.Value) {
		r.raise(fmt.Sprintf("safety: SLI %s is %g, abort-when %s", s.spec.Name, smp.Value, s.cond))
	}
}

// awaitInflight waits until no sample is in flight, until deadline, or
// until ctx ends.
func (r *runner) awaitInflight(ctx context.Context, deadline time.Time) {
	for time.Now().Before(deadline) && ctx.Err() == nil {
		busy := false
		for _, s := range r.slis {
			if _, ok := s.series.oldestPending(); ok {
				busy = true
			}
		}
		if !busy {
			return
		}
		t := time.NewTimer(10 * time.Millisecond)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}

// losable is an injector that can fail between calls: a plugin whose
// process died or was killed for hanging. Lost is closed once that has
// happened (and its faults were removed by its host); LostErr says why.
type losable interface {
	Lost() <-chan struct{}
	LostErr() error
}

// watchInjectors stops the run when an injector the method uses is lost.
// The returned function stops watching.
func (r *runner) watchInjectors() (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	seen := map[string]bool{}
	for _, st := range r.exp.Method {
		inj, _, err := r.opts.Catalog.Faults.Get(st.Fault)
		l, ok := inj.(losable)
		if err != nil || !ok || seen[st.Fault] {
			continue
		}
		seen[st.Fault] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-l.Lost():
				r.raise(fmt.Sprintf("fault %s: %v", st.Fault, l.LostErr()))
			case <-done:
			}
		}()
	}
	return func() {
		close(done)
		wg.Wait()
	}
}

// raise stops the run with a reason; the first one wins.
func (r *runner) raise(msg string) {
	r.once.Do(func() { r.abort <- msg })
}

// inject starts one step's fault and journals it.
func (r *runner) inject(ctx context.Context, step int, planned time.Time) (string, error) {
	st := r.exp.Method[step]
	inj, _, err := r.opts.Catalog.Faults.Get(st.Fault)
	if err != nil {
		return "", err
	}
	req := faults.Request{ID: fmt.Sprintf("s%d", step), Owner: r.opts.RunID, Fault: st.Fault, Target: r.run.Target,
		Links: st.AllLinks(), Params: faults.Params(st.Params), Duration: st.For, TTL: st.For + faults.DefaultTTLGrace}
	// The intent goes into the journal before anything is created: a run
	// killed in the middle of this injection leaves toxics named after
	// its owner and ID, which `recover` finds by them.
	intent := faults.Handle{ID: req.ID, Fault: st.Fault, Owner: req.Owner, Expires: time.Now().Add(req.TTL)}
	if tp := r.run.Target.Toxiproxy; tp != "" && tp != "embedded" {
		intent.Toxiproxy = tp
	}
	if err := r.write(journal.Event{Type: journal.TypeIntent, Step: step, Fault: st.Fault, Handle: &intent}); err != nil {
		return "", fmt.Errorf("journal the intent to inject: %w", err)
	}
	h, err := inj.Inject(ctx, req)
	if err != nil {
		r.sweepFailedInject(step, intent)
		return "", err
	}
	onset := time.Since(planned)
	if !h.Injected.IsZero() {
		onset = h.Injected.Sub(planned)
	}
	r.mu.Lock()
	r.active[h.ID] = activeFault{inj: inj, handle: h, step: step}
	r.mu.Unlock()
	_ = r.write(journal.Event{Type: journal.TypeInject, Step: step, Fault: st.Fault, Handle: &h,
		Message: fmt.Sprintf("onset %s after plan", onset.Round(time.Microsecond))})
	r.progress("inject %s (method[%d]) for %s", st.Fault, step, st.For)
	return h.ID, nil
}

// sweepFailedInject removes whatever a failed injection left (toxics
// named after its owner and ID) and journals the intent as settled, or as
// a failed removal that `recover` will try again.
func (r *runner) sweepFailedInject(step int, intent faults.Handle) {
	ev := journal.Event{Type: journal.TypeRemove, Step: step, Fault: intent.Fault, Handle: &intent,
		Message: "the injection failed; no toxic of it is left"}
	if intent.Toxiproxy != "" {
		ctx, cancel := context.WithTimeout(r.opts.Kill, r.exp.Rollbacks.Timeout)
		n, err := undo.Undo(ctx, intent, undo.Options{Named: true})
		cancel()
		if err != nil {
			ev.Err = fmt.Sprintf("sweeping what the failed injection left: %v", err)
		} else if n > 0 {
			ev.Message = fmt.Sprintf("the injection failed; removed the %d toxics it left", n)
		}
	}
	_ = r.write(ev)
}

// remove removes one injected fault and journals it. base bounds the
// attempt (with the rollback timeout on top): the second-signal context,
// so that a first signal does not stop a removal.
func (r *runner) remove(base context.Context, id string) error {
	r.mu.Lock()
	a, ok := r.active[id]
	r.mu.Unlock()
	if !ok {
		return nil
	}
	rctx, cancel := context.WithTimeout(base, r.exp.Rollbacks.Timeout)
	defer cancel()
	err := a.inj.Remove(rctx, a.handle)
	ev := journal.Event{Type: journal.TypeRemove, Step: a.step, Fault: a.handle.Fault, Handle: &a.handle}
	if err != nil {
		ev.Err = err.Error()
		_ = r.write(ev)
		return &faults.RollbackError{Handle: a.handle, Err: err}
	}
	// What the fault measured (a load generator's summary), for the journal.
	sctx, scancel := context.WithTimeout(base, 2*time.Second)
	if stat, err := a.inj.Status(sctx, a.handle); err == nil {
		ev.Message = stat.Detail
	}
	scancel()
	_ = r.write(ev)
	r.mu.Lock()
	delete(r.active, id)
	r.mu.Unlock()
	r.progress("remove %s (method[%d])", a.handle.Fault, a.step)
	return nil
}

// removeAll removes faults concurrently and returns their errors.
func (r *runner) removeAll(base context.Context, ids []string) error {
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A panicking injector must not take the run down with faults
			// in place: it is a failed removal.
			defer func() {
				if p := recover(); p != nil {
					r.mu.Lock()
					a := r.active[id]
					r.mu.Unlock()
					errs[i] = &faults.RollbackError{Handle: a.handle, Err: fmt.Errorf("remove panicked: %v", p)}
				}
			}()
			errs[i] = r.remove(base, id)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// rollback removes every fault still active. It runs on every exit path;
// after a second signal it tries only briefly.
func (r *runner) rollback() error {
	r.mu.Lock()
	ids := make([]string, 0, len(r.active))
	for id := range r.active {
		ids = append(ids, id)
	}
	r.mu.Unlock()
	if len(ids) == 0 {
		return nil
	}
	sort.Strings(ids)
	r.phase(PhaseRollback)
	ctx := r.opts.Kill
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), 500*time.Millisecond)
		defer cancel()
	}
	return r.removeAll(ctx, ids)
}

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

// recoverySummary works out each SLI's worst value during the faults and
// its time to recover from recovered (the planned end that starts the
// clock), journals the recovery assertions and says whether any failed.
// methodEnd is the planned end of the last fault.
func (r *runner) recoverySummary(injectStart, removed, methodEnd, end time.Time) (journal.Summary, bool) {
	sum := journal.Summary{RecoveryBound: r.exp.Recovery.Within, RecoveryFrom: r.recoveryAnchor()}
	deviated := false
	overall := time.Duration(0)
	recoveredAll := true
	for i, s := range r.slis {
		pts := s.series.snapshot()
		tol := s.spec.Tolerance
		ss := journal.SLISummary{Name: s.spec.Name, Unit: r.unit(s)}
		ss.Tolerance = tol.format(ss.Unit)
		if _, stepped := s.probe.(probes.Stepped); stepped && i < len(r.baseline) && r.baseline[i].at.IsZero() {
			ss.NoBaseline = true
		} else if i < len(r.baseline) {
			// The value the baseline assertion judged, not a later one.
			ss.Baseline = r.baseline[i].stat
		}
		for _, p := range pts {
			if p.failed {
				ss.FailedSamples++
				ss.LastFailure = oneLine(p.err)
			}
		}
		first := true
		for _, ev := range evaluate(pts, tol, injectStart, methodEnd) {
			if ev.failed {
				ss.Failures++
				continue
			}
			if first || tol.worse(ev.stat, ss.Worst) {
				ss.Worst, first = ev.stat, false
			}
		}
		ttr, ok := timeToRecover(pts, tol, removed, end, r.exp.Recovery.Hold)
		ss.Recovered = ok
		ss.TimeToRecover = ttr
		if !ok {
			ss.TimeToRecover = -1
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

// unit is the unit of an SLI's values: the probe's own, or its kind's.
func (r *runner) unit(s *sliState) string {
	if u, ok := s.probe.(probes.Uniter); ok {
		return u.Unit()
	}
	if k, err := r.opts.Catalog.Probes.Get(s.spec.Probe); err == nil {
		return k.Unit
	}
	return ""
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

// oneLine shortens a probe's error for a progress line or the summary.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if s == "" {
		return "no reason given"
	}
	if r := []rune(s); len(r) > 300 {
		s = string(r[:300]) + "…"
	}
	return s
}

// window returns the samples in the tolerance window ending at t (the last
// sample alone when the window is 0).
func window(pts []point, tol Tolerance, t time.Time) []point {
	if len(pts) == 0 {
		return nil
	}
	if tol.Over == 0 {
		return pts[len(pts)-1:]
	}
	var out []point
	for _, p := range pts {
		if p.at.After(t.Add(-tol.Over)) && !p.at.After(t) {
			out = append(out, p)
		}
	}
	return out
}

func (r *runner) phase(name string) {
	r.mu.Lock()
	r.phaseName = name
	r.mu.Unlock()
	_ = r.write(journal.Event{Type: journal.TypePhase, Phase: name})
	r.progress("phase %s", name)
}

func (r *runner) assert(name string, passed bool, measured, bound, msg string) {
	p := passed
	_ = r.write(journal.Event{Type: journal.TypeAssertion, Name: name, Passed: &p, Measured: measured, Bound: bound, Message: msg})
	verdict := "ok"
	if !passed {
		verdict = "FAILED"
	}
	r.progress("%s: %s (measured %s, bound %s)", name, verdict, measured, bound)
}

func (r *runner) progress(format string, args ...any) {
	if r.opts.Progress == nil {
		return
	}
	r.outMu.Lock()
	defer r.outMu.Unlock()
	if r.opts.Live != nil {
		fmt.Fprint(r.opts.Live, "\r\033[K") // clear the status line first
	}
	fmt.Fprintf(r.opts.Progress, "%s %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// live redraws the status line until the returned function is called.
func (r *runner) live() (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				r.outMu.Lock()
				fmt.Fprint(r.opts.Live, "\r\033[K")
				r.outMu.Unlock()
				return
			case <-t.C:
				line := r.statusLine()
				r.outMu.Lock()
				fmt.Fprint(r.opts.Live, "\r\033[K"+line)
				r.outMu.Unlock()
			}
		}
	}()
	return func() { close(done); <-finished }
}

// statusLine is the live status: phase, elapsed/planned, the latest value
// of each SLI, and the faults active.
func (r *runner) statusLine() string {
	r.mu.Lock()
	phase := r.phaseName
	var active []string
	for _, a := range r.active {
		active = append(active, a.handle.Fault)
	}
	r.mu.Unlock()
	sort.Strings(active)
	var b strings.Builder
	fmt.Fprintf(&b, "[%s] %s/%s", phase, time.Since(r.started).Round(100*time.Millisecond),
		r.exp.plannedDuration().Round(time.Second))
	for _, s := range r.slis {
		last, ok := s.series.last()
		if !ok {
			continue
		}
		v := "failed"
		if !last.failed {
			v = fmt.Sprintf("%.4g", last.value)
			if r.unit(s) == "s" {
				v = time.Duration(last.value * float64(time.Second)).Round(time.Millisecond).String()
			}
		}
		fmt.Fprintf(&b, "  %s=%s", s.spec.Name, v)
	}
	if len(active) > 0 {
		fmt.Fprintf(&b, "  faults: %s", strings.Join(active, ", "))
	}
	return b.String()
}

// verdict journals the run's end.
func (r *runner) verdict(res Result, d time.Duration) {
	ev := journal.Event{Type: journal.TypeVerdict, Status: res.Status, Deviated: res.Deviated, Duration: d,
		Summary: &res.Summary, Message: res.Message}
	if res.Err != nil {
		ev.Err = res.Err.Error()
	}
	if r.opts.ExitCode != nil {
		ev.ExitCode = r.opts.ExitCode(res)
	}
	_ = r.write(ev)
	r.progress("verdict %s", res.Status)
}

// write journals an event of this run.
func (r *runner) write(e journal.Event) error {
	e.Run = r.opts.RunID
	return r.j.Write(e)
}
