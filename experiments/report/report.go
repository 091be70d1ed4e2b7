// Package report renders experiment runs from their journals: a plain-text
// summary for a terminal ([Terminal]), JUnit XML for CI test reporters
// ([JUnit]) and Markdown for a CI step summary ([Markdown]).
//
// Every renderer takes one or more journals. Each argument is passed
// through [Split] first, so a journal that holds several runs renders as
// several. A journal cut short by a crash (no verdict) is rendered as far
// as it goes and says that the run did not finish; faults it shows as
// injected and never removed are reported as possibly still in place.
//
// The renderers only read the events and write to w; they keep no state
// and are safe to call concurrently on different writers.
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mailchaos/mailchaos/experiments/journal"
	"github.com/mailchaos/mailchaos/faults"
)

// Split splits a journal holding several runs into one slice per run, in
// the order the runs start. A run-start event opens a new run; an event
// carrying a Run id goes to the latest run with that id (so runs whose
// events interleave are still told apart); an event without one goes to
// the run before it. Events keep their order within a run. The events are
// copied and events is not modified. Split returns nil for an empty
// journal.
func Split(events []journal.Event) [][]journal.Event {
	var runs [][]journal.Event
	var ids []string         // ids[i] is runs[i]'s Run id, "" while unknown
	byID := map[string]int{} // latest run with each id
	open := func(id string) {
		runs = append(runs, nil)
		ids = append(ids, id)
		if id != "" {
			byID[id] = len(runs) - 1
		}
	}
	for _, e := range events {
		switch {
		case e.Type == journal.TypeRunStart:
			open(e.Run)
		case e.Run != "":
			if i, ok := byID[e.Run]; ok {
				runs[i] = append(runs[i], e)
				continue
			}
			if n := len(runs); n > 0 && ids[n-1] == "" {
				// The run before it had no id yet: this is its id.
				ids[n-1] = e.Run
				byID[e.Run] = n - 1
			} else {
				open(e.Run)
			}
		case len(runs) == 0:
			open("")
		}
		runs[len(runs)-1] = append(runs[len(runs)-1], e)
	}
	return runs
}

// splitAll splits every journal given to a renderer into runs.
func splitAll(journals [][]journal.Event) []*run {
	var out []*run
	for _, evs := range journals {
		for _, r := range Split(evs) {
			out = append(out, parse(r))
		}
	}
	return out
}

// run is one run's journal, sorted into what the renderers show.
type run struct {
	events  []journal.Event
	id      string
	title   string
	file    string
	target  *faults.Target
	started time.Time // the run-start's time, else the first event's
	last    time.Time // the latest event time

	lastPhase string
	// sliInfo is the baseline phase's SLIs; method its experiment's method;
	// injectStart when the inject phase started (zero: it never did).
	sliInfo     []journal.SLIInfo
	method      []plannedStep
	injectStart time.Time
	samples     []sliSamples // in order of first sample
	faults      []journal.Event
	assertions  []assertion
	aborts      []journal.Event
	logs        []journal.Event
	verdict     *journal.Event

	outstanding []outstanding
	sum         *RunSummary // see facts

}

// sliSamples counts one SLI's samples.
type sliSamples struct {
	name   string
	count  int
	failed int
	last   float64
	lastOK bool // last is a measured value (the last sample did not fail)
	// lastErr is why the last failed sample failed.
	lastErr string
	// lastValue is the last measured value, if measured.
	lastValue float64
	measured  bool
}

// plannedStep is a method step as the run-start's experiment holds it.
type plannedStep struct {
	Name  string        `json:"name"`
	Fault string        `json:"fault"`
	At    time.Duration `json:"at"`
	For   time.Duration `json:"for"`
}

// assertion is an assertion event with its place in the run.
type assertion struct {
	journal.Event
	// kind is the name's part before ": " ("baseline", "recovery",
	// "invariant"); subject is the rest.
	kind, subject string
	// elapsed is the time since the phase started or since the previous
	// assertion, whichever is later.
	elapsed time.Duration
}

