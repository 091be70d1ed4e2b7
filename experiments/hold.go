package experiments

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/internal/exitcode"
)

// HoldOptions are the surroundings of [Hold]. Every field is optional.
type HoldOptions struct {
	// Kill ends when the removal must stop at once (a second signal): it
	// is then tried for half a second only. Nil means never.
	Kill context.Context
	// RemoveTimeout bounds the removal; 0 means 30s.
	RemoveTimeout time.Duration
	// Injected is called once the fault is in place.
	Injected func(faults.Handle)
	// Lost is called with the reason when the fault's injector is lost
	// (its plugin died), before the fault is removed.
	Lost func(error)
	// Removed is called once the fault is removed, with what it measured
	// (its status detail, often "").
	Removed func(detail string)
}

// errInterrupted ends a fault held until a signal.
var errInterrupted = errors.New("interrupted; every fault was removed")

// Hold injects one fault on its own, as `mailchaos inject` does, holds it
// in place for req.Duration (0: no limit), until ctx ends (a signal) or
// its injector is lost, and removes it, on every way out, panics included: the lifecycle
// of a run's faults, for one fault.
//
// It returns nil once the fault has held for its time and is removed. A
// removal that failed is the gravest outcome (a *faults.RollbackError:
// the fault may still be in place); then a lost injector (its error);
// then an interruption (exit code Aborted). A fault that could not be
// injected is reported with the injector's error.
func Hold(ctx context.Context, inj faults.Injector, req faults.Request, opts HoldOptions) (err error) {
	kill := opts.Kill
	if kill == nil {
		kill = context.WithoutCancel(ctx)
	}
	lc := NewLifecycle(opts.RemoveTimeout, func(rm Removal) {
		if rm.Err == nil && opts.Removed != nil {
			opts.Removed(rm.Detail)
		}
	})
	h, err := lc.Inject(ctx, inj, req, 0)
	if err != nil {
		// Whatever the failed injection left (toxics named after it) goes.
		intent := faults.Intent(req)
		if _, serr := lc.Sweep(kill, intent); serr != nil {
			return errors.Join(fmt.Errorf("inject %s: %w", req.Fault, err), &faults.RollbackError{Handle: intent, Err: serr})
		}
		return fmt.Errorf("inject %s: %w", req.Fault, err)
	}
	lost, why := lostOf(inj)
	defer func() {
		switch rerr := lc.Rollback(kill); {
		case rerr != nil:
			err = rerr
		case why() != nil:
			err = why()
		case ctx.Err() != nil:
			err = exitcode.Wrap(errInterrupted, exitcode.Aborted)
		}
	}()
	if opts.Injected != nil {
		opts.Injected(h)
	}
	var timeUp <-chan time.Time // with no duration, the fault holds until ctx ends
	if req.Duration > 0 {
		timer := time.NewTimer(req.Duration)
		defer timer.Stop()
		timeUp = timer.C
	}
	select {
	case <-timeUp:
	case <-ctx.Done():
	case <-lost:
		if opts.Lost != nil {
			opts.Lost(why())
		}
	}
	return nil
}
