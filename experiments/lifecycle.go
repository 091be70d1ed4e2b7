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

type activeFault struct {
	inj    faults.Injector
	handle faults.Handle
	step   int
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
