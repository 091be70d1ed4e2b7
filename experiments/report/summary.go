package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/mailchaos/mailchaos/experiments/journal"
	"github.com/mailchaos/mailchaos/internal/exitcode"
)

// SummarySchema names the version of the [Summary] JSON format. A change
// that removes or retypes a field gets a new version; fields are only ever
// added within one. docs/summary.schema.json is its JSON Schema.
const SummarySchema = "mailchaos.summary/v1"

// Status words: a run's overall status is the meaning of its exit code
// (internal/exitcode), in one word or two. Every renderer (terminal,
// Markdown, JUnit, JSON, HTML) shows this word and no other verdict.
const (
	// StatusPass: exit 0, everything held.
	StatusPass = "PASS"
	// StatusFail: exit 1, the system under test failed.
	StatusFail = "FAIL"
	// StatusAborted: exit 3, a safety condition or a failed steady state
	// stopped the run; every fault was rolled back.
	StatusAborted = "ABORTED"
	// StatusInterrupted: exit 3, a signal stopped the run; every fault was
	// rolled back.
	StatusInterrupted = "INTERRUPTED"
	// StatusError: exit 3 for a run that could not be carried out (the
	// target cannot start, a fault cannot be injected), or exit 2 (the
	// input was invalid).
	StatusError = "ERROR"
	// StatusRollbackFailed: exit 4, a fault may still be in place.
	StatusRollbackFailed = "ROLLBACK FAILED"
	// StatusUnfinished: the journal has no verdict (the run crashed or is
	// still going); there is no exit code.
	StatusUnfinished = "DID NOT FINISH"
)

// Summary is the machine-readable outcome of one or more runs: what `run
// --summary-json` and `report --json` write, and what every table is
// rendered from. Durations are in seconds; times are RFC 3339. A value
// that was not measured is null, never 0.
type Summary struct {
	// Schema is [SummarySchema].
	Schema string `json:"schema"`
	// Status is the gravest run's status word and ExitCode the exit code
	// `mailchaos run` returns for these runs.
	Status   string       `json:"status"`
	ExitCode int          `json:"exit_code"`
	Runs     []RunSummary `json:"runs"`
}

// RunSummary is one run's outcome.
type RunSummary struct {
	ID      string     `json:"id,omitempty"`
	Title   string     `json:"title,omitempty"`
	File    string     `json:"file,omitempty"`
	Started *time.Time `json:"started,omitempty"`
	// Duration of the run, in seconds.
	Duration float64 `json:"duration"`
	// Finished is false for a journal without a verdict.
	Finished bool `json:"finished"`
	// Status is the status word (StatusPass...), ExitCode its exit code
	// (null when the run did not finish), Verdict the journal's status
	// (completed, failed, aborted, interrupted; "" when unfinished).
	Status   string `json:"status"`
	ExitCode *int   `json:"exit_code"`
	Verdict  string `json:"verdict,omitempty"`
	Deviated bool   `json:"deviated"`
	// Reason says, once, why the run stopped or failed; Error is the
	// error behind it when it adds to Reason.
	Reason string `json:"reason,omitempty"`
	Error  string `json:"error,omitempty"`
	// LastPhase is the last phase the run entered.
	LastPhase string `json:"last_phase,omitempty"`
	// SLIs has one entry per SLI that has samples or a verdict figure.
	SLIs []SLIResult `json:"slis"`
	// Recovery is the run's overall recovery; null when the run stopped
	// before it was judged.
	Recovery *RecoveryResult `json:"recovery"`
	// Faults are the method's steps as planned and as they happened.
	Faults []FaultResult `json:"faults"`
	// Invariants are the invariant checks; Failed every failed assertion.
	Invariants []Check `json:"invariants"`
	Failed     []Check `json:"failed_assertions"`
	// Outstanding lists faults that may still be in place.
	Outstanding []Leftover `json:"outstanding"`
}

