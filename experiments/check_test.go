package experiments_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/experiments"
	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/internal/exitcode"
)

// checkExperiment builds an experiment for a check on the lab: its method
// may be empty.
func (l *lab) checkExperiment(t *testing.T, body string) *experiments.Experiment {
	t.Helper()
	cat := l.cat
	cat.SteadyStateOnly = true
	src := "version: 1\ntitle: synthetic\n" + l.yaml + body
	e, err := experiments.Parse(context.Background(), "synthetic.yaml", []byte(src), cat)
	require.NoError(t, err, src)
	return e
}

func TestCheckHolds(t *testing.T) {
	l := newLab(t)
	e := l.checkExperiment(t, banner)
	require.Empty(t, e.CheckIgnores())
	var ready faults.Target
	res, err := experiments.Check(context.Background(), e, experiments.CheckOptions{Catalog: l.cat, For: 600 * time.Millisecond,
		Ready: func(t faults.Target) { ready = t }})
	require.NoError(t, err)
	require.NotEmpty(t, ready.Endpoints["svc"], "Ready had the target's endpoints")
	require.Len(t, res.SLIs, 1)
	c := res.SLIs[0]
	require.True(t, c.Held)
	// A sample every 50ms for 600ms: how many depends on the machine's
	// pace, but there are several and every one is judged.
	require.GreaterOrEqual(t, len(c.Values), 3)
	require.Zero(t, c.Failed)
	require.Equal(t, len(c.Values), c.Windows)
	var out bytes.Buffer
	require.NoError(t, res.Write(&out))
	require.Regexp(t, `banner  holds +\d+ samples  min \S+  median \S+  max \S+  bound <= 150ms\n`, out.String())
	require.Contains(t, out.String(), "the steady state holds (sampled ")
}

func TestCheckThatDoesNotHoldFails(t *testing.T) {
	l := newLab(t)
	l.srv.delay.Store(int64(300 * time.Millisecond)) // the bound is 150ms
	e := l.checkExperiment(t, banner)
	res, err := experiments.Check(context.Background(), e, experiments.CheckOptions{Catalog: l.cat, For: 500 * time.Millisecond})
	require.Error(t, err)
	require.Equal(t, exitcode.Failed, exitcode.Of(err))
	require.Contains(t, err.Error(), "the steady state does not hold: banner")
	c := res.SLIs[0]
	require.False(t, c.Held)
	require.NotEmpty(t, c.Values)
	require.Equal(t, c.Windows, c.Out, "every sample was out of tolerance")
	require.GreaterOrEqual(t, c.Values[0], 0.3)
	var out bytes.Buffer
	require.NoError(t, res.Write(&out))
	require.Contains(t, out.String(), "banner  DOES NOT HOLD")
	require.Contains(t, out.String(), "out of tolerance at ")
}

func TestCheckIgnoresTheMethod(t *testing.T) {
	l := newLab(t)
	body := banner + `
method:
  - fault: synthetic
    at: 0s
    for: 5s
    params: { delay: 400ms }
recovery: { within: 1s }
`
	e := l.checkExperiment(t, body)
	require.Equal(t, "check: the method (1 fault), the recovery bound are ignored: check measures the steady state alone, with no fault",
		e.CheckIgnores())
	_, err := experiments.Check(context.Background(), e, experiments.CheckOptions{Catalog: l.cat, For: 300 * time.Millisecond})
	require.NoError(t, err, "the fault would have slowed the banner past its bound")
	require.False(t, l.syn.isActive())
}

func TestEmptyMethodIsForCheckOnly(t *testing.T) {
	l := newLab(t)
	src := "version: 1\ntitle: synthetic\n" + l.yaml + banner + "method: []\n"
	_, err := experiments.Parse(context.Background(), "synthetic.yaml", []byte(src), l.cat)
	require.Error(t, err)
	require.Equal(t, exitcode.Invalid, exitcode.Of(err))
	require.Contains(t, err.Error(), "synthetic.yaml:18:1: method: no fault: a run needs at least one; to measure the steady state alone, use mailchaos check")
	require.NotContains(t, err.Error(), "recovery.within", "with no method there is nothing to recover from")
	l.checkExperiment(t, banner+"method: []\n")
}

func TestCheckStopsOnASignal(t *testing.T) {
	l := newLab(t)
	e := l.checkExperiment(t, banner)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	var res experiments.CheckResult
	var err error
	go func() {
		defer close(done)
		res, err = experiments.Check(ctx, e, experiments.CheckOptions{Catalog: l.cat, For: time.Hour,
			Ready: func(faults.Target) { cancel() }})
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the check did not stop")
	}
	require.Error(t, err)
	require.Equal(t, exitcode.Aborted, exitcode.Of(err))
	require.Contains(t, err.Error(), "interrupted")
	require.Len(t, res.SLIs, 1)
	require.Less(t, res.For, time.Hour)
}

func TestCheckNeedsAnSLIItCanMeasure(t *testing.T) {
	cat := builtinCatalog(t)
	cat.SteadyStateOnly = true
	e, err := experiments.Load(context.Background(), "testdata/check/load-only.yaml", cat)
	require.NoError(t, err)
	_, err = experiments.Check(context.Background(), e, experiments.CheckOptions{Catalog: cat, For: time.Second})
	require.Error(t, err)
	require.Equal(t, exitcode.Invalid, exitcode.Of(err))
	require.Contains(t, err.Error(), "nothing to measure")
}

func TestCheckDurationIsTheBaselineAndAtLeastThirtySeconds(t *testing.T) {
	l := newLab(t)
	require.Equal(t, experiments.MinCheckDuration, l.checkExperiment(t, banner).CheckDuration(),
		"the default baseline (three intervals) is shorter")
	require.Equal(t, 45*time.Second, l.checkExperiment(t, banner+"baseline: 45s\n").CheckDuration())
}
