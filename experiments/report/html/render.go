package htmlreport

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"html/template"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/mailchaos/mailchaos/experiments/journal"
	"github.com/mailchaos/mailchaos/experiments/report"
)

// Render writes the HTML report of the runs in journals: one
// self-contained page, no script, nothing fetched.
func Render(w io.Writer, journals ...[]journal.Event) error {
	var runs [][]journal.Event
	for _, evs := range journals {
		runs = append(runs, report.Split(evs)...)
	}
	body, err := renderBody(runs)
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
// the live view replaces as the run goes.
func renderBody(runs [][]journal.Event) (template.HTML, error) {
	t, err := template.New("body").Funcs(template.FuncMap{
		"secs":  secs,
		"value": value,
		"tol":   tolText,
		"stamp": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
		"off": func(r *run, t time.Time) string {
			if t.IsZero() {
				return "-"
			}
			return "+" + secs(t.Sub(r.start))
		},
		"deref": func(b *bool) bool { return b != nil && *b },
		"verdict": func(ok bool) string {
			if ok {
				return "pass"
			}
			return "FAIL"
		},
	}).Parse(bodyTemplate)
	if err != nil {
		return "", fmt.Errorf("html report: %w", err)
	}
	var views []runView
	for _, r := range parseRuns(runs) {
		views = append(views, newRunView(r))
	}
	var b bytes.Buffer
	if err := t.Execute(&b, map[string]any{"Runs": views}); err != nil {
		return "", fmt.Errorf("html report: %w", err)
	}
	// The markup is html/template's, the charts svg's: both escape
	// everything the journal holds.
	return template.HTML(b.String()), nil //nolint:gosec // escaped above
}

// runView is what the template shows of one run.
type runView struct {
	R        *run
	ID       string
	Title    string
	File     string
	Start    time.Time
	Status   string
	Passed   bool
	Finished bool
	Verdict  *journal.Event
	Summary  *journal.Summary
	Charts   []chartView
	Load     []chartView
	Gantt    template.HTML
	Steps    []stepView
	Planned  time.Duration
	Asserts  []journal.Event
	Aborts   []journal.Event
	Dropped  int
	Recovery string
}

// chartView is one chart and its caption.
type chartView struct {
	Name, Caption string
	SVG           template.HTML
}

// stepView is one row of the faults table.
type stepView struct {
	Index                                             int
	Name, Fault, Link, Err, Detail                    string
	PlannedAt, ActualAt, Delay, PlannedEnd, RemovedAt string
}

func newRunView(r *run) runView {
	v := runView{R: r, ID: r.id, Title: r.title, File: r.file, Start: r.start, Status: r.status(), Passed: r.passed(), Finished: r.finished(), Verdict: r.verdict,
		Asserts: r.assertions, Aborts: r.aborts}
	if r.verdict != nil {
		v.Summary = r.verdict.Summary
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
		cap += "tolerance " + tolText(s.tol, s.unit)
		//nolint:gosec // sliChart escapes everything it writes
		v.Charts = append(v.Charts, chartView{Name: s.name, Caption: cap, SVG: template.HTML(sliChart(r, s.name, []series{{s, "s0"}}))})
	}
	rates, lats := r.loadSLIs()
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
		v.Load = append(v.Load, chartView{Name: group.name, Caption: names, SVG: template.HTML(sliChart(r, group.name, ss))})
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
// replacing a regular file there: the page is written to a new temporary
// file in the same directory (created exclusively) and renamed over path,
// so a symbolic link at path is never followed; one is refused.
func WriteFile(path string, journals ...[]journal.Event) error {
	if fi, err := os.Lstat(path); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("html report: %s is not a regular file (a symbolic link or a device): refused, the report replaces files only", path)
	}
	var b bytes.Buffer
	if err := Render(&b, journals...); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("html report: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename, nothing is there
	if _, err := tmp.Write(b.Bytes()); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("html report: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("html report: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("html report: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("html report: %w", err)
	}
	return nil
}
