package htmlreport

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"html/template"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/mailchaos/mailchaos/experiments/journal"
	"github.com/mailchaos/mailchaos/experiments/report"
	"github.com/mailchaos/mailchaos/internal/safefile"
)

// Render writes the HTML report of the runs in journals: one
// self-contained page, no script, nothing fetched.
func Render(w io.Writer, journals ...[]journal.Event) error {
	var runs [][]journal.Event
	for _, evs := range journals {
		runs = append(runs, report.Split(evs)...)
	}
	body, err := renderBody(runs, false, nil)
	if err != nil {
		return err
	}
	return writePage(w, pageTitle(runs), body, "")
}

// pageTitle is the page's title: the first run's.
func pageTitle(runs [][]journal.Event) string {
	for _, evs := range runs {
		for _, e := range evs {
			if e.Type == journal.TypeRunStart && e.Title != "" {
				return "mailchaos: " + e.Title
			}
		}
	}
	return "mailchaos report"
}

// writePage writes the page around body, with script (the live view's)
// when it is not empty. The Content-Security-Policy allows the page's own
// style and script by their hashes and nothing else, but for connections
// to its own origin when it has a script.
func writePage(w io.Writer, title string, body template.HTML, script string) error {
	csp := "default-src 'none'; style-src " + hash(pageCSS) + "; img-src data:; base-uri 'none'; form-action 'none'"
	if script != "" {
		csp += "; script-src " + hash(script) + "; connect-src 'self'"
	}
	t, err := template.New("page").Parse(pageTemplate)
	if err != nil {
		return fmt.Errorf("html report: %w", err)
	}
	err = t.Execute(w, map[string]any{
		"CSP": csp, "Title": title, "CSS": template.CSS(pageCSS), "Body": body,
		"Script": template.JS(script), "Live": script != "",
	})
	if err != nil {
		return fmt.Errorf("html report: %w", err)
	}
	return nil
}

// hash is a CSP source matching exactly the element text s.
func hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// renderBody renders the runs: what goes inside the page's <main>, and what
// the live view replaces as the run goes. live says the runs are still
// going: a run without a verdict is then RUNNING rather than DID NOT
// FINISH (once they are over, the live page is the report). skipped
// counts the samples and windows the live view did not keep, by series.
func renderBody(runs [][]journal.Event, live bool, skipped map[seriesKey]int) (template.HTML, error) {
	t, err := template.New("body").Funcs(template.FuncMap{
		"stamp":    func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
		"rowClass": rowClass,
		"result":   result,
	}).Parse(bodyTemplate)
	if err != nil {
		return "", fmt.Errorf("html report: %w", err)
	}
	var views []runView
	for _, r := range parseRuns(runs) {
		for _, s := range r.slis {
			s.dropped += skipped[seriesKey{run: r.id, sli: s.name}]
		}
		for _, l := range r.loads {
			l.dropped += skipped[seriesKey{run: r.id, step: l.step, load: true}]
		}
		views = append(views, newRunView(r, live))
	}
	var b bytes.Buffer
	if err := t.Execute(&b, map[string]any{"Runs": views}); err != nil {
		return "", fmt.Errorf("html report: %w", err)
	}
	// The markup is html/template's, the charts svg's: both escape
	// everything the journal holds.
	return template.HTML(b.String()), nil //nolint:gosec // escaped above
}

// statusRunning is the status word of a run the live view still follows.
const statusRunning = "RUNNING"

// runView is what the template shows of one run. Every verdict, status,
// reason and figure is the run's summary's (report.Summarize), so the
// page says what the terminal, Markdown, JUnit and JSON summaries say.
type runView struct {
	ID, Title, File string
	Start           time.Time
	// Status is the status word, Class its colour, Line the verdict in
	// words, Leftover the second badge of a run that may have left
	// faults in place.
	Status, Class, Line, Leftover string
	// Reason says once why the run stopped, Error the error behind it;
	// Aborts are the other aborts.
	Reason, Error string
	Aborts        []string
	Table         []report.TableRow
	From          string
	Samples       []report.SLIResult
	FailedSamples []string
	Failed        []report.Check
	Invariants    []report.Check
	Outstanding   []report.Leftover
	Charts        []chartView
	// LoadSteps draw what each load did, from its journaled windows;
	// Load, the SLIs read from the load, in journals without them.
	LoadSteps []loadView
	Load      []chartView
	Gantt     template.HTML
	Steps     []stepView
	Dropped   int
	Recovery  string
}