func (a assertion) passed() bool  { return a.Passed != nil && *a.Passed }
func (a assertion) failed() bool  { return a.Passed != nil && !*a.Passed }
func (a assertion) skipped() bool { return a.Passed == nil }
func (a assertion) invariant() bool {
	return a.kind == "invariant" || strings.HasPrefix(a.kind, "invariant ")
}

// outstanding is a fault the journal shows as injected and never removed.
type outstanding struct {
	handle faults.Handle
	step   int
	// removeErr is the last failed removal's error ("" if removal never
	// ran).
	removeErr string
}

func parse(events []journal.Event) *run {
	r := &run{events: events}
	sliIndex := map[string]int{}
	var mark time.Time // phase start or previous assertion
	for i := range events {
		e := events[i]
		if r.id == "" {
			r.id = e.Run
		}
		if !e.T.IsZero() {
			if r.started.IsZero() {
				r.started = e.T
			}
			if e.T.After(r.last) {
				r.last = e.T
			}
			if mark.IsZero() {
				mark = e.T
			}
		}
		switch e.Type {
		case journal.TypeRunStart:
			r.title, r.file, r.target = e.Title, e.File, e.Target
			var exp struct {
				Method []plannedStep `json:"method"`
			}
			if json.Unmarshal(e.Experiment, &exp) == nil {
				r.method = exp.Method
			}
			if !e.T.IsZero() {
				r.started, mark = e.T, e.T
			}
		case journal.TypePhase:
			r.lastPhase = e.Phase
			if e.SLIs != nil {
				r.sliInfo = e.SLIs
			}
			if e.Phase == "inject" && r.injectStart.IsZero() {
				r.injectStart = e.T
			}
			if !e.T.IsZero() {
				mark = e.T
			}
		case journal.TypeSample:
			j, ok := sliIndex[e.SLI]
			if !ok {
				j = len(r.samples)
				sliIndex[e.SLI] = j
				r.samples = append(r.samples, sliSamples{name: e.SLI})
			}
			s := &r.samples[j]
			s.count++
			if e.Failed {
				s.failed++
				s.lastErr = e.Err
			}
			s.last, s.lastOK = e.Value, !e.Failed
			if !e.Failed {
				s.lastValue, s.measured = e.Value, true
			}
		case journal.TypeInject, journal.TypeRemove:
			r.faults = append(r.faults, e)
		case journal.TypeAssertion:
			a := assertion{Event: e, subject: e.Name}
			if k, s, ok := strings.Cut(e.Name, ": "); ok {
				a.kind, a.subject = k, s
			}
			if !e.T.IsZero() && !mark.IsZero() && e.T.After(mark) {
				a.elapsed = e.T.Sub(mark)
				mark = e.T
			}
			r.assertions = append(r.assertions, a)
		case journal.TypeAbort:
			r.aborts = append(r.aborts, e)
		case journal.TypeLog:
			r.logs = append(r.logs, e)
		case journal.TypeVerdict:
			r.verdict = &events[i]
		}
	}
	r.outstanding = findOutstanding(events)
	return r
}

// findOutstanding lists journal.Outstanding's handles with their step and
// the error of their last failed removal, plus failed removals of faults
// the journal has no handle for.
func findOutstanding(events []journal.Event) []outstanding {
	steps := map[string]int{}
	errs := map[string]string{}
	var unknown []outstanding
	for _, e := range events {
		switch {
		case e.Type == journal.TypeInject && e.Handle != nil:
			steps[e.Handle.ID] = e.Step
		case e.Type == journal.TypeRemove && e.Err != "" && e.Handle != nil:
			errs[e.Handle.ID] = e.Err
		case e.Type == journal.TypeRemove && e.Err != "":
			unknown = append(unknown, outstanding{
				handle: faults.Handle{Fault: e.Fault}, step: e.Step, removeErr: e.Err,
			})
		}
	}
	var out []outstanding
	for _, h := range journal.Outstanding(events) {
		out = append(out, outstanding{handle: h, step: steps[h.ID], removeErr: errs[h.ID]})
	}
	return append(out, unknown...)
}

