package experiments_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mailchaos/mailchaos/experiments"
	"github.com/mailchaos/mailchaos/experiments/journal"
	"github.com/mailchaos/mailchaos/experiments/probes"
	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/grayfailure"
	"github.com/mailchaos/mailchaos/faults/network"
	"github.com/mailchaos/mailchaos/internal/testnet"
	"github.com/mailchaos/mailchaos/targets/proxy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// slowServer greets every connection with "220 ok" after its current
// delay: a synthetic target whose health the test controls exactly.
type slowServer struct {
	addr  string
	delay atomic.Int64 // nanoseconds
	conns atomic.Int64 // connections (probe samples) so far
}

func startSlowServer(t *testing.T) *slowServer {
	t.Helper()
	s := &slowServer{}
	s.addr = testnet.Serve(t, func(ctx context.Context, c net.Conn) {
		s.conns.Add(1)
		timer := time.NewTimer(time.Duration(s.delay.Load()))
		defer timer.Stop()
		select {
		case <-timer.C:
			_, _ = io.WriteString(c, "220 ok\r\n")
		case <-ctx.Done():
		}
	}).Addr
	return s
}

// synthetic is a test fault: it makes the slowServer slow, and on removal
// keeps it slow for recover-after more, so the true recovery moment is
// known.
type synthetic struct {
	srv    *slowServer
	mu     sync.Mutex
	active bool
	timers []*time.Timer
	healed map[string]time.Time // by handle ID: when the server turned fast
}

// heal makes the server fast and records when, for the fault with the
// given ID: the true recovery moment a test compares the measured one
// with. It must be called with mu held.
func (f *synthetic) heal(id string) {
	f.srv.delay.Store(0)
	if f.healed == nil {
		f.healed = map[string]time.Time{}
	}
	if _, ok := f.healed[id]; !ok {
		f.healed[id] = time.Now() // the first time: a fault healed during it stays healed
	}
}

// healedAt is when the fault with the given ID let the server turn fast.
func (f *synthetic) healedAt(t *testing.T, id string) time.Time {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	at, ok := f.healed[id]
	require.True(t, ok, "fault %s never let the server heal", id)
	return at
}

func (f *synthetic) Describe(context.Context) (faults.Spec, error) {
	return faults.Spec{Name: "synthetic", Params: []faults.Param{
		{Name: "delay", Type: faults.TypeDuration, Default: "400ms"},
		{Name: "recover-after", Type: faults.TypeDuration, Default: "0s"},
		{Name: "heal-after", Type: faults.TypeDuration, Default: "0s"},
		{Name: "remove-takes", Type: faults.TypeDuration, Default: "0s"},
	}}, nil
}

func (f *synthetic) Validate(_ context.Context, req faults.Request) error {
	spec, _ := f.Describe(context.Background())
	_, errs := faults.Check(spec, req.Params)
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}

func (f *synthetic) Inject(_ context.Context, req faults.Request) (faults.Handle, error) {
	spec, _ := f.Describe(context.Background())
	v, _ := faults.Check(spec, req.Params)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.active = true
	delete(f.healed, req.ID) // a new run
	f.srv.delay.Store(int64(v.Duration("delay")))
	if heal := v.Duration("heal-after"); heal > 0 {
		// The target routes around the fault by itself, the fault still
		// in place.
		f.timers = append(f.timers, time.AfterFunc(heal, func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.heal(req.ID)
		}))
	}
	return faults.Handle{ID: req.ID, Fault: "synthetic", Owner: req.Params["recover-after"], Injected: time.Now(),
		Data: map[string]string{"remove-takes": req.Params["remove-takes"]}}, nil
}

func (f *synthetic) Remove(ctx context.Context, h faults.Handle) error {
	// A slow removal, such as a load generator finishing its sessions.
	if d, _ := time.ParseDuration(h.Data["remove-takes"]); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.active = false
	after, _ := time.ParseDuration(h.Owner)
	if after <= 0 {
		f.heal(h.ID)
		return nil
	}
	f.timers = append(f.timers, time.AfterFunc(after, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.heal(h.ID)
	}))
	return nil
}