// chartView is one chart and its caption; Key names it in the markup
// (data-chart) when Name alone does not.
type chartView struct {
	Key, Name, Caption string
	SVG                template.HTML
}

// stepView is one row of the faults table.
type stepView struct {
	Index                                             int
	Name, Fault, Link, Err, Detail                    string
	PlannedAt, ActualAt, Delay, PlannedEnd, RemovedAt string
}

// statusClass is the colour of a status word: green for PASS, red when
// the system or the run failed, amber when the run was stopped or did not
// finish (the terminal's colours).
func statusClass(word string) string {
	switch word {
	case report.StatusPass:
		return "st-pass"
	case report.StatusFail, report.StatusError, report.StatusRollbackFailed:
		return "st-bad"
	case report.StatusAborted, report.StatusInterrupted, report.StatusUnfinished:
		return "st-warn"
	}
	return "st-run"
}

// rowClass is the class of a verdict table row by its verdict cell.
func rowClass(row report.TableRow) string {
	switch {
	case row.SLI == "overall":
		return "overall"
	case row.Verdict == "pass":
		return "ok"
	case row.Verdict == "FAIL":
		return "bad"
	}
	return ""
}

// result is a check's result word: pass, FAIL or skip.
func result(c report.Check) string {
	switch {
	case c.Passed == nil:
		return "skip"
	case *c.Passed:
		return "pass"
	}
	return "FAIL"
}

// statusLine is the verdict in words: "failed, deviated, exit code 1,
// after 1.8s".
func statusLine(s report.RunSummary, live bool) string {
	if !s.Finished {
		line := "did not finish: the journal has no verdict"
		if live {
			line = "running"
		}
		if s.LastPhase != "" {
			line += "; last phase " + s.LastPhase
		}
		return line
	}
	parts := []string{s.Verdict}
	if s.Verdict == "" {
		parts[0] = "no status"
	}
	if s.Deviated {
		parts = append(parts, "deviated")
	}
	if s.ExitCode != nil {
		parts = append(parts, "exit code "+strconv.Itoa(*s.ExitCode))
	}
	if s.Duration > 0 {
		parts = append(parts, "after "+secs(seconds(s.Duration)))
	}
	return strings.Join(parts, ", ")
}

// reasons are the run's reason, with when the abort that carried it
// happened, and every other abort: the reason is said once.
func reasons(r *run) (string, []string) {
	why := r.facts.Reason
	var others []string
	for _, a := range r.aborts {
		msg := a.Message
		if a.Err != "" {
			if msg != "" {
				msg += ": "
			}
			msg += a.Err
		}
		// Cleaned as the summary cleans the reason it compares with.
		msg = report.Clean(msg)
		at := "+" + secs(a.T.Sub(r.start))
		if msg == why || (why != "" && strings.Contains(why, msg)) {
			why += " (at " + at + ")"
			continue
		}
		others = append(others, "abort at "+at+": "+msg)
	}
	return why, others
}