// name is what the run is called: its title, else its file, else its id.
func (r *run) name() string {
	switch {
	case r.title != "":
		return r.title
	case r.file != "":
		return r.file
	case r.id != "":
		return "run " + r.id
	}
	return "untitled run"
}

// classname is the JUnit classname: the experiment file, else the name.
func (r *run) classname() string {
	if r.file != "" {
		return r.file
	}
	return r.name()
}

// duration is the verdict's duration, else the span of the events.
func (r *run) duration() time.Duration {
	if r.verdict != nil && r.verdict.Duration > 0 {
		return r.verdict.Duration
	}
	if r.last.After(r.started) {
		return r.last.Sub(r.started)
	}
	return 0
}

func (r *run) failedAssertions() []assertion {
	var out []assertion
	for _, a := range r.assertions {
		if a.failed() {
			out = append(out, a)
		}
	}
	return out
}

func (r *run) invariants() []assertion {
	var out []assertion
	for _, a := range r.assertions {
		if a.invariant() {
			out = append(out, a)
		}
	}
	return out
}

// badgeNotRemoved is the second badge of a crashed run whose journal
// stops before its faults were removed.
const badgeNotRemoved = "FAULTS NOT REMOVED"

// badge is the run's status word ([StatusPass]...): the meaning of its
// exit code.
func (r *run) badge() string { return r.facts().Status }

// facts is the run's summary, built once: every renderer reads its figures
// from there.
func (r *run) facts() *RunSummary {
	if r.sum == nil {
		s := r.summary()
		r.sum = &s
	}
	return r.sum
}

// leftover is the second badge of a run that may have left faults in
// place ([RunSummary.Leftover]).
func (r *run) leftover() string { return r.facts().Leftover() }

// Leftover is the second badge of a run that may have left faults in
// place: ROLLBACK FAILED if a removal failed (unless that is already the
// run's status), FAULTS NOT REMOVED if the journal stops before the
// removal (a crash); "" if every fault was removed.
func (s *RunSummary) Leftover() string {
	if len(s.Outstanding) == 0 {
		return ""
	}
	for _, o := range s.Outstanding {
		if o.RemoveError != "" {
			if s.Status == StatusRollbackFailed {
				return ""
			}
			return StatusRollbackFailed
		}
	}
	return badgeNotRemoved
}

// leftoverWord is what the faults-in-place warning is headed with.
func (r *run) leftoverWord() string {
	if l := r.leftover(); l != "" {
		return l
	}
	return StatusRollbackFailed
}

// statusLine is the verdict in words: "failed, deviated, exit code 1,
// after 3m12s".
func (r *run) statusLine() string {
	v := r.verdict
	if v == nil {
		s := "did not finish: the journal has no verdict"
		if r.lastPhase != "" {
			s += "; last phase " + clean(r.lastPhase)
		}
		if !r.last.IsZero() {
			s += "; last event at " + stamp(r.last)
		}
		return s
	}
	parts := []string{clean(v.Status)}
	if v.Status == "" {
		parts[0] = "no status"
	}
	if v.Deviated {
		parts = append(parts, "deviated")
	}
	parts = append(parts, "exit code "+strconv.Itoa(v.ExitCode))
	if d := r.duration(); d > 0 {
		parts = append(parts, "after "+human(d))
	}
	return strings.Join(parts, ", ")
}

// failedSamples is one line per SLI with failed samples: how many failed
// and why the last one did ("canary: 3 of 40 samples failed; last: canary
// not delivered within 10s").
func (r *run) failedSamples() []string {
	var out []string
	for _, s := range r.samples {
		if s.failed == 0 {
			continue
		}
		line := fmt.Sprintf("%s: %d of %d samples failed", clean(s.name), s.failed, s.count)
		if s.lastErr != "" {
			line += "; last: " + clean(s.lastErr)
		}
		out = append(out, line)
	}
	return out
}

// sliRow is one line of the SLI table, formatted.
type sliRow struct {
	name, tolerance, baseline, worst, ttr, bound, verdict string
}