// SLIResult is one SLI's figures over a run. Every value is in the SLI's
// Unit ("s" for seconds, "ratio" for 0..1, else the probe's unit); Text
// fields are the same values formatted for people.
type SLIResult struct {
	Name      string `json:"name"`
	Tolerance string `json:"tolerance,omitempty"`
	Unit      string `json:"unit,omitempty"`
	// Samples and FailedSamples count the SLI's samples over the run;
	// LastFailure says why the last failed one failed.
	Samples       int    `json:"samples"`
	FailedSamples int    `json:"failed_samples"`
	LastFailure   string `json:"last_failure,omitempty"`
	// Last is the last measured value; null when no sample measured one.
	Last *float64 `json:"last"`
	// Baseline is the value the baseline assertion judged; null when it
	// did not judge this SLI.
	Baseline *Judged `json:"baseline"`
	// Worst is the worst value while the faults were planned to be in
	// place; null when the run stopped before the faults.
	Worst *Worst `json:"worst"`
	// Recovery is the SLI's recovery after the faults, During its
	// recovery with them in place (recovery.during); null when not
	// judged.
	Recovery *SLIRecovery `json:"recovery"`
	During   *SLIRecovery `json:"during,omitempty"`
	// Passed is null when the SLI was never judged.
	Passed *bool `json:"passed"`
}

// Judged is a value an assertion judged.
type Judged struct {
	// Value is null when every sample of the window failed.
	Value *float64 `json:"value"`
	Text  string   `json:"text"`
	// FailedSamples counts the failed samples in the window.
	FailedSamples int  `json:"failed_samples"`
	Passed        bool `json:"passed"`
}

// Worst is an SLI's worst window while the faults were in place.
type Worst struct {
	// Value is the worst measured statistic; null when every window held
	// a failed sample (AllFailed) or none was evaluated.
	Value *float64 `json:"value"`
	Text  string   `json:"text"`
	// Evaluations counts the windows evaluated, Failed those that held a
	// failed sample.
	Evaluations int  `json:"evaluations"`
	Failed      int  `json:"failed"`
	AllFailed   bool `json:"all_failed"`
	// OutOfTolerance is true when Value is beyond the tolerance or a
	// window failed.
	OutOfTolerance bool `json:"out_of_tolerance"`
}

// SLIRecovery is an SLI's time to recover against its bound.
type SLIRecovery struct {
	Recovered bool `json:"recovered"`
	// TimeToRecover in seconds; null when not recovered.
	TimeToRecover *float64 `json:"time_to_recover"`
	// Bound is recovery.within, Hold recovery.hold, in seconds.
	Bound  float64 `json:"bound"`
	Hold   float64 `json:"hold,omitempty"`
	Passed bool    `json:"passed"`
	// OutFor is how long (seconds) the SLI was out of tolerance after the
	// recovery clock started; known for journals of summary version 2.
	OutFor *float64 `json:"out_for,omitempty"`
	Text   string   `json:"text"`
}

// RecoveryResult is the run's overall recovery.
type RecoveryResult struct {
	Recovered     bool     `json:"recovered"`
	TimeToRecover *float64 `json:"time_to_recover"`
	Bound         float64  `json:"bound"`
	// From names the step whose planned end started the recovery clock.
	From   string `json:"from,omitempty"`
	Passed bool   `json:"passed"`
}

// FaultResult is one method step: planned onset and end (from the start
// of the inject phase), and what happened.
type FaultResult struct {
	Step  int    `json:"step"`
	Name  string `json:"name,omitempty"`
	Fault string `json:"fault"`
	// PlannedStart and PlannedEnd are absolute times; null when the
	// method never started.
	PlannedStart *time.Time `json:"planned_start"`
	PlannedEnd   *time.Time `json:"planned_end"`
	// Injected and Removed are when it happened; null when it did not.
	Injected *time.Time `json:"injected"`
	Removed  *time.Time `json:"removed"`
	Handle   string     `json:"handle,omitempty"`
	// RemoveError is the error of a failed removal.
	RemoveError string `json:"remove_error,omitempty"`
}

// Check is an assertion: a hypothesis, bound or invariant.
type Check struct {
	Name string `json:"name"`
	// Passed is null for a check without a result (skipped).
	Passed   *bool  `json:"passed"`
	Measured string `json:"measured,omitempty"`
	Bound    string `json:"bound,omitempty"`
	// Sentence says it for people.
	Sentence string `json:"sentence"`
}

// Leftover is a fault that may still be in place.
type Leftover struct {
	Step        int        `json:"step"`
	Fault       string     `json:"fault"`
	Handle      string     `json:"handle,omitempty"`
	RemoveError string     `json:"remove_error,omitempty"`
	Toxics      string     `json:"toxics,omitempty"`
	Expires     *time.Time `json:"expires,omitempty"`
}

