package experiments

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/mailchaos/mailchaos/experiments/journal"
	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/undo"
)

// Lifecycle is the life of faults from their injection to their removal,
// the one a run and `mailchaos inject` ([Hold]) share: it injects faults,
// keeps account of those in place, and removes them, as planned or all at
// once on the way out. Its methods are safe for concurrent use.
type Lifecycle struct {
	timeout time.Duration
	removed func(Removal)

	mu     sync.Mutex
	placed map[string]Placed // by handle ID
}

// Placed is a fault in place.
type Placed struct {
	Injector faults.Injector
	Handle   faults.Handle
	// Step is the method step that placed it; 0 for a fault injected on
	// its own.
	Step int
}

// Removal is how the removal of a fault ended.
type Removal struct {
	Placed
	// Detail is what the fault measured, from its status once removed (a
	// load generator's summary); often "".
	Detail string
	// Err is why the injector could not remove the fault: it may still be
	// in place.
	Err error
}

// NewLifecycle returns a Lifecycle with no fault in place. timeout bounds
// each removal (0 means 30s). removed, if not nil, is called as each
// removal ends, on the goroutine that made it, before Remove returns.
func NewLifecycle(timeout time.Duration, removed func(Removal)) *Lifecycle {
	if timeout <= 0 {
		timeout = defaultRollbackTimeout
	}
	return &Lifecycle{timeout: timeout, removed: removed, placed: map[string]Placed{}}
}

// Inject injects req with inj and keeps the fault in place until Remove or
// Rollback removes it. ctx bounds the injection alone.
func (l *Lifecycle) Inject(ctx context.Context, inj faults.Injector, req faults.Request, step int) (faults.Handle, error) {
	h, err := inj.Inject(ctx, req)
	if err != nil {
		return faults.Handle{}, err
	}
	l.mu.Lock()
	l.placed[h.ID] = Placed{Injector: inj, Handle: h, Step: step}
	l.mu.Unlock()
	return h, nil
}

// Sweep undoes what a failed injection may have left: every toxic named
// after intent's owner and ID on each of its toxiproxy servers (see
// [undo.Undo]).
// It returns how many it found. kill bounds it, with the lifecycle's
// timeout on top.
func (l *Lifecycle) Sweep(kill context.Context, intent faults.Handle) (int, error) {
	ctx, cancel := context.WithTimeout(kill, l.timeout)
	defer cancel()
	return undo.Undo(ctx, intent, undo.Options{Named: true})
}

// InPlace returns the faults in place, in the order of their handle IDs.
func (l *Lifecycle) InPlace() []Placed {
	l.mu.Lock()
	out := make([]Placed, 0, len(l.placed))
	for _, p := range l.placed {
		out = append(out, p)
	}
	l.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Handle.ID < out[j].Handle.ID })
	return out
}

// Remove removes the faults in place with the handle IDs given, all at
// once, and blocks until every removal has ended. It returns the joined
// *faults.RollbackError of each fault that may still be in place; those
// stay in place for a later Rollback. Each removal has the lifecycle's
// timeout on top of base: give a context a first signal does not end. A
// panicking injector fails its removal. IDs not in place are skipped.
func (l *Lifecycle) Remove(base context.Context, ids ...string) error {
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A panicking injector must not take its caller down with
			// faults in place: it is a failed removal.
			defer func() {
				if p := recover(); p != nil {
					l.mu.Lock()
					a := l.placed[id]
					l.mu.Unlock()
					errs[i] = &faults.RollbackError{Handle: a.Handle, Err: fmt.Errorf("remove panicked: %v", p)}
				}
			}()
			errs[i] = l.remove(base, id)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Rollback removes every fault still in place, as Remove does, on kill: a
// context that ends when removals must stop at once (a second signal).
// Once kill has ended, each removal is tried for half a second only.
func (l *Lifecycle) Rollback(kill context.Context) error {
	var ids []string
	for _, p := range l.InPlace() {
		ids = append(ids, p.Handle.ID)
	}
	if len(ids) == 0 {
		return nil
	}
	ctx := kill
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), 500*time.Millisecond)
		defer cancel()
	}
	return l.Remove(ctx, ids...)
}

// remove removes one fault in place. base bounds the attempt, with the
// lifecycle's timeout on top.
func (l *Lifecycle) remove(base context.Context, id string) error {
	l.mu.Lock()
	p, ok := l.placed[id]
	l.mu.Unlock()
	if !ok {
		return nil
	}
	rctx, cancel := context.WithTimeout(base, l.timeout)
	defer cancel()
	if err := p.Injector.Remove(rctx, p.Handle); err != nil {
		l.notify(Removal{Placed: p, Err: err})
		return &faults.RollbackError{Handle: p.Handle, Err: err}
	}
	// What the fault measured (a load generator's summary).
	rm := Removal{Placed: p}
	sctx, scancel := context.WithTimeout(base, 2*time.Second)
	if stat, err := p.Injector.Status(sctx, p.Handle); err == nil {
		rm.Detail = stat.Detail
	}
	scancel()
	l.mu.Lock()
	delete(l.placed, id)
	l.mu.Unlock()
	l.notify(rm)
	return nil
}

