package probes_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/experiments/probes"
	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/avlatency"
	"github.com/mailchaos/mailchaos/faults/loadsurge"
	"github.com/mailchaos/mailchaos/faults/loadsurge/loadfig"
	"github.com/mailchaos/mailchaos/targets"
)

// fakeLoads is a hand-set load step: the test sets what LoadStatus
// returns, and it records the steps asked for.
type fakeLoads struct {
	mu      sync.Mutex
	st      faults.Status
	running bool
	err     error
	asked   []string
}

func (f *fakeLoads) LoadStatus(_ context.Context, step string) (faults.Status, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, step)
	return f.st, f.running, f.err
}

func (f *fakeLoads) set(running bool, figs loadfig.Figures) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.running, f.st = running, faults.Status{Active: true, Figures: figs}
}

// newLoadProbe builds a load probe on loads.
func newLoadProbe(t *testing.T, loads probes.LoadReader, params faults.Params) probes.Probe {
	t.Helper()
	_, errs := faults.Check(probes.LoadKind().Spec(), params)
	require.Empty(t, errs)
	p, err := probes.LoadKind().New(probes.Config{Name: "sli", Params: params, RunID: "run1", Loads: loads})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close()) })
	return p
}

// snapshot is an SMTP load's figures at age elapsed (seconds): offered,
// accepted and tempfailed counts, with every accepted message taking lat.
func snapshot(elapsed, offered, accepted, tempfail float64, lat time.Duration) loadfig.Figures {
	f := loadfig.Figures{loadfig.Elapsed: elapsed, loadfig.Scheduling: 1, loadfig.Offered: offered,
		loadfig.Accepted: accepted, loadfig.Tempfail: tempfail}
	if accepted > 0 {
		f[loadfig.BucketName(loadfig.Bucket(loadfig.LatencyBounds(), lat))] = accepted
	}
	return f
}

func TestLoadProbeWindows(t *testing.T) {
	t.Parallel()
	loads := &fakeLoads{}
	rate := newLoadProbe(t, loads, faults.Params{"step": "surge", "over": "2s"})
	require.Equal(t, "/s", rate.(probes.Uniter).Unit())
	require.Equal(t, "surge", rate.(probes.Stepped).Step())
	tempfail := newLoadProbe(t, loads, faults.Params{"step": "surge", "over": "2s", "measure": "tempfail"})
	require.Equal(t, "ratio", tempfail.(probes.Uniter).Unit())
	p99 := newLoadProbe(t, loads, faults.Params{"step": "surge", "over": "2s", "measure": "p99"})
	require.Equal(t, "s", p99.(probes.Uniter).Unit())
	all := []probes.Probe{rate, tempfail, p99}

	skipped := func(why string) {
		t.Helper()
		for _, p := range all {
			s := measure(p, waitFor)
			require.True(t, s.Skip, "%s: %+v", why, s)
			require.False(t, s.Failed, why)
		}
	}
	skipped("the step is not injected yet")
	loads.set(true, snapshot(1, 100, 95, 0, 10*time.Millisecond))
	skipped("the load is younger than the window")

	// At 2 s the window is the whole load so far.
	loads.set(true, snapshot(2, 200, 190, 5, 10*time.Millisecond))
	s := measure(rate, waitFor)
	requireOK(t, s)
	require.InDelta(t, 95, s.Value, 1e-9)
	s = measure(tempfail, waitFor)
	require.InDelta(t, 5.0/195, s.Value, 1e-9)
	s = measure(p99, waitFor)
	require.InEpsilon(t, 0.010, s.Value, 0.05)

	// At 4.5 s, the window starts at the latest snapshot at least 2 s old:
	// the one of 2 s (2.5 s ago), as the one of 3 s is too recent.
	loads.set(true, snapshot(3, 300, 290, 5, 10*time.Millisecond))
	for _, p := range all {
		requireOK(t, measure(p, waitFor))
	}
	loads.set(true, snapshot(4.5, 450, 390, 45, 10*time.Millisecond))
	s = measure(rate, waitFor)
	require.InDelta(t, 200.0/2.5, s.Value, 1e-9)
	s = measure(tempfail, waitFor)
	require.InDelta(t, 40.0/240, s.Value, 1e-9)
	requireOK(t, measure(p99, waitFor))

	// Nothing accepted in the window although messages were due: no latency
	// to report, and that is a failure (nothing got through). Nothing
	// settled either: the shares have no value.
	loads.set(true, snapshot(8, 800, 390, 45, 10*time.Millisecond))
	s = measure(p99, waitFor)
	require.True(t, s.Failed)
	require.Regexp(t, `^load step surge: nothing accepted in the last 3\.5s \(350 due, 0 settled\)$`, s.Err)
	require.True(t, measure(tempfail, waitFor).Skip)
	s = measure(rate, waitFor)
	requireOK(t, s)
	require.Zero(t, s.Value)

	// Once the schedule has stopped (the last replies are awaited), or the
	// fault is no longer active, there is nothing to judge.
	f := snapshot(9, 900, 480, 45, 10*time.Millisecond)
	f[loadfig.Scheduling] = 0
	loads.set(true, f)
	skipped("the schedule has stopped")
	loads.set(true, snapshot(9, 900, 480, 45, 10*time.Millisecond))
	loads.mu.Lock()
	loads.st.Active = false
	loads.mu.Unlock()
	skipped("the load is over")
	loads.set(false, nil)
	skipped("the step was removed")

	loads.mu.Lock()
	loads.err = errors.New("no method step is named \"surge\"")
	asked := append([]string(nil), loads.asked...)
	loads.mu.Unlock()
	s = measure(rate, waitFor)
	require.True(t, s.Failed)
	require.Equal(t, `load step surge: no method step is named "surge"`, s.Err)
	for _, step := range asked {
		require.Equal(t, "surge", step)
	}
}

