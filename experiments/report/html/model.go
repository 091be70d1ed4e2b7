package htmlreport

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mailchaos/mailchaos/experiments/journal"
	"github.com/mailchaos/mailchaos/experiments/report"
)

// maxSamples bounds the samples of one SLI, and the windows of one load,
// that are drawn; the rest of a very long run is left out of its chart
// (the chart says so). A variable so that tests can make it small.
var maxSamples = 20000

// maxSteps bounds the method steps of a run whose journal holds no plan:
// a step index past it, as one past the plan's length, is not drawn.
const maxSteps = 1024

// run is one run's journal, sorted into what the page shows.
type run struct {
	id, title, file string
	start, end      time.Time // the run-start's time and the latest event's
	methodStart     time.Time // the inject phase's start, zero before it
	spec            expSpec
	slis            []*sli
	steps           []*step
	phases          []mark
	aborts          []journal.Event
	// loads are what each load-surge step did, window by window, in
	// step order (journal.TypeLoad); empty in journals written before
	// runs journaled them.
	loads []*loadStep
	// facts is the run's summary (report.Summarize): every verdict,
	// status, reason and figure the page states comes from there.
	facts report.RunSummary
}

// mark is a named instant.
type mark struct {
	name string
	t    time.Time
}

// sli is one SLI: its specification, its samples and its figures in the
// run's summary.
type sli struct {
	name, probe, measure, unit string
	tol                        tolSpec
	samples                    []journal.Event
	dropped                    int
	res                        *report.SLIResult
}

// loadStep is what one load-surge step did, window by window.
type loadStep struct {
	step    int
	windows []loadWindow // in the order they ended
	dropped int
}

// loadWindow is one window of a load: its figures, and when it ended.
type loadWindow struct {
	at time.Time
	journal.LoadWindow
}

// step is one method step: its plan and what happened to it.
type step struct {
	index             int
	name, fault, link string
	at, dur           time.Duration
	planned           bool // the plan is known (from the run-start)
	injected, removed time.Time
	onset, detail     string
	err               string
}

// expSpec is the part of the journaled experiment the page draws.
type expSpec struct {
	SteadyState []struct {
		Name      string            `json:"name"`
		Probe     string            `json:"probe"`
		Params    map[string]string `json:"params"`
		Tolerance tolSpec           `json:"tolerance"`
	} `json:"steady-state"`
	Method []struct {
		Name  string        `json:"name"`
		Fault string        `json:"fault"`
		At    time.Duration `json:"at"`
		For   time.Duration `json:"for"`
		Link  string        `json:"link"`
		Links []string      `json:"links"`
	} `json:"method"`
	Recovery struct {
		Within time.Duration `json:"within"`
		Hold   time.Duration `json:"hold"`
		From   string        `json:"from"`
	} `json:"recovery"`
}

// tolSpec is an SLI's tolerance.
type tolSpec struct {
	Max   *number       `json:"max"`
	Min   *number       `json:"min"`
	Range []number      `json:"range"`
	Over  time.Duration `json:"over"`
	Stat  string        `json:"stat"`
}

// bounds returns the tolerance's lower and upper limits, each when set.
func (t tolSpec) bounds() (lo, hi *float64) {
	if t.Min != nil {
		v := float64(*t.Min)
		lo = &v
	}
	if t.Max != nil {
		v := float64(*t.Max)
		hi = &v
	}
	if len(t.Range) == 2 {
		a, b := float64(t.Range[0]), float64(t.Range[1])
		lo, hi = &a, &b
	}
	return lo, hi
}

// number is a tolerance quantity, journaled as a number or a string.
type number float64

// UnmarshalJSON reads 2, "2" or "2.5".
func (n *number) UnmarshalJSON(b []byte) error {
	b = bytes.Trim(b, `"`)
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("quantity %q: %w", b, err)
	}
	*n = number(f)
	return nil
}

// parseRuns sorts each journal's runs into what the page shows.
func parseRuns(runs [][]journal.Event) []*run {
	out := make([]*run, 0, len(runs))
	for _, evs := range runs {
		if len(evs) > 0 {
			out = append(out, parse(evs))
		}
	}
	return out
}