// Summarize builds the summary of every run of the journals (each split
// with [Split]).
func Summarize(journals ...[]journal.Event) Summary {
	rs := splitAll(journals)
	out := Summary{Schema: SummarySchema, Runs: make([]RunSummary, 0, len(rs))}
	var codes []int
	for _, r := range rs {
		rsum := r.summary()
		out.Runs = append(out.Runs, rsum)
		if rsum.ExitCode != nil {
			codes = append(codes, *rsum.ExitCode)
		} else {
			codes = append(codes, int(exitcode.Aborted))
		}
	}
	out.ExitCode, out.Status = gravest(out.Runs, codes)
	return out
}

// gravest is the exit code and status of several runs: the gravest code
// (4, then 2, then 3, then 1, then 0), with the status of the first run
// that has it. A journal without a run (a process killed as it began)
// did not finish: exit 3, never a pass.
func gravest(runs []RunSummary, codes []int) (int, string) {
	if len(runs) == 0 {
		return int(exitcode.Aborted), StatusUnfinished
	}
	rank := func(c int) int {
		switch exitcode.Code(c) {
		case exitcode.RollbackFailed:
			return 5
		case exitcode.Invalid:
			return 4
		case exitcode.Aborted:
			return 3
		case exitcode.Failed:
			return 2
		case exitcode.OK:
			return 1
		}
		return 3
	}
	best := 0
	for i := range codes {
		if rank(codes[i]) > rank(codes[best]) {
			best = i
		}
	}
	return codes[best], runs[best].Status
}

// statusWord is the status word for a verdict.
func statusWord(v *journal.Event) string {
	if v == nil {
		return StatusUnfinished
	}
	switch exitcode.Code(v.ExitCode) {
	case exitcode.OK:
		if v.Status == journal.StatusCompleted && !v.Deviated {
			return StatusPass
		}
		// A journal written before exit codes were journalled (omitted
		// when 0): the status decides.
		switch v.Status {
		case journal.StatusFailed, journal.StatusCompleted:
			return StatusFail
		case journal.StatusInterrupted:
			return StatusInterrupted
		}
		return StatusAborted
	case exitcode.Failed:
		return StatusFail
	case exitcode.Invalid:
		return StatusError
	case exitcode.RollbackFailed:
		return StatusRollbackFailed
	case exitcode.Aborted:
		switch {
		case v.Status == journal.StatusInterrupted:
			return StatusInterrupted
		case v.Err != "":
			return StatusError
		}
		return StatusAborted
	}
	return StatusError
}