func TestLoadProbeNeedsAnExperiment(t *testing.T) {
	t.Parallel()
	_, err := probes.LoadKind().New(probes.Config{Name: "sli", Params: faults.Params{}})
	require.ErrorContains(t, err, "reads a load-surge step of the experiment")
	_, err = probes.LoadKind().New(probes.Config{Name: "sli", Params: faults.Params{"measure": "p95"}, Loads: &fakeLoads{}})
	require.ErrorContains(t, err, "parameter measure")
	_, err = probes.LoadKind().New(probes.Config{Name: "sli", Params: faults.Params{"over": "10ms"}, Loads: &fakeLoads{}})
	require.ErrorContains(t, err, "parameter over")
}

// stepLoads reads one injected load-surge fault, as the runner does for
// a method step.
type stepLoads struct {
	inj *loadsurge.Injector
	h   faults.Handle
}

func (s stepLoads) LoadStatus(ctx context.Context, step string) (faults.Status, bool, error) {
	st, err := s.inj.Status(ctx, s.h)
	return st, true, err
}

// sampleOf waits for p's first sample with a value and returns it.
func sampleOf(t *testing.T, p probes.Probe) probes.Sample {
	t.Helper()
	var s probes.Sample
	require.Eventually(t, func() bool {
		s = measure(p, waitFor)
		return !s.Skip
	}, waitFor, 20*time.Millisecond, "a full window")
	requireOK(t, s)
	return s
}

func TestLoadProbeOnTheStack(t *testing.T) {
	ctx := context.Background()
	run, err := targets.StartMailstack(ctx, testConfig(t), nil)
	require.NoError(t, err)
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(ctx, waitFor)
		defer cancel()
		require.NoError(t, run.Close(cctx))
	})

	// 50 messages a second on the SMTP ingress, over windows of 2 s.
	surge := loadsurge.New()
	h, err := surge.Inject(ctx, faults.Request{ID: "s0", Owner: "test", Fault: loadsurge.Name, Target: run.Target,
		Params: faults.Params{"rate": "50/s", "concurrency": "50"}, Duration: 10 * time.Minute, TTL: 11 * time.Minute})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, surge.Remove(ctx, h)) })
	loads := stepLoads{inj: surge, h: h}
	accepted := newLoadProbe(t, loads, faults.Params{"over": "2s"})
	offered := newLoadProbe(t, loads, faults.Params{"over": "2s", "measure": "offered-rate"})
	tempfail := newLoadProbe(t, loads, faults.Params{"over": "2s", "measure": "tempfail"})
	p99 := newLoadProbe(t, loads, faults.Params{"over": "2s", "measure": "p99"})

	a := sampleOf(t, accepted)
	require.InDelta(t, 50, a.Value, 20, "accepted rate over 2 s")
	require.InDelta(t, 50, sampleOf(t, offered).Value, 20, "offered rate over 2 s")
	require.Zero(t, sampleOf(t, tempfail).Value)
	before := sampleOf(t, p99)
	require.Less(t, before.Value, 1.8, "p99 before the stack turns slow")

	// The stack turns slow: every reply on the SMTP ingress waits 2 s, as
	// with a pre-queue scanner that takes that long. Every message accepted
	// from then on took at least that: once a whole window is past the
	// change, the p99 shows it.
	slow := avlatency.New()
	hs, err := slow.Inject(ctx, faults.Request{ID: "s1", Owner: "test", Fault: avlatency.Name, Target: run.Target,
		Links: []string{targets.LinkSMTPIngress}, Params: faults.Params{"mode": "latency", "latency": "2s"},
		Duration: 10 * time.Minute, TTL: 11 * time.Minute})
	require.NoError(t, err)
	removed := false
	remove := func() {
		if !removed {
			removed = true
			require.NoError(t, slow.Remove(ctx, hs))
		}
	}
	t.Cleanup(remove) // before the load's removal, registered earlier
	var after probes.Sample
	require.Eventually(t, func() bool {
		after = measure(p99, waitFor)
		return !after.Skip && !after.Failed && after.Value >= 1.8
	}, waitFor, 50*time.Millisecond, "p99 rises to the 2 s the stack takes (last %+v, before %+v)", after, before)
	t.Logf("p99 over 2 s: %.3fs before, %.3fs once every reply takes 2 s", before.Value, after.Value)
	remove()
}