// tableHeader is the SLI table's header.
func tableHeader() sliRow {
	return sliRow{"SLI", "tolerance", "baseline", "worst during faults", "time to recover", "bound", "verdict"}
}

func (s sliRow) cells() []string {
	return []string{s.name, s.tolerance, s.baseline, s.worst, s.ttr, s.bound, s.verdict}
}

// table is the SLI table of a run with a verdict ([RunSummary.Table]).
func (r *run) table() []sliRow {
	var rows []sliRow
	for _, t := range r.facts().Table() {
		rows = append(rows, sliRow{t.SLI, t.Tolerance, t.Baseline, t.Worst, t.TimeToRecover, t.Bound, t.Verdict})
	}
	return rows
}

// TableRow is one line of the SLI table, every cell formatted the way
// each renderer (terminal, Markdown, JUnit, HTML) shows it.
type TableRow struct {
	SLI, Tolerance, Baseline, Worst, TimeToRecover, Bound, Verdict string
}

// Table is the SLI table of a run with a verdict, with an "overall" row
// whose verdict is the run's status word; nil for a run without a verdict
// or without SLIs. A figure the run did not get to is "-".
func (s *RunSummary) Table() []TableRow {
	if !s.Finished || len(s.SLIs) == 0 {
		return nil
	}
	bound := "-"
	if s.Recovery != nil && s.Recovery.Bound > 0 {
		bound = human(secondsDuration(s.Recovery.Bound))
	}
	var rows []TableRow
	for _, sli := range s.SLIs {
		row := TableRow{SLI: sli.Name, Tolerance: orDash(sli.Tolerance), Baseline: "-", Worst: "-", TimeToRecover: "-", Bound: "-", Verdict: "-"}
		if sli.Baseline != nil {
			row.Baseline = orDash(sli.Baseline.Text)
		}
		if sli.Worst != nil {
			row.Worst = sli.Worst.Text
		}
		if sli.Recovery != nil {
			row.TimeToRecover, row.Bound = sli.Recovery.Text, bound
		}
		if sli.Passed != nil {
			row.Verdict = passFail(*sli.Passed)
		}
		rows = append(rows, row)
		if d := sli.During; d != nil {
			rows = append(rows, TableRow{
				SLI: sli.Name + " (during faults)", Tolerance: "-", Baseline: "-", Worst: "-",
				TimeToRecover: d.Text, Bound: human(secondsDuration(d.Bound)), Verdict: passFail(d.Passed),
			})
		}
	}
	overall := TableRow{SLI: "overall", TimeToRecover: "-", Bound: "-", Verdict: s.Status}
	if rec := s.Recovery; rec != nil {
		overall.TimeToRecover, overall.Bound = "not recovered", bound
		if rec.TimeToRecover != nil {
			overall.TimeToRecover = human(secondsDuration(*rec.TimeToRecover))
		}
	}
	return append(rows, overall)
}

// secondsDuration is a number of seconds as a duration.
func secondsDuration(s float64) time.Duration { return time.Duration(math.Round(s * 1e9)) }

// orDash is s, or "-" when s is empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// overallPassed is the "recovery: overall" assertion's result if the
// journal has one, else whether every SLI recovered within the bound.
func (r *run) overallPassed(sum *journal.Summary) bool {
	for _, a := range r.assertions {
		if a.kind == "recovery" && a.subject == "overall" && !a.skipped() {
			return a.passed()
		}
	}
	if sum.TimeToRecover < 0 {
		return false
	}
	for _, s := range sum.SLIs {
		if s.During != nil && !s.During.Passed {
			return false
		}
	}
	return sum.RecoveryBound <= 0 || sum.TimeToRecover <= sum.RecoveryBound
}

func passFail(ok bool) string {
	if ok {
		return "pass"
	}
	return "FAIL"
}

// assertionLine is an assertion for people: "delivery-p99 recovered in
// 1m15s, too late (bound: within 1m, held 5s): message".
func assertionLine(a assertion) string { return sentence(a) }

