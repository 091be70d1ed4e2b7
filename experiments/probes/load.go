package probes

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/loadsurge/loadfig"
)

// KindLoad is the load probe's name.
const KindLoad = "load"

// What the load probe reports: rates in items per second, shares from 0
// to 1, latencies in seconds.
const (
	// LoadAcceptedRate is the rate of messages accepted (IMAP: sessions
	// that succeeded), per second.
	LoadAcceptedRate = "accepted-rate"
	// LoadOfferedRate is the rate of messages (sessions) the schedule made
	// due, per second.
	LoadOfferedRate = "offered-rate"
	// LoadTempfail, LoadRejected, LoadConnError, LoadTimeout, LoadCut and
	// LoadUnsent are the shares of the messages (sessions) settled in the
	// window that were refused with 4xx, refused with 5xx, failed on
	// their connection, timed out, were cut off at the load's hard end,
	// or were never sent.
	LoadTempfail  = "tempfail"
	LoadRejected  = "rejected"
	LoadConnError = "conn-error"
	LoadTimeout   = "timeout"
	LoadCut       = "cut"
	LoadUnsent    = "unsent"
	// LoadP50 and LoadP99 are percentiles of the latency of the messages
	// accepted (sessions that succeeded) in the window, from each one's
	// scheduled time, in seconds.
	LoadP50 = "p50"
	LoadP99 = "p99"
)

// LoadReader reads the experiment's own load-surge steps while they run.
type LoadReader interface {
	// LoadStatus returns the live Status of the load-surge method step
	// named step (with step "", of the method's only load-surge step):
	// its Figures are those of package loadfig. running is false while
	// the step is not injected: before it starts and once it was
	// removed. err is set when the step is unknown or its Status could
	// not be read. LoadStatus returns by ctx's deadline and is safe for
	// concurrent use.
	LoadStatus(ctx context.Context, step string) (st faults.Status, running bool, err error)
}

// Stepped is implemented by probes that measure one of the experiment's
// own method steps rather than the target alone (the load probe reads a
// load-surge step): they have no value before the step is injected, nor
// after it ended, so the steady state is not judged on them before
// anything is injected. Step returns the step's name ("": the method's
// only load-surge step).
type Stepped interface {
	Step() string
}

// LoadKind is the load probe: it reads a load-surge step of the running
// experiment (parameter step) live, and reports what that load saw over the
// last `over` (default 5 s): its accepted or offered rate, the share of an
// outcome, or a latency percentile (parameter measure). It sends nothing
// itself: it is the sender's side of the load, as an MTA delivering to the
// target would see it. The load must be the experiment's own: the probe
// needs [Config.Loads].
//
// A sample needs a full window: before the step is injected, during the
// first `over` of the load, once its schedule has stopped making messages
// due (the grace for the last replies) and after it was removed, samples
// are skipped (no value), not failed. Shares are of the messages settled
// in the window (every outcome, unsent ones included); when none was, the
// sample is skipped too. A percentile over a window in which nothing was
// accepted although messages were due or settled is a failed sample: no
// message got through.
//
// Rates are over the window, computed from cumulative counts, so a sample
// interval shorter than `over` gives overlapping windows; a tolerance on
// this probe usually needs no `over` of its own.
func LoadKind() Kind {
	measures := []string{LoadAcceptedRate, LoadOfferedRate, LoadTempfail, LoadRejected, LoadConnError, LoadTimeout,
		LoadCut, LoadUnsent, LoadP50, LoadP99}
	k := Kind{
		Name:    KindLoad,
		Summary: "what the experiment's own load-surge step sees over a window: accepted or offered rate, outcome shares, latency percentiles",
		Unit:    "/s",
		Params: []faults.Param{
			{Name: "step", Type: faults.TypeString,
				Doc: "the load-surge method step to read, by its name (default: the method's only load-surge step)"},
			{Name: "measure", Type: faults.TypeEnum, Default: LoadAcceptedRate, Enum: measures,
				Doc: "accepted-rate, offered-rate (per second); tempfail, rejected, conn-error, timeout, cut, unsent (shares 0..1 of the messages settled in the window); p50, p99 (seconds from schedule to accepted)"},
			{Name: "over", Type: faults.TypeDuration, Default: "5s", Min: "100ms", Max: "1h", Unit: "duration",
				Doc: "the window each sample covers, ending at the sample"},
		},
	}
	k.New = func(cfg Config) (Probe, error) {
		v, err := checkParams(k, cfg)
		if err != nil {
			return nil, err
		}
		if cfg.Loads == nil {
			return nil, errors.New("load: this probe reads a load-surge step of the experiment it is part of, and there is none here")
		}
		return &loadProbe{loads: cfg.Loads, step: v.String("step"), measure: v.String("measure"), over: v.Duration("over")}, nil
	}
	return k
}