func (f *synthetic) Status(context.Context, faults.Handle) (faults.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return faults.Status{Active: f.active}, nil
}

func (f *synthetic) isActive() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.active
}

// panicky is a probe kind whose probe panics after a few samples.
func panicky() probes.Kind {
	return probes.Kind{Name: "panicky", Unit: "s", New: func(probes.Config) (probes.Probe, error) {
		return &panicProbe{}, nil
	}}
}

type panicProbe struct{ n atomic.Int32 }

func (p *panicProbe) Measure(context.Context) probes.Sample {
	if p.n.Add(1) > 8 {
		panic("probe bug")
	}
	return probes.Sample{At: time.Now(), Value: 0.001}
}
func (p *panicProbe) Close() error { return nil }

// lab is a synthetic target: the slow server behind a link of an
// in-test toxiproxy server, the synthetic fault, and a catalog.
type lab struct {
	srv   *slowServer
	proxy *proxy.Server
	syn   *synthetic
	cat   experiments.Catalog
	yaml  string // the target block
}

func newLab(t *testing.T) *lab {
	t.Helper()
	l := &lab{srv: startSlowServer(t)}
	var err error
	l.proxy, err = proxy.StartServer(context.Background(), "127.0.0.1:0", nil)
	require.NoError(t, err)
	t.Cleanup(l.proxy.Close)
	listen, err := l.proxy.Link(context.Background(), "svc", "127.0.0.1:0", l.srv.addr)
	require.NoError(t, err)
	l.syn = &synthetic{srv: l.srv}
	t.Cleanup(func() {
		l.syn.mu.Lock()
		defer l.syn.mu.Unlock()
		for _, tm := range l.syn.timers {
			tm.Stop()
		}
	})
	reg := faults.NewRegistry()
	require.NoError(t, reg.Add(context.Background(), l.syn))
	require.NoError(t, reg.Add(context.Background(), grayfailure.New()))
	l.cat = experiments.Catalog{Faults: reg, Probes: probes.NewRegistry(append(probes.Builtin(), panicky())...)}
	l.yaml = fmt.Sprintf(`target:
  kind: external
  toxiproxy: %s
  endpoints: { svc: "%s" }
  links:
    - name: svc
      upstream: %s
`, l.proxy.URL(), listen, l.srv.addr)
	return l
}

// experiment builds an experiment on the lab from the given blocks.
func (l *lab) experiment(t *testing.T, body string) *experiments.Experiment {
	t.Helper()
	src := "version: 1\ntitle: synthetic\n" + l.yaml + body
	e, err := experiments.Parse(context.Background(), "synthetic.yaml", []byte(src), l.cat)
	require.NoError(t, err, src)
	return e
}

// run runs e and returns the result and the journal.
func (l *lab) run(t *testing.T, ctx context.Context, e *experiments.Experiment) (experiments.Result, []journal.Event) {
	t.Helper()
	var buf bytes.Buffer
	jw := journal.NewWriter(&buf, "test")
	res := experiments.Run(ctx, e, experiments.Options{Catalog: l.cat, Journal: jw})
	evs, err := journal.Read(&buf)
	require.NoError(t, err)
	require.Equal(t, journal.TypeVerdict, evs[len(evs)-1].Type, "the journal must end with a verdict")
	// Whatever happened, nothing is left behind.
	require.False(t, l.syn.isActive(), "the synthetic fault was left in place")
	ps, err := l.proxy.Client().Proxies(context.Background())
	require.NoError(t, err)
	require.Empty(t, ps["svc"].Toxics, "a toxic was left on the link")
	require.Empty(t, journal.Outstanding(evs), "the journal shows a fault never removed")
	return res, evs
}