func newRunView(r *run, live bool) runView {
	f := r.facts
	v := runView{ID: r.id, Title: r.title, File: r.file, Start: r.start, Status: f.Status,
		Line: statusLine(f, live), Leftover: f.Leftover(), Error: f.Error, Table: f.Table(),
		Failed: f.Failed, Invariants: f.Invariants, Outstanding: f.Outstanding}
	if live && !f.Finished {
		v.Status = statusRunning
	}
	v.Class = statusClass(v.Status)
	v.Reason, v.Aborts = reasons(r)
	if f.Recovery != nil {
		v.From = f.Recovery.From
	}
	for _, s := range f.SLIs {
		if v.Table == nil && s.Samples > 0 {
			v.Samples = append(v.Samples, s)
		}
		if s.FailedSamples > 0 {
			line := fmt.Sprintf("%s: %d of %d samples failed", s.Name, s.FailedSamples, s.Samples)
			if s.LastFailure != "" {
				line += "; last: " + s.LastFailure
			}
			v.FailedSamples = append(v.FailedSamples, line)
		}
	}
	if rs, ok := r.recoveryStart(); ok {
		from := "the planned end of the last fault"
		if n := r.spec.Recovery.From; n != "" {
			from = "the planned end of step " + n
		}
		v.Recovery = fmt.Sprintf("The recovery clock starts at +%s, %s; every SLI must be back within tolerance within %s and hold for %s.",
			secs(rs.Sub(r.start)), from, secs(r.spec.Recovery.Within), secs(r.spec.Recovery.Hold))
	}
	for _, s := range r.slis {
		v.Dropped += s.dropped
		cap := s.probe
		if s.measure != "" {
			cap += " " + s.measure
		}
		if s.probe != "" {
			cap += ", "
		}
		tol := tolText(s.tol, s.unit)
		if s.res != nil && s.res.Tolerance != "" {
			tol = s.res.Tolerance
		}
		cap += "tolerance " + tol
		//nolint:gosec // sliChart escapes everything it writes
		v.Charts = append(v.Charts, chartView{Name: s.name, Caption: cap, SVG: template.HTML(sliChart(r, s.name, []series{{s, "s0"}}))})
	}
	v.LoadSteps = loadViews(r)
	rates, lats := r.loadSLIs()
	if len(v.LoadSteps) > 0 {
		rates, lats = nil, nil // the windows say it all, and more
	}
	for _, group := range []struct {
		name string
		ss   []*sli
	}{{"load: offered and accepted rate", rates}, {"load: latency", lats}} {
		if len(group.ss) == 0 {
			continue
		}
		var ss []series
		var names string
		for i, s := range group.ss {
			ss = append(ss, series{s, fmt.Sprintf("s%d", i%4)})
			if i > 0 {
				names += ", "
			}
			names += s.name
		}
		//nolint:gosec // sliChart escapes everything it writes
		v.Load = append(v.Load, chartView{Key: group.name, Name: group.name, Caption: names, SVG: template.HTML(sliChart(r, group.name, ss))})
	}
	if len(r.steps) > 0 {
		v.Gantt = template.HTML(gantt(r)) //nolint:gosec // gantt escapes everything it writes
	}
	for _, st := range r.steps {
		sv := stepView{Index: st.index, Name: st.name, Fault: st.fault, Link: st.link, Err: st.err, Detail: st.detail, PlannedAt: "-", ActualAt: "-", Delay: "-", PlannedEnd: "-", RemovedAt: "-"}
		if st.planned && !r.methodStart.IsZero() {
			sv.PlannedAt = "+" + secs(r.methodStart.Add(st.at).Sub(r.start))
			sv.PlannedEnd = "+" + secs(r.methodStart.Add(st.at+st.dur).Sub(r.start))
			if !st.injected.IsZero() {
				sv.Delay = secs(st.injected.Sub(r.methodStart.Add(st.at)))
			}
		}
		if !st.injected.IsZero() {
			sv.ActualAt = "+" + secs(st.injected.Sub(r.start))
		}
		if !st.removed.IsZero() {
			sv.RemovedAt = "+" + secs(st.removed.Sub(r.start))
		}
		v.Steps = append(v.Steps, sv)
	}
	return v
}

// WriteFile renders the report of journals into the file at path,
// replacing a regular file there ([safefile.Write]): the page is written
// to a new file in the same directory (created exclusively) and renamed
// over path, so a symbolic link at path is never followed; one is refused.
func WriteFile(path string, journals ...[]journal.Event) error {
	var b bytes.Buffer
	if err := Render(&b, journals...); err != nil {
		return err
	}
	if err := safefile.Write(path, b.Bytes(), 0o644, safefile.Replace); err != nil {
		return fmt.Errorf("html report: %w", err)
	}
	return nil
}