// faultLine describes an inject or remove event.
func (r *run) faultLine(e journal.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s step %d %s", r.offset(e.T), e.Step, clean(faultName(e)))
	switch {
	case e.Type == journal.TypeInject:
		b.WriteString(" injected")
		if e.Handle != nil {
			b.WriteString(handleDetail(*e.Handle))
		}
		if e.Err != "" {
			b.WriteString(": " + clean(e.Err))
		}
	case e.Err != "":
		b.WriteString(" REMOVAL FAILED: " + clean(e.Err))
	default:
		b.WriteString(" removed")
	}
	if e.Message != "" {
		b.WriteString(" (" + clean(e.Message) + ")")
	}
	return b.String()
}

func faultName(e journal.Event) string {
	if e.Fault == "" && e.Handle != nil {
		return e.Handle.Fault
	}
	return e.Fault
}

// handleDetail is " (handle ID, toxics p/n, p/n)".
func handleDetail(h faults.Handle) string {
	var parts []string
	if h.ID != "" {
		parts = append(parts, "handle "+clean(h.ID))
	}
	if t := toxicNames(h); t != "" {
		parts = append(parts, "toxics "+t)
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// toxicNames is "proxy/toxic, proxy/toxic".
func toxicNames(h faults.Handle) string {
	var names []string
	for _, t := range h.Toxics {
		names = append(names, clean(t.Proxy)+"/"+clean(t.Name))
	}
	return strings.Join(names, ", ")
}

// toxicsByServer lists h's toxics by the server they are on:
// "a/x, a/y on http://127.0.0.1:8474; b/z on http://127.0.0.1:8475".
func toxicsByServer(h faults.Handle) string {
	var servers []string
	byServer := map[string][]string{}
	for _, t := range h.Toxics {
		s := h.ServerOf(t)
		if _, ok := byServer[s]; !ok {
			servers = append(servers, s)
		}
		byServer[s] = append(byServer[s], clean(t.Proxy)+"/"+clean(t.Name))
	}
	parts := make([]string, 0, len(servers))
	for _, s := range servers {
		part := strings.Join(byServer[s], ", ")
		if s != "" {
			part += " on " + clean(s)
		}
		parts = append(parts, part)
	}
	return strings.Join(parts, "; ")
}

// recoverHint tells how to remove faults left in place.
const recoverHint = "run `mailchaos recover` on this journal to remove them"

// outstandingLine says what may still be in place and how to find it.
func outstandingLine(o outstanding) string {
	var b strings.Builder
	fmt.Fprintf(&b, "step %d %s", o.step, clean(o.handle.Fault))
	if o.handle.ID != "" {
		b.WriteString(", handle " + clean(o.handle.ID))
	}
	if o.removeErr != "" {
		b.WriteString(": removal failed: " + clean(o.removeErr))
	} else {
		b.WriteString(": never removed")
	}
	if t := toxicsByServer(o.handle); t != "" {
		b.WriteString("; toxics " + t)
	}
	if !o.handle.Expires.IsZero() {
		b.WriteString("; expires " + stamp(o.handle.Expires))
	}
	return b.String()
}

// offset is an event's time from the run's start: "+1m30s".
func (r *run) offset(t time.Time) string {
	if t.IsZero() || r.started.IsZero() {
		return "+?"
	}
	return "+" + human(t.Sub(r.started))
}

// stamp formats an absolute time, in UTC.
func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// value formats an SLI value by its unit: "s" as a duration, "ratio" as a
// percentage, anything else as %.4g followed by the unit.
func value(v float64, unit string) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return fmt.Sprintf("%.4g", v)
	case unit == "s" && math.Abs(v) < math.MaxInt64/1e9:
		return human(time.Duration(math.Round(v * 1e9)))
	case unit == "ratio":
		return decimal(v*100, 2) + "%"
	case unit == "":
		return fmt.Sprintf("%.4g", v)
	case strings.HasPrefix(unit, "/"):
		return fmt.Sprintf("%.4g%s", v, clean(unit)) // a rate: 24.5/s
	}
	return fmt.Sprintf("%.4g %s", v, clean(unit))
}