// phaseAt is when the journal says the run entered phase: no later than
// anything the phase timed, such as the method's start.
func phaseAt(t *testing.T, evs []journal.Event, phase string) time.Time {
	t.Helper()
	for _, ev := range evs {
		if ev.Type == journal.TypePhase && ev.Phase == phase {
			return ev.T
		}
	}
	require.Failf(t, "no phase", "the journal has no %s phase", phase)
	return time.Time{}
}

// firstHeld is the start of the first sample of the SLI taken at or
// after from that begins a run of samples in tolerance (ok) held for
// hold, in the journal: a recovery the runner must not have missed. On a
// busy machine a sample of a healthy target can be slow, which moves this
// moment later, never earlier.
func firstHeld(t *testing.T, evs []journal.Event, sli string, from time.Time, hold time.Duration, ok func(journal.Event) bool) time.Time {
	t.Helper()
	var pts []journal.Event
	for _, ev := range evs {
		if ev.Type == journal.TypeSample && ev.SLI == sli && !ev.At.Before(from) {
			pts = append(pts, ev)
		}
	}
	sort.Slice(pts, func(i, j int) bool { return pts[i].At.Before(pts[j].At) })
	for i := range pts {
		for _, later := range pts[i:] {
			if !ok(later) {
				break
			}
			if later.At.Sub(pts[i].At) >= hold {
				return pts[i].At
			}
		}
	}
	require.Failf(t, "no recovery", "SLI %s has no run of samples in tolerance held %s after %s", sli, hold, from)
	return time.Time{}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// fastBanner is the banner SLI's tolerance: a banner within 150 ms.
func fastBanner(ev journal.Event) bool { return !ev.Failed && ev.Value <= 0.15 }

// requireRecoveryBetween checks a measured time to recover ttr, counted
// from the planned end at off into the method, against the true moment
// the target healed, without timing the machine:
//   - not too early: the first sample in tolerance read a fast banner,
//     within 150 ms of its start, so it began at most 150 ms before the
//     target healed, which was at least trueMin after the planned end;
//   - not too late: the first sample taken after the target healed (and
//     after the clock started) that begins a run in tolerance held for
//     hold bounds it from above (a slow sample on a busy machine moves
//     that sample, and the bound, later); the clock started no earlier
//     than the inject phase plus off.
//
// A clock started at the wrong moment, a recovery taken one sample late
// or with its hold added, all fall outside.
func requireRecoveryBetween(t *testing.T, evs []journal.Event, ttr, trueMin, off, hold time.Duration, healed time.Time) {
	t.Helper()
	clock := phaseAt(t, evs, experiments.PhaseInject).Add(off)
	// Samples from the latest moment the clock can have started, the
	// first fault's intent being journaled after it.
	from := healed
	for _, ev := range evs {
		if ev.Type == journal.TypeIntent {
			from = maxTime(from, ev.T.Add(off))
			break
		}
	}
	first := firstHeld(t, evs, "banner", from, hold, fastBanner)
	t.Logf("time to recover: measured %s; target healed %s after the planned end at the latest, true %s at least",
		ttr, healed.Sub(clock).Round(time.Millisecond), trueMin)
	require.GreaterOrEqual(t, ttr, trueMin-150*time.Millisecond, "recovered before the target healed")
	require.LessOrEqual(t, ttr, first.Sub(clock), "a held run in tolerance began at %s, %s after the planned end at the latest",
		first.Format("15:04:05.000"), first.Sub(clock))
}

const banner = `
steady-state:
  - name: banner
    probe: banner
    interval: 50ms
    timeout: 1s
    params: { endpoint: svc, expect: "220" }
    tolerance: { max: 150ms }
`

func TestRunPasses(t *testing.T) {
	l := newLab(t)
	e := l.experiment(t, banner+`
baseline: 300ms
method:
  - fault: gray-failure
    at: 100ms
    for: 500ms
    link: svc
    params: { mode: stall-after, after: "0" }
recovery: { within: 1s, hold: 300ms }
`)
	res, evs := l.run(t, context.Background(), e)
	require.Equal(t, journal.StatusCompleted, res.Status, res.Message)
	require.False(t, res.Deviated)
	require.Len(t, res.Summary.SLIs, 1)
	require.True(t, res.Summary.SLIs[0].Recovered)
	require.Greater(t, res.Summary.SLIs[0].Worst, 0.15, "the stall should have shown in the banner's latency")
	var injected, removed int
	for _, ev := range evs {
		switch ev.Type {
		case journal.TypeInject:
			injected++
		case journal.TypeRemove:
			removed++
		}
	}
	require.Equal(t, 1, injected)
	require.Equal(t, 1, removed)
}

// TestTimeToRecoverOnASyntheticTarget checks the measured time-to-recover
// against a target whose true recovery moment is known: it stays slow for
// exactly 1.2 s after the fault's removal.
func TestTimeToRecoverOnASyntheticTarget(t *testing.T) {
	l := newLab(t)
	e := l.experiment(t, banner+`
baseline: 300ms
method:
  - fault: synthetic
    at: 0s
    for: 500ms
    params: { delay: 400ms, recover-after: 1200ms }
recovery: { within: 3s, hold: 300ms }
`)
	res, evs := l.run(t, context.Background(), e)
	require.Equal(t, journal.StatusCompleted, res.Status, res.Message)
	s := res.Summary.SLIs[0]
	require.True(t, s.Recovered)
	// The truth is 1.2 s after the planned end at the least (the removal
	// starts then, or later on a busy machine); the measure is held to
	// the moment the target healed and to the journal's samples, not to
	// the test's clock.
	requireRecoveryBetween(t, evs, s.TimeToRecover, 1200*time.Millisecond, 500*time.Millisecond, 300*time.Millisecond,
		l.syn.healedAt(t, "s0"))
}

func TestRecoveryOverTheBoundFails(t *testing.T) {
	l := newLab(t)
	e := l.experiment(t, banner+`
baseline: 300ms
method:
  - fault: synthetic
    at: 0s
    for: 300ms
    params: { delay: 400ms, recover-after: 1500ms }
recovery: { within: 500ms, hold: 300ms }
`)
	res, evs := l.run(t, context.Background(), e)
	require.Equal(t, journal.StatusFailed, res.Status, "1.5 s to recover is over the 500 ms bound")
	require.True(t, res.Deviated)
	require.False(t, res.Summary.SLIs[0].Passed)
	failed := failedAssertions(evs)
	require.Equal(t, []string{"recovery: banner"}, failed)
}

// TestRecoveryDuringFaults: a target that heals itself 600 ms into a
// 2-second fault recovers with the fault in place; one that does not,
// fails recovery.during though it recovers once the fault is removed.
func TestRecoveryDuringFaults(t *testing.T) {
	l := newLab(t)
	e := l.experiment(t, banner+`
baseline: 300ms
method:
  - fault: synthetic
    at: 0s
    for: 2s
    params: { delay: 400ms, heal-after: 600ms }
recovery: { within: 1s, hold: 300ms, during: { within: 1200ms, hold: 500ms } }
`)
	res, evs := l.run(t, context.Background(), e)
	require.Equal(t, journal.StatusCompleted, res.Status, res.Message)
	d := res.Summary.SLIs[0].During
	require.NotNil(t, d)
	require.True(t, d.Passed)
	// Counted from the first injection: the target heals 600 ms into it.
	requireRecoveryBetween(t, evs, d.TimeToRecover, 600*time.Millisecond, 0, 500*time.Millisecond, l.syn.healedAt(t, "s0"))

	e = l.experiment(t, banner+`
baseline: 300ms
method:
  - fault: synthetic
    at: 0s
    for: 1500ms
    params: { delay: 400ms }
recovery: { within: 1s, hold: 300ms, during: { within: 800ms, hold: 300ms } }
`)
	res, evs = l.run(t, context.Background(), e)
	require.Equal(t, journal.StatusFailed, res.Status)
	require.True(t, res.Summary.SLIs[0].Passed, "it recovers once the fault is removed")
	require.False(t, res.Summary.SLIs[0].During.Recovered)
	failed := failedAssertions(evs)
	require.Equal(t, []string{"recovery during faults: banner"}, failed)
}

// TestFaultsEndingTogetherAreRemovedTogether: a slow removal does not keep
// another fault due to end at the same time in place.
func TestFaultsEndingTogetherAreRemovedTogether(t *testing.T) {
	l := newLab(t)
	e := l.experiment(t, banner+`
baseline: 300ms
method:
  - fault: synthetic
    at: 0s
    for: 500ms
    params: { delay: 0s, remove-takes: 1500ms }
  - fault: gray-failure
    at: 0s
    for: 500ms
    link: svc
    params: { mode: stall-after, after: "0" }
recovery: { within: 3s, hold: 300ms }
`)
	res, evs := l.run(t, context.Background(), e)
	require.Equal(t, journal.StatusCompleted, res.Status, res.Message)
	removed := map[string]time.Time{}
	for _, ev := range evs {
		if ev.Type == journal.TypeRemove {
			removed[ev.Fault] = ev.T
		}
	}
	require.Len(t, removed, 2)
	require.True(t, removed["gray-failure"].Before(removed["synthetic"]),
		"the quick removal finished first: gray-failure at %s, synthetic at %s", removed["gray-failure"], removed["synthetic"])
}

// TestRecoveryClockStartsAtThePlannedEnd: a fault whose removal takes
// 1.5 s (a load generator draining its messages in flight) and whose
// target heals only then has a time to recover of about 1.5 s, counted
// from the fault's planned end, not about 0 from when its removal finished.
func TestRecoveryClockStartsAtThePlannedEnd(t *testing.T) {
	l := newLab(t)
	e := l.experiment(t, banner+`
baseline: 300ms
method:
  - fault: synthetic
    at: 0s
    for: 500ms
    params: { delay: 400ms, remove-takes: 1500ms }
recovery: { within: 3s, hold: 300ms }
`)
	res, evs := l.run(t, context.Background(), e)
	require.Equal(t, journal.StatusCompleted, res.Status, res.Message)
	s := res.Summary.SLIs[0]
	require.True(t, s.Recovered)
	// Counted from when the removal finished it would read about 0, far
	// under the lower bound.
	requireRecoveryBetween(t, evs, s.TimeToRecover, 1500*time.Millisecond, 500*time.Millisecond, 300*time.Millisecond,
		l.syn.healedAt(t, "s0"))
	require.Equal(t, "method[0] synthetic", res.Summary.RecoveryFrom)
}

// TestRecoveryFromANamedStep: the stack recovers 300 ms after the step
// that hurt it ends, while another step goes on for 1.5 s more. With
// recovery.from naming the first, the time to recover is about 300 ms and
// the bound can be tighter than the second step's remaining time; counted
// from the last step's end it would read 0.
func TestRecoveryFromANamedStep(t *testing.T) {
	l := newLab(t)
	method := `
baseline: 300ms
method:
  - name: load
    fault: synthetic
    at: 0s
    for: 2s
    params: { delay: 0s }
  - name: av-slow
    fault: synthetic
    at: 0s
    for: 500ms
    params: { delay: 400ms, recover-after: 300ms }
`
	e := l.experiment(t, banner+method+"recovery: { within: 1s, hold: 300ms, from: av-slow }\n")
	res, evs := l.run(t, context.Background(), e)
	require.Equal(t, journal.StatusCompleted, res.Status, res.Message)
	s := res.Summary.SLIs[0]
	require.True(t, s.Recovered)
	healed := l.syn.healedAt(t, "s1")
	requireRecoveryBetween(t, evs, s.TimeToRecover, 300*time.Millisecond, 500*time.Millisecond, 300*time.Millisecond, healed)
	require.Equal(t, "step av-slow (method[1] synthetic)", res.Summary.RecoveryFrom)
	require.Greater(t, s.Worst, 0.3, "the slow step shows in the worst value")
	var clock bool
	for _, ev := range evs {
		clock = clock || ev.Type == journal.TypeVerdict && ev.Summary != nil && ev.Summary.RecoveryFrom != ""
	}
	require.True(t, clock, "the verdict names where the clock started")

	e = l.experiment(t, banner+method+"recovery: { within: 1s, hold: 300ms }\n")
	res, evs = l.run(t, context.Background(), e)
	require.Equal(t, journal.StatusCompleted, res.Status, res.Message)
	// Counted from the load's end it had long recovered: the first held
	// run of samples after that end decides (from av-slow's end instead,
	// the held run would begin some 1.5 s before the clock).
	requireRecoveryBetween(t, evs, res.Summary.SLIs[0].TimeToRecover, 0, 2*time.Second, 300*time.Millisecond,
		l.syn.healedAt(t, "s1"))
	require.Equal(t, "step load (method[0] synthetic)", res.Summary.RecoveryFrom)
}

// TestSummaryBaselineIsTheAssertedValue: the summary's baseline is the
// value the baseline assertion judged, and the cause of a failed sample
// reaches the summary.
func TestSummaryBaselineIsTheAssertedValue(t *testing.T) {
	l := newLab(t)
	e := l.experiment(t, banner+`
baseline: 300ms
method:
  - fault: gray-failure
    at: 0s
    for: 400ms
    link: svc
    params: { mode: blackhole }
recovery: { within: 3s, hold: 300ms }
`)
	res, evs := l.run(t, context.Background(), e)
	require.Equal(t, journal.StatusCompleted, res.Status, res.Message)
	var asserted string
	for _, ev := range evs {
		if ev.Type == journal.TypeAssertion && ev.Name == "baseline: banner" {
			asserted = ev.Measured
		}
	}
	s := res.Summary.SLIs[0]
	require.NotEmpty(t, asserted)
	require.Equal(t, asserted, time.Duration(s.Baseline*float64(time.Second)).Round(time.Microsecond).String())
	require.Positive(t, s.FailedSamples, "the black hole fails the banner probe")
	require.Contains(t, s.LastFailure, "banner")
}

// TestJournalHasNoPasswords: a password given as a probe's parameter does
// not reach the journal.
func TestJournalHasNoPasswords(t *testing.T) {
	l := newLab(t)
	e := l.experiment(t, banner+`
  - name: login
    probe: imap-login
    interval: 50ms
    params: { endpoint: svc, user: tester, password: s3cret-pass, measure: success }
    tolerance: { min: 0 }
baseline: 200ms
method:
  - fault: synthetic
    at: 0s
    for: 100ms
recovery: { within: 1s }
`)
	_, evs := l.run(t, context.Background(), e)
	for _, ev := range evs {
		b, err := json.Marshal(ev)
		require.NoError(t, err)
		require.NotContains(t, string(b), "s3cret-pass")
	}
	require.Contains(t, string(evs[0].Experiment), "(redacted)")
	require.Equal(t, "s3cret-pass", e.SteadyState[1].Params["password"], "the experiment itself keeps it")
}

func TestBaselineMustHoldBeforeAnythingIsInjected(t *testing.T) {
	l := newLab(t)
	l.srv.delay.Store(int64(400 * time.Millisecond))
	e := l.experiment(t, banner+`
baseline: 300ms
method:
  - fault: synthetic
    at: 0s
    for: 500ms
recovery: { within: 1s, hold: 100ms }
`)
	res, evs := l.run(t, context.Background(), e)
	require.Equal(t, journal.StatusAborted, res.Status)
	require.Contains(t, res.Message, "the steady state does not hold before any fault")
	for _, ev := range evs {
		require.NotEqual(t, journal.TypeInject, ev.Type, "nothing may be injected when the baseline fails")
	}
}

func TestAbortConditionRollsBackAtOnce(t *testing.T) {
	l := newLab(t)
	e := l.experiment(t, banner+`
baseline: 300ms
method:
  - fault: synthetic
    at: 0s
    for: 1m
    params: { delay: 300ms }
recovery: { within: 1s, hold: 100ms }
safety:
  abort-when: { banner: "> 200ms" }
`)
	start := time.Now()
	res, evs := l.run(t, context.Background(), e)
	require.Equal(t, journal.StatusAborted, res.Status)
	require.Contains(t, res.Message, "abort-when")
	require.Less(t, time.Since(start), 30*time.Second, "the abort did not cut the minute-long fault short")
	var aborts int
	for _, ev := range evs {
		if ev.Type == journal.TypeAbort {
			aborts++
		}
	}
	require.Equal(t, 1, aborts)
}

func TestMaxDurationAborts(t *testing.T) {
	l := newLab(t)
	e := l.experiment(t, banner+`
baseline: 200ms
method:
  - fault: gray-failure
    at: 0s
    for: 1s
    link: svc
    params: { mode: stall-after, after: "0" }
recovery: { within: 20s, hold: 20s }
safety:
  max-duration: 42s
`)
	// Cut the planned time short by editing the parsed limit: the file
	// itself must declare a limit that covers its plan.
	e.Safety.MaxDuration = 700 * time.Millisecond
	res, _ := l.run(t, context.Background(), e)
	require.Equal(t, journal.StatusAborted, res.Status)
	require.Contains(t, res.Message, "max-duration")
}

func TestSignalRollsBack(t *testing.T) {
	l := newLab(t)
	e := l.experiment(t, banner+`
baseline: 200ms
method:
  - fault: gray-failure
    at: 0s
    for: 1m
    link: svc
    params: { mode: blackhole }
recovery: { within: 1s, hold: 100ms }
`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// Cancel once the fault is in place, as a first Ctrl-C would.
		for {
			ps, err := l.proxy.Client().Proxies(context.Background())
			if err == nil && len(ps["svc"].Toxics) > 0 {
				cancel()
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	res, _ := l.run(t, ctx, e)
	require.Equal(t, journal.StatusInterrupted, res.Status)
}

func TestPanickingProbeAbortsAndRollsBack(t *testing.T) {
	l := newLab(t)
	e := l.experiment(t, `
steady-state:
  - name: p
    probe: panicky
    interval: 50ms
    tolerance: { max: 1 }
baseline: 200ms
method:
  - fault: synthetic
    at: 0s
    for: 1m
recovery: { within: 1s, hold: 100ms }
`)
	res, _ := l.run(t, context.Background(), e)
	require.Equal(t, journal.StatusAborted, res.Status)
	require.Contains(t, res.Message, "panicked")
}

func TestProbeThatCannotStartAborts(t *testing.T) {
	l := newLab(t)
	e := l.experiment(t, `
steady-state:
  - name: b
    probe: banner
    params: { endpoint: "127.0.0.1:1" }
    interval: 50ms
    timeout: 200ms
    tolerance: { max: 1s }
baseline: 200ms
method:
  - fault: synthetic
    at: 0s
    for: 1s
recovery: { within: 1s, hold: 100ms }
`)
	res, _ := l.run(t, context.Background(), e)
	require.Equal(t, journal.StatusAborted, res.Status, "a probe failing from the start fails the baseline")
}

// failingRemove is a fault whose removal always fails.
type failingRemove struct{ synthetic }

func (f *failingRemove) Describe(context.Context) (faults.Spec, error) {
	return faults.Spec{Name: "sticky"}, nil
}
func (f *failingRemove) Validate(context.Context, faults.Request) error { return nil }
func (f *failingRemove) Remove(context.Context, faults.Handle) error {
	return fmt.Errorf("the fault's server is gone")
}

func TestRollbackFailureIsReported(t *testing.T) {
	l := newLab(t)
	sticky := &failingRemove{synthetic{srv: startSlowServer(t)}}
	require.NoError(t, l.cat.Faults.Add(context.Background(), sticky))
	e := l.experiment(t, banner+`
baseline: 200ms
method:
  - fault: sticky
    at: 0s
    for: 200ms
recovery: { within: 1s, hold: 100ms }
`)
	var buf bytes.Buffer
	res := experiments.Run(context.Background(), e, experiments.Options{Catalog: l.cat, Journal: journal.NewWriter(&buf, "t")})
	require.True(t, res.RollbackFailed)
	require.ErrorContains(t, res.Err, "may still be in place")
	evs, err := journal.Read(&buf)
	require.NoError(t, err)
	require.Len(t, journal.Outstanding(evs), 1, "recover must find the fault in the journal")
}

// failedAssertions lists the names of a journal's failed assertions.
func failedAssertions(evs []journal.Event) []string {
	var failed []string
	for _, ev := range evs {
		if ev.Type == journal.TypeAssertion && ev.Passed != nil && !*ev.Passed {
			failed = append(failed, ev.Name)
		}
	}
	return failed
}

// halfInject adds a toxic named after its request, then fails: an
// injection that broke halfway.
type halfInject struct{ c *network.Client }

func (f *halfInject) Describe(context.Context) (faults.Spec, error) {
	return faults.Spec{Name: "half"}, nil
}
func (f *halfInject) Validate(context.Context, faults.Request) error { return nil }
func (f *halfInject) Inject(ctx context.Context, req faults.Request) (faults.Handle, error) {
	name := network.ToxicName(req.Owner, req.ID, time.Now().Add(req.TTL), 0)
	if err := f.c.AddToxic(ctx, "svc", network.Toxic{Name: name, Type: network.ToxicBlackhole, Stream: network.Downstream}); err != nil {
		return faults.Handle{}, err
	}
	return faults.Handle{}, fmt.Errorf("broke halfway")
}
func (f *halfInject) Remove(context.Context, faults.Handle) error { return nil }
func (f *halfInject) Status(context.Context, faults.Handle) (faults.Status, error) {
	return faults.Status{}, nil
}

// TestIntentIsJournaledBeforeTheInjection: the journal says what is about
// to be injected before anything is created, and what a failed injection
// left is swept away and journaled as settled.
func TestIntentIsJournaledBeforeTheInjection(t *testing.T) {
	l := newLab(t)
	require.NoError(t, l.cat.Faults.Add(context.Background(), &halfInject{c: l.proxy.Client()}))
	e := l.experiment(t, banner+`
baseline: 300ms
method:
  - fault: half
    at: 0s
    for: 1s
recovery: { within: 1s }
`)
	res, evs := l.run(t, context.Background(), e) // checks that no toxic is left
	require.Equal(t, journal.StatusAborted, res.Status)
	require.Contains(t, res.Message, "broke halfway")
	var types []string
	for _, ev := range evs {
		if ev.Type == journal.TypeIntent || ev.Type == journal.TypeRemove {
			types = append(types, ev.Type)
			require.Equal(t, "s0", ev.Handle.ID)
			require.Equal(t, l.proxy.URL(), ev.Handle.Toxiproxy)
			if ev.Type == journal.TypeRemove {
				require.Empty(t, ev.Err)
				require.Contains(t, ev.Message, "removed the 1 toxics it left")
			}
		}
	}
	require.Equal(t, []string{journal.TypeIntent, journal.TypeRemove}, types)
}