// loadProbe reads a load step's figures and keeps the recent ones, to
// have the start of each window. Measure is safe for concurrent use.
type loadProbe struct {
	loads   LoadReader
	step    string
	measure string
	over    time.Duration

	mu      sync.Mutex
	history []loadfig.Figures // recent snapshots, by increasing elapsed_s
}

var (
	_ Probe   = (*loadProbe)(nil)
	_ Stepped = (*loadProbe)(nil)
	_ Uniter  = (*loadProbe)(nil)
)

// Measure reads the step's figures once and returns the measure over the
// window ending now.
func (p *loadProbe) Measure(ctx context.Context) Sample {
	start := time.Now()
	st, running, err := p.loads.LoadStatus(ctx, p.step)
	if err != nil {
		return failed(start, fmt.Errorf("load %s: %w", p.stepName(), err))
	}
	if !running || !st.Active || st.Figures[loadfig.Scheduling] == 0 {
		return Sample{At: start, Skip: true}
	}
	cur := loadfig.Figures(st.Figures)
	base, ok := p.window(cur)
	if !ok {
		return Sample{At: start, Skip: true} // not a full window yet
	}
	w := loadfig.Window(base, cur)
	if w.Seconds <= 0 {
		return Sample{At: start, Skip: true}
	}
	share := func(v float64) Sample {
		if w.Ended == 0 {
			return Sample{At: start, Skip: true}
		}
		return Sample{At: start, Value: v}
	}
	switch p.measure {
	case LoadAcceptedRate:
		return Sample{At: start, Value: w.AcceptedRate}
	case LoadOfferedRate:
		return Sample{At: start, Value: w.OfferedRate}
	case LoadTempfail:
		return share(w.Tempfail)
	case LoadRejected:
		return share(w.Rejected)
	case LoadConnError:
		return share(w.ConnError)
	case LoadTimeout:
		return share(w.Timeout)
	case LoadCut:
		return share(w.Cut)
	case LoadUnsent:
		return share(w.Unsent)
	}
	q := 0.5
	if p.measure == LoadP99 {
		q = 0.99
	}
	d, ok := w.Quantile(q)
	switch {
	case ok:
		return Sample{At: start, Value: d.Seconds()}
	case w.Offered == 0 && w.Ended == 0:
		return Sample{At: start, Skip: true} // nothing was due
	}
	return failed(start, fmt.Errorf("load %s: nothing accepted in the last %s (%.0f due, %.0f settled)",
		p.stepName(), roundDuration(time.Duration(w.Seconds*float64(time.Second))), w.Offered, w.Ended))
}

// window records cur and returns the snapshot the window ending at cur
// starts from: the latest one at least `over` older (nil, the start of
// the load, when there is none yet). ok is false while the load is younger
// than `over`.
func (p *loadProbe) window(cur loadfig.Figures) (loadfig.Figures, bool) {
	now := cur[loadfig.Elapsed]
	from := now - p.over.Seconds()
	p.mu.Lock()
	defer p.mu.Unlock()
	// Samples overlap, so snapshots may come out of order.
	i := sort.Search(len(p.history), func(i int) bool { return p.history[i][loadfig.Elapsed] > now })
	p.history = append(p.history, nil)
	copy(p.history[i+1:], p.history[i:])
	p.history[i] = cur
	if from < 0 {
		return nil, false
	}
	var base loadfig.Figures
	n := sort.Search(len(p.history), func(i int) bool { return p.history[i][loadfig.Elapsed] > from })
	if n > 0 {
		base = p.history[n-1]
		// Older snapshots can no longer start a window.
		p.history = append(p.history[:0], p.history[n-1:]...)
	}
	return base, true
}

// stepName names the step for messages.
func (p *loadProbe) stepName() string {
	if p.step == "" {
		return "step (the only load-surge one)"
	}
	return "step " + p.step
}

// Step returns the method step the probe reads.
func (p *loadProbe) Step() string { return p.step }

// Unit is "/s" for the rates, "ratio" for the shares and "s" for the
// percentiles.
func (p *loadProbe) Unit() string {
	switch p.measure {
	case LoadAcceptedRate, LoadOfferedRate:
		return "/s"
	case LoadP50, LoadP99:
		return "s"
	}
	return "ratio"
}

// Close does nothing: the probe holds no connection.
func (p *loadProbe) Close() error { return nil }