// notify tells the lifecycle's owner how a removal ended.
func (l *Lifecycle) notify(rm Removal) {
	if l.removed != nil {
		l.removed(rm)
	}
}

// losable is an injector that can fail between calls: a plugin whose
// process died or was killed for hanging. Lost is closed once that has
// happened (and its faults were removed by its host); LostErr says why.
type losable interface {
	Lost() <-chan struct{}
	LostErr() error
}

// lostOf returns a channel closed once inj is lost, and what lost it; for
// an injector that cannot be lost, a nil channel (never ready) and nil.
func lostOf(inj faults.Injector) (lost <-chan struct{}, why func() error) {
	if l, ok := inj.(losable); ok {
		return l.Lost(), l.LostErr
	}
	return nil, func() error { return nil }
}

// watchInjectors stops the run when an injector the method uses is lost.
// The returned function stops watching.
func (r *runner) watchInjectors() (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	seen := map[string]bool{}
	for _, st := range r.exp.Method {
		inj, _, err := r.opts.Catalog.Faults.Get(st.Fault)
		lost, why := lostOf(inj)
		if err != nil || lost == nil || seen[st.Fault] {
			continue
		}
		seen[st.Fault] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-lost:
				r.raise(fmt.Sprintf("fault %s: %v", st.Fault, why()))
			case <-done:
			}
		}()
	}
	return func() {
		close(done)
		wg.Wait()
	}
}

// inject starts one step's fault and journals it.
func (r *runner) inject(ctx context.Context, step int, planned time.Time) (string, error) {
	st := r.exp.Method[step]
	inj, _, err := r.opts.Catalog.Faults.Get(st.Fault)
	if err != nil {
		return "", err
	}
	req := r.request(step)
	// The intent goes into the journal before anything is created: a run
	// killed in the middle of this injection leaves toxics named after
	// its owner and ID, which `recover` finds by them.
	intent := faults.Intent(req)
	if err := r.write(journal.Event{Type: journal.TypeIntent, Step: step, Fault: st.Fault, Handle: &intent}); err != nil {
		return "", fmt.Errorf("journal the intent to inject: %w", err)
	}
	h, err := r.lifecycle.Inject(ctx, inj, req, step)
	if err != nil {
		r.sweepFailedInject(step, intent)
		return "", err
	}
	onset := time.Since(planned)
	if !h.Injected.IsZero() {
		onset = h.Injected.Sub(planned)
	}
	_ = r.write(journal.Event{Type: journal.TypeInject, Step: step, Fault: st.Fault, Handle: &h,
		Message: fmt.Sprintf("onset %s after plan", onset.Round(time.Microsecond))})
	r.progress("inject %s (method[%d]) for %s", st.Fault, step, st.For)
	return h.ID, nil
}

// request is the request of one step's fault.
func (r *runner) request(step int) faults.Request {
	st := r.exp.Method[step]
	return faults.Request{ID: fmt.Sprintf("s%d", step), Owner: r.opts.RunID, Fault: st.Fault, Target: r.run.Target,
		Links: st.AllLinks(), Params: faults.Params(st.Params), Duration: st.For, TTL: st.For + faults.DefaultTTLGrace}
}

// sweepFailedInject removes whatever a failed injection left (toxics
// named after its owner and ID) and journals the intent as settled, or as
// a failed removal that `recover` will try again.
func (r *runner) sweepFailedInject(step int, intent faults.Handle) {
	ev := journal.Event{Type: journal.TypeRemove, Step: step, Fault: intent.Fault, Handle: &intent,
		Message: "the injection failed; no toxic of it is left"}
	if len(intent.AllServers()) > 0 {
		n, err := r.lifecycle.Sweep(r.opts.Kill, intent)
		if err != nil {
			ev.Err = fmt.Sprintf("sweeping what the failed injection left: %v", err)
		} else if n > 0 {
			ev.Message = fmt.Sprintf("the injection failed; removed the %d toxics it left", n)
		}
	}
	_ = r.write(ev)
}

// removed journals how the removal of a fault ended.
func (r *runner) removed(rm Removal) {
	h := rm.Handle
	ev := journal.Event{Type: journal.TypeRemove, Step: rm.Step, Fault: h.Fault, Handle: &h, Message: rm.Detail}
	if rm.Err != nil {
		ev.Err = rm.Err.Error()
	}
	_ = r.write(ev)
	if rm.Err == nil {
		r.progress("remove %s (method[%d])", h.Fault, rm.Step)
	}
}

// rollback removes every fault still in place. It runs on every exit path;
// after a second signal it tries only briefly.
func (r *runner) rollback() error {
	if len(r.lifecycle.InPlace()) == 0 {
		return nil
	}
	r.phase(PhaseRollback)
	return r.lifecycle.Rollback(r.opts.Kill)
}
