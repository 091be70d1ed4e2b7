package experiments

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/mailchaos/mailchaos/experiments/journal"
	"github.com/mailchaos/mailchaos/experiments/probes"
)

type sliState struct {
	spec   SLI
	probe  probes.Probe
	series series
	cond   *Condition
}

// maxInterval is the longest SLI interval.
func (r *runner) maxInterval() time.Duration {
	var d time.Duration
	for _, s := range r.slis {
		d = max(d, s.spec.Interval)
	}
	return d
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

// samplers are the goroutines that take the SLIs' samples, one an SLI.
type samplers struct {
	r *runner
	// stop ends the taking of samples; cancel ends the samples in flight.
	stop, cancel context.CancelFunc
	wg           sync.WaitGroup
	// loops ends when no sampler takes new samples any more.
	loops sync.WaitGroup
}

// startSamplers starts taking every SLI's samples, until ctx ends or the
// samplers are drained or closed.
func (r *runner) startSamplers(ctx context.Context) *samplers {
	// Samplers stop taking samples when sctx ends; samples in flight run on
	// mctx, so that the last ones can still come in at the end.
	sctx, stop := context.WithCancel(ctx)
	mctx, cancel := context.WithCancel(ctx)
	smp := &samplers{r: r, stop: stop, cancel: cancel}
	for _, s := range r.slis {
		smp.wg.Add(1)
		smp.loops.Add(1)
		go func() {
			defer smp.wg.Done()
			r.sample(sctx, mctx, s, smp.loops.Done)
		}()
	}
	return smp
}

// drain stops taking samples and waits for those in flight, for wait
// (a run waits one more interval) and a quarter of a second at most, or
// until ctx ends: those still out then are recorded as failed. It returns
// once every sampler has ended.
func (smp *samplers) drain(ctx context.Context, wait time.Duration) {
	end := time.Now()
	smp.stop()
	// Every sample taken is in flight (or in) once the samplers stopped.
	smp.loops.Wait()
	smp.r.awaitInflight(ctx, end.Add(wait+250*time.Millisecond))
	smp.r.cutoff.Store(true)
	smp.cancel()
	smp.wg.Wait()
}

// close stops the samplers, cuts off the samples in flight (they are
// dropped), waits for every sampler to end and closes the probes. It is
// safe to call after drain.
func (smp *samplers) close() {
	smp.stop()
	smp.cancel()
	smp.wg.Wait()
	for _, s := range smp.r.slis {
		_ = s.probe.Close()
	}
}

// sample takes an SLI's samples on its interval until ctx ends; stopped is
// called once it takes no more (before the samples in flight are in).
// Each sample runs in its own goroutine on mctx, so a slow one does not
// delay the next; at most timeout/interval+2 are in flight.
func (r *runner) sample(ctx, mctx context.Context, s *sliState, stopped func()) {
	var inflight sync.WaitGroup
	defer inflight.Wait()
	defer stopped()
	slots := make(chan struct{}, int(s.spec.Timeout/s.spec.Interval)+2)
	tick := time.NewTicker(s.spec.Interval)
	defer tick.Stop()
	for ctx.Err() == nil {
		select {
		case slots <- struct{}{}:
			inflight.Add(1)
			// In flight from now on, so that a drain waits for it.
			start := time.Now()
			id := s.series.begin(start)
			go func() {
				defer inflight.Done()
				defer func() { <-slots }()
				r.measure(mctx, s, start, id)
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

// measure takes one sample, begun at start with ticket id, journals it and
// checks the abort condition. A panicking probe aborts the run. A sample
// cut off at the end of the run is recorded as failed; one cut off by a
// signal or an abort is dropped.
func (r *runner) measure(ctx context.Context, s *sliState, start time.Time, id uint64) {
	defer s.series.finish(id)
	defer func() {
		if p := recover(); p != nil {
			r.raise(fmt.Sprintf("probe %s of SLI %s panicked: %v", s.spec.Probe, s.spec.Name, p))
		}
	}()
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