// human formats a duration briefly: 850ms, 1.2s, 12.5s, 1m15s, 2m, 1h5m.
func human(d time.Duration) string {
	if d < 0 {
		if d == math.MinInt64 {
			d++
		}
		return "-" + human(-d)
	}
	switch {
	case d == 0:
		return "0s"
	case d < time.Microsecond:
		return strconv.FormatInt(int64(d), 10) + "ns"
	case d < time.Millisecond-time.Microsecond/2:
		return decimal(float64(d)/1e3, 0) + "µs"
	case d < 10*time.Millisecond-time.Millisecond/20:
		return decimal(float64(d)/1e6, 1) + "ms"
	case d < time.Second-time.Millisecond/2:
		return decimal(float64(d)/1e6, 0) + "ms"
	case d < time.Minute-time.Second/20:
		return decimal(d.Seconds(), 1) + "s"
	}
	d = d.Round(time.Second)
	var b strings.Builder
	if h := d / time.Hour; h > 0 {
		b.WriteString(strconv.FormatInt(int64(h), 10) + "h")
	}
	if m := d % time.Hour / time.Minute; m > 0 {
		b.WriteString(strconv.FormatInt(int64(m), 10) + "m")
	}
	if sec := d % time.Minute / time.Second; sec > 0 {
		b.WriteString(strconv.FormatInt(int64(sec), 10) + "s")
	}
	return b.String()
}

// decimal formats v with at most prec decimals, dropping trailing zeros.
func decimal(v float64, prec int) string {
	s := strconv.FormatFloat(v, 'f', prec, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	if s == "-0" {
		s = "0"
	}
	return s
}

// clean makes journal text safe for one line of any output: line breaks
// and tabs become spaces; terminal escape sequences (ESC [ … final byte),
// other control characters and invalid UTF-8 are dropped; the result is
// trimmed.
func clean(s string) string {
	if isClean(s) {
		return strings.TrimSpace(s)
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		c, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case c == 0x1b && i+1 < len(s) && s[i+1] == '[':
			// A CSI sequence: parameters and intermediates, then a final
			// byte in 0x40..0x7e.
			j := i + 2
			for j < len(s) && s[j] >= 0x20 && s[j] <= 0x3f {
				j++
			}
			if j < len(s) && s[j] >= 0x40 && s[j] <= 0x7e {
				j++
			}
			i = j
			continue
		case c == utf8.RuneError && n <= 1:
			// invalid UTF-8: drop
		case c == '\n' || c == '\r' || c == '\t':
			b.WriteByte(' ')
		case unicode.IsControl(c) || c == '\uFFFE' || c == '\uFFFF':
			// drop
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return strings.TrimSpace(b.String())
}

// Clean is journal text as every summary says it, on one line: line
// breaks and tabs become spaces, terminal escape sequences, other control
// characters and invalid UTF-8 are dropped, and the result is trimmed.
func Clean(s string) string { return clean(s) }

func isClean(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, c := range s {
		if unicode.IsControl(c) || c == '\uFFFE' || c == '\uFFFF' {
			return false
		}
	}
	return true
}

// cleanText is clean for multi-line text: line breaks are kept.
func cleanText(s string) string {
	lines := strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
	for i, l := range lines {
		lines[i] = clean(l)
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}

// targetEndpoints is "imap=…, smtp=…", sorted by name.
func targetEndpoints(t *faults.Target) string {
	if t == nil || len(t.Endpoints) == 0 {
		return ""
	}
	names := make([]string, 0, len(t.Endpoints))
	for n := range t.Endpoints {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = clean(n) + "=" + clean(t.Endpoints[n])
	}
	return strings.Join(parts, ", ")
}

// errWriter keeps the first write error, so renderers can write freely and
// check once.
type errWriter struct {
	w   io.Writer
	err error
}

func (w *errWriter) printf(format string, args ...any) {
	if w.err == nil {
		_, w.err = fmt.Fprintf(w.w, format, args...)
	}
}

func (w *errWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.w.Write(p)
	w.err = err
	return n, err
}
