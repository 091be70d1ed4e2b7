package experiments

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/mailchaos/mailchaos/experiments/journal"
	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/undo"
	"github.com/mailchaos/mailchaos/internal/exitcode"
)

// Injectors finds the injector of a fault by name: a [faults.Registry].
type Injectors interface {
	Get(name string) (faults.Injector, faults.Spec, error)
}

// RecoverOptions are the surroundings of [Recover].
type RecoverOptions struct {
	// Faults finds each fault's injector; a fault whose injector cannot be
	// had is undone without it.
	Faults Injectors
	// AllowRemote lets the journal's toxiproxy servers and restore calls
	// be off loopback.
	AllowRemote bool
	// Timeout bounds the removals together; 0 means 30s.
	Timeout time.Duration
	// Progress, if not nil, is told of each fault removed.
	Progress func(line string)
}

// ErrNothingToRecover is what [Recover] returns for a journal whose every
// injected fault was removed.
var ErrNothingToRecover = errors.New("nothing to recover: every injected fault was removed")

// Recover removes the faults the journal at path shows as injected (or
// about to be) and not removed: a crashed run's. Each fault's injector
// removes it; when it cannot, mailchaos undoes what the handle describes
// itself; and every toxic named after the fault goes too, the journal
// having heard of it or not (a run killed in the middle of an injection
// journals only its intent). What it removed is appended to the journal,
// so that a report of it no longer shows the faults in place.
//
// The journal's addresses pass the loopback guard before anything is
// contacted (an error with exit code 2 otherwise). A fault that may still
// be in place is a [*faults.RollbackError] in the joined error.
func Recover(ctx context.Context, path string, opts RecoverOptions) error {
	events, err := journal.ReadFile(path)
	if err != nil {
		return err
	}
	left := journal.Outstanding(events)
	if len(left) == 0 {
		return ErrNothingToRecover
	}
	var refused []error
	for _, h := range left {
		for _, addr := range handleAddresses(h) {
			if err := faults.CheckAddress(addr, nil, opts.AllowRemote); err != nil {
				refused = append(refused, fmt.Errorf("%s (%s): %w", h.ID, h.Fault, err))
			}
		}
	}
	if len(refused) > 0 {
		return exitcode.Wrap(errors.Join(refused...), exitcode.Invalid)
	}
	progress := opts.Progress
	if progress == nil {
		progress = func(string) {}
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = defaultRollbackTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	jw, err := journal.Append(path, events[0].Run)
	if err != nil {
		return err
	}
	defer jw.Close()
	steps := map[string]int{}
	for _, e := range events {
		if (e.Type == journal.TypeInject || e.Type == journal.TypeIntent) && e.Handle != nil {
			steps[e.Handle.ID] = e.Step
		}
	}
	var errs []error
	for _, h := range left {
		rest := faults.Handle{ID: h.ID, Fault: h.Fault, Owner: h.Owner, Toxiproxy: h.Toxiproxy, Servers: h.Servers}
		var err error
		if opts.Faults == nil {
			err = errors.New("no injectors")
		} else {
			var inj faults.Injector
			if inj, _, err = opts.Faults.Get(h.Fault); err == nil {
				err = inj.Remove(ctx, h)
			}
		}
		if err != nil {
			rest = h // the injector could not: all the handle describes
		}
		n, err := undo.Undo(ctx, rest, undo.Options{RemoteOK: opts.AllowRemote, Named: true})
		if n > 0 {
			progress(fmt.Sprintf("%s (%s): removed %d toxics named after it", h.ID, h.Fault, n))
		}
		if err != nil {
			errs = append(errs, &faults.RollbackError{Handle: h, Err: err})
			continue
		}
		progress(fmt.Sprintf("removed %s (%s)", h.ID, h.Fault))
		_ = jw.Write(journal.Event{Type: journal.TypeRemove, Step: steps[h.ID], Fault: h.Fault, Handle: &h,
			Message: "removed by mailchaos recover"})
	}
	return errors.Join(errs...)
}

// handleAddresses lists the addresses a handle's removal contacts: its
// toxiproxy servers (every one, see [faults.Handle.AllServers]) and any
// URL in its data (an admin API to restore).
func handleAddresses(h faults.Handle) []string {
	out := h.AllServers()
	for _, k := range slices.Sorted(maps.Keys(h.Data)) {
		if v := h.Data[k]; strings.HasPrefix(v, "http://") || strings.HasPrefix(v, "https://") {
			out = append(out, v)
		}
	}
	return out
}
