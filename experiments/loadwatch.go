package experiments

import (
	"context"
	"slices"
	"time"

	"github.com/mailchaos/mailchaos/experiments/journal"
	"github.com/mailchaos/mailchaos/faults/loadsurge/loadfig"
)

// loadEvery is how often a run journals what each of its loads did.
const loadEvery = time.Second

// watchLoads journals, every loadEvery while a load-surge step of the
// method is in place, what it did since the last time (journal.TypeLoad:
// offered and accepted rates, outcome shares, latency percentiles), so
// that reports can draw the load beside the SLIs whether or not an SLI
// reads it. It returns the function that stops it and waits for it.
func (r *runner) watchLoads(ctx context.Context) (stop func()) {
	steps, _ := r.exp.loadSteps()
	if len(steps) == 0 || r.j == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		last := map[string]loadfig.Figures{} // by handle ID: a step injected again starts anew
		tick := time.NewTicker(loadEvery)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			// The window ends when the steps in place are looked up: a
			// step in place then is removed later, so its window ends
			// before its removal is journalled.
			at := time.Now()
			for _, p := range r.lifecycle.InPlace() {
				if !slices.Contains(steps, p.Step) {
					continue
				}
				sctx, scancel := context.WithTimeout(ctx, loadEvery)
				st, err := p.Injector.Status(sctx, p.Handle)
				scancel()
				if err != nil || len(st.Figures) == 0 {
					continue // the load probe and the removal report what is wrong
				}
				cur := loadfig.Figures(st.Figures)
				w := loadfig.Window(last[p.Handle.ID], cur) // nil: since the load started
				last[p.Handle.ID] = cur
				if w.Seconds <= 0 {
					continue
				}
				_ = r.write(journal.Event{Type: journal.TypeLoad, Step: p.Step, Fault: p.Handle.Fault, At: at,
					Load: loadWindow(w)})
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// loadWindow is a window's figures as the journal keeps them.
func loadWindow(w loadfig.WindowStats) *journal.LoadWindow {
	lw := &journal.LoadWindow{Seconds: w.Seconds, OfferedRate: w.OfferedRate, AcceptedRate: w.AcceptedRate, Settled: w.Ended,
		Tempfail: w.Tempfail, Rejected: w.Rejected, ConnError: w.ConnError, Timeout: w.Timeout, Cut: w.Cut, Unsent: w.Unsent}
	for _, q := range []struct {
		q   float64
		dst **float64
	}{{0.5, &lw.P50}, {0.99, &lw.P99}} {
		if d, ok := w.Quantile(q.q); ok {
			v := d.Seconds()
			*q.dst = &v
		}
	}
	return lw
}