func parse(evs []journal.Event) *run {
	r := &run{id: evs[0].Run, start: evs[0].T}
	byName := map[string]*sli{}
	sliOf := func(name string) *sli {
		if s, ok := byName[name]; ok {
			return s
		}
		s := &sli{name: name}
		byName[name] = s
		r.slis = append(r.slis, s)
		return s
	}
	// stepOf is step i, nil for an index outside the plan (or past
	// maxSteps without one): the journal is not trusted to name it.
	stepOf := func(i int) *step {
		if !r.stepInRange(i) {
			return nil
		}
		for len(r.steps) <= i {
			r.steps = append(r.steps, &step{index: len(r.steps)})
		}
		return r.steps[i]
	}
	for _, e := range evs {
		if e.T.After(r.end) {
			r.end = e.T
		}
		switch e.Type {
		case journal.TypeRunStart:
			r.title, r.file, r.start = e.Title, e.File, e.T
			if e.Run != "" {
				r.id = e.Run
			}
			// A journal from an older or foreign writer may hold less:
			// the page then draws what the events say.
			_ = json.Unmarshal(e.Experiment, &r.spec)
			for _, ss := range r.spec.SteadyState {
				s := sliOf(ss.Name)
				s.probe, s.tol = ss.Probe, ss.Tolerance
				s.measure = ss.Params["measure"]
			}
			for j, ms := range r.spec.Method {
				st := stepOf(j)
				st.name, st.fault, st.at, st.dur, st.planned = ms.Name, ms.Fault, ms.At, ms.For, true
				st.link = strings.Join(append([]string{ms.Link}, ms.Links...), " ")
			}
		case journal.TypePhase:
			r.phases = append(r.phases, mark{e.Phase, e.T})
			if e.Phase == "inject" && r.methodStart.IsZero() {
				r.methodStart = e.T
			}
		case journal.TypeSample:
			s := sliOf(e.SLI)
			if len(s.samples) >= maxSamples {
				s.dropped++
				continue
			}
			s.samples = append(s.samples, e)
		case journal.TypeInject:
			st := stepOf(e.Step)
			if st == nil {
				continue
			}
			st.fault, st.injected, st.onset = e.Fault, e.T, e.Message
			if e.Handle != nil && !e.Handle.Injected.IsZero() {
				st.injected = e.Handle.Injected
			}
		case journal.TypeRemove:
			st := stepOf(e.Step)
			if st == nil {
				continue
			}
			if st.fault == "" {
				st.fault = e.Fault
			}
			st.removed, st.detail, st.err = e.T, e.Message, e.Err
		case journal.TypeAbort:
			r.aborts = append(r.aborts, e)
		case journal.TypeLoad:
			if e.Load == nil || !r.stepInRange(e.Step) {
				continue
			}
			l := r.loadOf(e.Step)
			if len(l.windows) >= maxSamples {
				l.dropped++
				continue
			}
			at := e.At
			if at.IsZero() {
				at = e.T
			}
			l.windows = append(l.windows, loadWindow{at, *e.Load})
		}
	}
	for _, l := range r.loads {
		sort.SliceStable(l.windows, func(i, j int) bool { return l.windows[i].at.Before(l.windows[j].at) })
	}
	// The figures: one summary, the one every other report reads.
	if sum := report.Summarize(evs); len(sum.Runs) > 0 {
		r.facts = sum.Runs[0]
	}
	for i := range r.facts.SLIs {
		res := &r.facts.SLIs[i]
		s := sliOf(res.Name)
		s.res, s.unit = res, res.Unit
	}
	for _, s := range r.slis {
		if s.unit == "" {
			s.unit = guessUnit(s.probe, s.measure)
		}
		// Samples land in the journal as they finish; draw them in the
		// order they were taken.
		sort.SliceStable(s.samples, func(i, j int) bool { return s.samples[i].At.Before(s.samples[j].At) })
	}
	return r
}

// stepInRange says whether i can be a step of the run: 0 <= i < the
// plan's length, or maxSteps when the journal holds no plan.
func (r *run) stepInRange(i int) bool {
	n := len(r.spec.Method)
	if n == 0 {
		n = maxSteps
	}
	return i >= 0 && i < n
}

// loadOf is the load of step i, added in step order when new.
func (r *run) loadOf(i int) *loadStep {
	for _, l := range r.loads {
		if l.step == i {
			return l
		}
	}
	l := &loadStep{step: i}
	r.loads = append(r.loads, l)
	sort.SliceStable(r.loads, func(a, b int) bool { return r.loads[a].step < r.loads[b].step })
	return l
}

// guessUnit is an SLI's unit when the summary does not say it.
func guessUnit(probe, measure string) string {
	switch probe {
	case "smtp-canary", "imap-login", "smtp-transaction", "tcp":
		return "s"
	case "load":
		switch measure {
		case "", "accepted-rate", "offered-rate":
			return "/s"
		case "p50", "p99":
			return "s"
		}
	}
	return ""
}

// recoveryStart is when the recovery clock started: the planned end of the
// step recovery.from names, else of the last step; false before the
// method started.
func (r *run) recoveryStart() (time.Time, bool) {
	if r.methodStart.IsZero() || len(r.spec.Method) == 0 {
		return time.Time{}, false
	}
	var end time.Duration
	for _, m := range r.spec.Method {
		end = max(end, m.At+m.For)
	}
	for _, m := range r.spec.Method {
		if r.spec.Recovery.From != "" && m.Name == r.spec.Recovery.From {
			end = m.At + m.For
			break
		}
	}
	return r.methodStart.Add(end), true
}

// axisEnd is where the charts' time axis ends: the latest event, or the
// recovery bound when that is later.
func (r *run) axisEnd() time.Time {
	end := r.end
	if rs, ok := r.recoveryStart(); ok {
		if b := rs.Add(r.spec.Recovery.Within); b.After(end) {
			end = b
		}
	}
	return end
}

// baseline is the value the baseline assertion judged, when it measured
// one.
func (s *sli) baseline() (float64, bool) {
	if s.res == nil || s.res.Baseline == nil || s.res.Baseline.Value == nil {
		return 0, false
	}
	return *s.res.Baseline.Value, true
}

// loadSLIs returns the SLIs read from the experiment's load, by kind:
// rates (offered, accepted) and latencies (p50, p99).
func (r *run) loadSLIs() (rates, latencies []*sli) {
	for _, s := range r.slis {
		if s.probe != "load" {
			continue
		}
		switch s.measure {
		case "", "accepted-rate", "offered-rate":
			rates = append(rates, s)
		case "p50", "p99":
			latencies = append(latencies, s)
		}
	}
	return rates, latencies
}