// JSON writes the summary of the runs ([Summarize]) as indented JSON, in
// the format docs/summary.schema.json describes.
func JSON(w io.Writer, runs ...[]journal.Event) error {
	b, err := MarshalSummary(Summarize(runs...))
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// MarshalSummary is the summary as indented JSON, ending in a newline.
// Text is not HTML-escaped ("<=" stays "<=").
func MarshalSummary(s Summary) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(s); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// secs is d in seconds, to the microsecond.
func secs(d time.Duration) float64 { return math.Round(d.Seconds()*1e6) / 1e6 }

// secondsPtr is d in seconds, as a pointer.
func secondsPtr(d time.Duration) *float64 {
	v := secs(d)
	return &v
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func floatPtr(v float64) *float64 { return &v }
func boolPtr(v bool) *bool        { return &v }

// reason is the run's reason, said once: the verdict's message, and the
// lines of its error that the message does not already hold (an error
// joined from several says each line once).
func reason(v *journal.Event) (msg, err string) {
	if v == nil {
		return "", ""
	}
	msg = clean(v.Message)
	var rest []string
	seen := map[string]bool{}
	for _, l := range strings.Split(v.Err, "\n") {
		l = clean(l)
		if l == "" || seen[l] || strings.Contains(msg, l) {
			continue
		}
		seen[l] = true
		rest = append(rest, l)
	}
	return msg, strings.Join(rest, "; ")
}

// summary builds one run's summary from its journal.
func (r *run) summary() RunSummary {
	s := RunSummary{
		ID: clean(r.id), Title: clean(r.title), File: clean(r.file), Started: timePtr(r.started),
		Duration: secs(r.duration()), Finished: r.verdict != nil, Status: statusWord(r.verdict),
		LastPhase: clean(r.lastPhase),
		SLIs:      []SLIResult{}, Faults: []FaultResult{}, Invariants: []Check{}, Failed: []Check{}, Outstanding: []Leftover{},
	}
	if v := r.verdict; v != nil {
		code := v.ExitCode
		s.ExitCode, s.Verdict, s.Deviated = &code, clean(v.Status), v.Deviated
		s.Reason, s.Error = reason(v)
	}
	s.SLIs = r.sliResults()
	if sum := r.verdictSummary(); sum != nil && r.recoveryJudged(sum) {
		rec := &RecoveryResult{Recovered: sum.TimeToRecover >= 0, Bound: secs(sum.RecoveryBound),
			From: clean(sum.RecoveryFrom), Passed: r.overallPassed(sum)}
		if rec.Recovered {
			rec.TimeToRecover = secondsPtr(sum.TimeToRecover)
		}
		s.Recovery = rec
	}
	s.Faults = r.faultResults()
	for _, a := range r.assertions {
		c := Check{Name: clean(a.Name), Passed: a.Passed, Measured: clean(a.Measured), Bound: clean(a.Bound), Sentence: sentence(a)}
		if a.invariant() {
			s.Invariants = append(s.Invariants, c)
		}
		if a.failed() {
			s.Failed = append(s.Failed, c)
		}
	}
	for _, o := range r.outstanding {
		s.Outstanding = append(s.Outstanding, Leftover{Step: o.step, Fault: clean(o.handle.Fault), Handle: clean(o.handle.ID),
			RemoveError: clean(o.removeErr), Toxics: toxicsByServer(o.handle), Expires: timePtr(o.handle.Expires)})
	}
	return s
}

// verdictSummary is the verdict's summary; nil without one.
func (r *run) verdictSummary() *journal.Summary {
	if r.verdict == nil {
		return nil
	}
	return r.verdict.Summary
}

// recoveryJudged reports whether the summary's recovery figures mean
// something: the run reached the recovery verdict. Before summary version
// 2 a summary was written with figures only then.
func (r *run) recoveryJudged(sum *journal.Summary) bool {
	if sum.Version >= 2 {
		return sum.RecoveryJudged
	}
	return len(sum.SLIs) > 0
}

// sliResults are the SLIs of the verdict's summary, then those that only
// have samples (a run that stopped early, in an old journal, or one
// without a verdict).
func (r *run) sliResults() []SLIResult {
	out := []SLIResult{}
	seen := map[string]bool{}
	sum := r.verdictSummary()
	if sum != nil {
		judged := r.recoveryJudged(sum)
		for _, ss := range sum.SLIs {
			seen[ss.Name] = true
			out = append(out, r.sliFromSummary(ss, sum.Version, judged, sum.RecoveryBound))
		}
	}
	for _, smp := range r.samples {
		if seen[smp.name] {
			continue
		}
		out = append(out, r.sliFromSamples(smp))
	}
	return out
}

// info is what the journal says of an SLI before any verdict.
func (r *run) info(name string) journal.SLIInfo {
	for _, i := range r.sliInfo {
		if i.Name == name {
			return i
		}
	}
	return journal.SLIInfo{Name: name}
}

// samplesOf is the sample counts of an SLI.
func (r *run) samplesOf(name string) (sliSamples, bool) {
	for _, s := range r.samples {
		if s.name == name {
			return s, true
		}
	}
	return sliSamples{name: name}, false
}

// baselineAssertion is the baseline assertion of an SLI.
func (r *run) baselineAssertion(name string) (assertion, bool) {
	for _, a := range r.assertions {
		if a.kind == "baseline" && a.subject == name {
			return a, true
		}
	}
	return assertion{}, false
}

// sliFromSamples is an SLI known only from its samples and assertions.
func (r *run) sliFromSamples(smp sliSamples) SLIResult {
	inf := r.info(smp.name)
	out := SLIResult{Name: clean(smp.name), Tolerance: clean(inf.Tolerance), Unit: clean(inf.Unit),
		Samples: smp.count, FailedSamples: smp.failed, LastFailure: clean(smp.lastErr)}
	if smp.measured {
		out.Last = floatPtr(smp.lastValue)
	}
	if a, ok := r.baselineAssertion(smp.name); ok && !a.skipped() {
		out.Baseline = &Judged{Text: clean(a.Measured), Passed: a.passed()}
		if out.Tolerance == "" {
			out.Tolerance = clean(a.Bound)
		}
		if !a.passed() {
			out.Passed = boolPtr(false)
		}
	}
	return out
}

// sliFromSummary is an SLI of the verdict's summary, written with summary
// version version; judged says whether its recovery was judged.
func (r *run) sliFromSummary(ss journal.SLISummary, version int, judged bool, bound time.Duration) SLIResult {
	unit := ss.Unit
	if unit == "" {
		unit = r.info(ss.Name).Unit
	}
	out := SLIResult{Name: clean(ss.Name), Tolerance: clean(ss.Tolerance), Unit: clean(unit),
		FailedSamples: ss.FailedSamples, LastFailure: clean(ss.LastFailure)}
	smp, hasSamples := r.samplesOf(ss.Name)
	lastFailed := ss.LastFailed
	if version >= 2 {
		out.Samples = ss.Samples
		if ss.LastMeasured {
			out.Last = floatPtr(ss.Last)
		}
		if ss.BaselineJudged {
			b := &Judged{FailedSamples: ss.BaselineFailed, Passed: ss.BaselinePassed}
			if ss.BaselineMeasured {
				b.Value = floatPtr(ss.Baseline)
			}
			b.Text = judgedText(b, unit)
			out.Baseline = b
		}
		if ss.Evaluations > 0 {
			w := &Worst{Evaluations: ss.Evaluations, Failed: ss.Failures, OutOfTolerance: ss.WorstOut || ss.Failures > 0}
			if ss.WorstMeasured {
				w.Value = floatPtr(ss.Worst)
			}
			w.AllFailed = w.Value == nil && ss.Failures > 0
			w.Text = worstText(w, unit)
			out.Worst = w
		}
	} else {
		// An old journal: what it holds, read the way it was meant.
		if hasSamples {
			out.Samples = smp.count
			if smp.measured {
				out.Last = floatPtr(smp.lastValue)
			}
			lastFailed = !smp.lastOK
		}
		if !ss.NoBaseline && judged {
			b := &Judged{Value: floatPtr(ss.Baseline), Passed: true}
			if a, ok := r.baselineAssertion(ss.Name); ok {
				b.Passed = a.passed()
			}
			b.Text = judgedText(b, unit)
			out.Baseline = b
		}
		if judged {
			w := &Worst{Failed: ss.Failures, OutOfTolerance: ss.Failures > 0 || !ss.Passed}
			if !(ss.Worst == 0 && ss.Failures > 0) {
				w.Value = floatPtr(ss.Worst)
			}
			w.AllFailed = w.Value == nil
			w.Text = worstText(w, unit)
			out.Worst = w
		}
	}
	if judged {
		rec := &SLIRecovery{Recovered: ss.Recovered && ss.TimeToRecover >= 0, Bound: secs(bound),
			Hold: secs(ss.Hold), Passed: ss.Passed}
		if rec.Recovered {
			rec.TimeToRecover = secondsPtr(ss.TimeToRecover)
		}
		if version >= 2 && !rec.Recovered {
			rec.OutFor = secondsPtr(ss.OutFor)
		}
		rec.Text = recoveryText(rec, out, unit, lastFailed)
		out.Recovery = rec
		if d := ss.During; d != nil {
			dr := &SLIRecovery{Recovered: d.Recovered && d.TimeToRecover >= 0, Bound: secs(d.Bound), Passed: d.Passed}
			if dr.Recovered {
				dr.TimeToRecover = secondsPtr(d.TimeToRecover)
				dr.Text = human(d.TimeToRecover)
			} else {
				dr.Text = "not recovered while the faults were in place"
			}
			out.During = dr
		}
		out.Passed = boolPtr(ss.Passed && (ss.During == nil || ss.During.Passed))
	} else if out.Baseline != nil && !out.Baseline.Passed {
		out.Passed = boolPtr(false)
	}
	return out
}

// judgedText is a baseline value for people: "700ms", "all 4 failed",
// "700ms (1 failed)".
func judgedText(b *Judged, unit string) string {
	switch {
	case b.Value == nil && b.FailedSamples > 0:
		return "all " + itoa(b.FailedSamples) + " failed"
	case b.Value == nil:
		return "no sample"
	case b.FailedSamples > 0:
		return value(*b.Value, unit) + " (" + itoa(b.FailedSamples) + " failed)"
	}
	return value(*b.Value, unit)
}

// worstText is the worst value for people: "2.7s (out)", "all 15
// failed", "5.8ms (out; 80 of 85 failed)".
func worstText(w *Worst, unit string) string {
	if w.Value == nil {
		if w.Failed > 0 {
			return "all " + itoa(w.Failed) + " failed"
		}
		return "no sample"
	}
	s := value(*w.Value, unit)
	var notes []string
	if w.OutOfTolerance {
		notes = append(notes, "out")
	}
	if w.Failed > 0 {
		if w.Evaluations > 0 {
			notes = append(notes, itoa(w.Failed)+" of "+itoa(w.Evaluations)+" failed")
		} else {
			notes = append(notes, itoa(w.Failed)+" failed")
		}
	}
	if len(notes) > 0 {
		s += " (" + strings.Join(notes, "; ") + ")"
	}
	return s
}

// recoveryText is a time to recover for people: "8.5s", "not recovered
// (last 2.7s, out 12s)".
func recoveryText(rec *SLIRecovery, sli SLIResult, unit string, lastFailed bool) string {
	if rec.Recovered {
		return human(time.Duration(*rec.TimeToRecover * float64(time.Second)))
	}
	var notes []string
	switch {
	case lastFailed:
		notes = append(notes, "last sample failed")
	case sli.Last != nil:
		notes = append(notes, "last "+value(*sli.Last, unit))
	}
	if rec.OutFor != nil && *rec.OutFor > 0 {
		notes = append(notes, "out "+human(time.Duration(*rec.OutFor*float64(time.Second))))
	}
	if len(notes) == 0 {
		return "not recovered"
	}
	return "not recovered (" + strings.Join(notes, ", ") + ")"
}

// faultResults are the method's steps, planned and actual.
func (r *run) faultResults() []FaultResult {
	var steps []FaultResult
	byStep := map[int]int{}
	for i, st := range r.method {
		f := FaultResult{Step: i, Name: clean(st.Name), Fault: clean(st.Fault)}
		if !r.injectStart.IsZero() {
			f.PlannedStart = timePtr(r.injectStart.Add(time.Duration(st.At)))
			f.PlannedEnd = timePtr(r.injectStart.Add(time.Duration(st.At + st.For)))
		}
		byStep[i] = len(steps)
		steps = append(steps, f)
	}
	for _, e := range r.faults {
		j, ok := byStep[e.Step]
		if !ok {
			byStep[e.Step] = len(steps)
			j = len(steps)
			steps = append(steps, FaultResult{Step: e.Step, Fault: clean(faultName(e))})
		}
		f := &steps[j]
		if e.Handle != nil && f.Handle == "" {
			f.Handle = clean(e.Handle.ID)
		}
		switch {
		case e.Type == journal.TypeInject && e.Err == "":
			f.Injected = timePtr(e.T)
		case e.Type == journal.TypeRemove && e.Err != "":
			f.RemoveError = clean(e.Err)
		case e.Type == journal.TypeRemove:
			f.Removed, f.RemoveError = timePtr(e.T), ""
		}
	}
	if steps == nil {
		return []FaultResult{}
	}
	return steps
}

// sentence says an assertion for people, by its kind, with its message.
func sentence(a assertion) string {
	s := claim(a)
	if a.Message != "" {
		s += ": " + clean(a.Message)
	}
	return s
}

// claim is an assertion's sentence without its message: "delivery-p99
// recovered in 1m15s, too late (bound: within 1m, held 5s)".
func claim(a assertion) string {
	subj, m, b := clean(a.subject), clean(a.Measured), clean(a.Bound)
	var s string
	switch {
	case a.kind == "baseline" && m != "":
		where := "within"
		if a.failed() {
			where = "outside"
		}
		s = subj + " was " + m + " before any fault"
		if b != "" {
			s += ", " + where + " the tolerance " + b
		}
	case strings.HasPrefix(a.kind, "recovery") && m != "":
		during := ""
		if a.kind != "recovery" {
			during = " while the faults were in place"
		}
		switch {
		case strings.HasPrefix(m, "did not recover"):
			s = subj + " did not recover" + during
		case a.failed():
			s = subj + " recovered" + during + " in " + m + ", too late"
		default:
			s = subj + " recovered" + during + " in " + m
		}
		if b != "" {
			s += " (bound: " + b + ")"
		}
	default:
		s = clean(a.Name)
		if m != "" {
			s += ": " + m
		}
		if b != "" {
			s += " (bound " + b + ")"
		}
	}
	return s
}

func itoa(n int) string { return strconv.Itoa(n) }
