package report

import (
	"encoding/xml"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/mailchaos/mailchaos/experiments/journal"
)

// JUnit writes the runs as JUnit XML, in the common schema that Jenkins,
// GitLab and GitHub test reporters read: one <testsuites> element holding
// one <testsuite> per run (name: the experiment's title, file: its file)
// and one <testcase> per assertion (classname: the experiment file, else
// the title; name: the assertion's name). A failed assertion has a
// <failure message="measured X vs bound Y">; an assertion without a result
// is <skipped>.
//
// Besides the assertions, a suite gets a testcase named "run" when the run
// did not complete (aborted, interrupted, or no verdict: an <error>), when
// it failed without a failed assertion to show for it (a <failure>), or
// when it has no assertion at all; and one testcase per fault that may
// still be in place, named "rollback: step N FAULT", with an <error>
// naming its toxics.
//
// A testcase's time is the time from its phase's start, or from the
// previous assertion, to the check, so the times add up to no more than
// the suite's. Timestamps are UTC without a zone
// (2006-01-02T15:04:05), as the schema wants. Attributes are escaped by
// encoding/xml and hold no control characters (line breaks become
// spaces); details and <system-out> are CDATA with line breaks kept and
// other control characters removed. JUnit returns the first write error.
func JUnit(w io.Writer, runs ...[]journal.Event) error {
	doc := junitSuites{Name: "mailchaos"}
	var total time.Duration
	for _, r := range splitAll(runs) {
		s := r.junit()
		doc.Tests += s.Tests
		doc.Failures += s.Failures
		doc.Errors += s.Errors
		doc.Skipped += s.Skipped
		total += r.duration()
		doc.Suites = append(doc.Suites, s)
	}
	doc.Time = seconds(total)

	if _, err := io.WriteString(w, xml.Header); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if _, err := io.WriteString(w, "\n"); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr,omitempty"`
	File       string          `xml:"file,attr,omitempty"`
	Properties []junitProperty `xml:"properties>property,omitempty"`
	Cases      []junitCase     `xml:"testcase"`
	SystemOut  *junitText      `xml:"system-out,omitempty"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	File      string        `xml:"file,attr,omitempty"`
	Skipped   *junitSkipped `xml:"skipped,omitempty"`
	Failure   *junitResult  `xml:"failure,omitempty"`
	Error     *junitResult  `xml:"error,omitempty"`
}

type junitSkipped struct {
	Message string `xml:"message,attr,omitempty"`
}

type junitResult struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",cdata"`
}

// junitText is text in CDATA, which keeps line breaks readable; encoding/xml
// splits any "]]>" in it. Only cleaned text (xmlText) goes in it.
type junitText struct {
	Text string `xml:",cdata"`
}

// xmlText makes text safe for CDATA: no control characters but line
// breaks, no invalid UTF-8.
func xmlText(s string) string { return cleanText(s) }

func (r *run) junit() junitSuite {
	s := junitSuite{
		Name: clean(r.name()),
		File: clean(r.file),
		Time: seconds(r.duration()),
	}
	if !r.started.IsZero() {
		s.Timestamp = r.started.UTC().Format("2006-01-02T15:04:05")
	}
	s.Properties = r.junitProperties()

	classname, file := clean(r.classname()), clean(r.file)
	for _, a := range r.assertions {
		c := junitCase{Name: clean(a.Name), Classname: classname, Time: seconds(a.elapsed), File: file}
		switch {
		case a.skipped():
			c.Skipped = &junitSkipped{Message: "no result recorded"}
		case a.failed():
			msg := claim(a)
			c.Failure = &junitResult{Message: msg, Type: junitType(a), Text: xmlText(r.failureText(a))}
		}
		s.Cases = append(s.Cases, c)
	}
	if c, ok := r.junitRunCase(); ok {
		c.Classname, c.File = classname, file
		s.Cases = append(s.Cases, c)
	}
	for _, o := range r.outstanding {
		res := &junitResult{
			Message: "the fault was never removed and may still be in place",
			Type:    "not-removed",
			Text:    xmlText(outstandingLine(o) + "\n" + recoverHint),
		}
		if o.removeErr != "" {
			res.Message, res.Type = "removal failed: the fault may still be in place", "rollback-failed"
		}
		s.Cases = append(s.Cases, junitCase{
			Name:      "rollback: step " + strconv.Itoa(o.step) + " " + clean(o.handle.Fault),
			Classname: classname,
			Time:      seconds(0),
			File:      file,
			Error:     res,
		})
	}

	for _, c := range s.Cases {
		s.Tests++
		switch {
		case c.Error != nil:
			s.Errors++
		case c.Failure != nil:
			s.Failures++
		case c.Skipped != nil:
			s.Skipped++
		}
	}
	s.SystemOut = &junitText{Text: xmlText(r.junitOutput())}
	return s
}

// junitType is a failure's type: the assertion's kind ("recovery").
func junitType(a assertion) string {
	if k := clean(a.kind); k != "" {
		return k
	}
	return "assertion"
}

// failureText details a failed assertion: its line, and for a recovery
// assertion of an SLI the SLI's figures.
func (r *run) failureText(a assertion) string {
	lines := []string{assertionLine(a)}
	if r.verdict != nil && r.verdict.Summary != nil && a.kind == "recovery" {
		for _, row := range r.table() {
			if row.name != clean(a.subject) {
				continue
			}
			figures := []string{}
			for _, f := range [][2]string{
				{"tolerance", row.tolerance}, {"baseline", row.baseline},
				{"worst during faults", row.worst}, {"time to recover", row.ttr}, {"bound", row.bound},
			} {
				if f[1] != "" {
					figures = append(figures, f[0]+" "+f[1])
				}
			}
			lines = append(lines, row.name+": "+strings.Join(figures, ", "))
		}
	}
	return strings.Join(lines, "\n")
}

// junitRunCase is the "run" testcase, if the suite needs one.
func (r *run) junitRunCase() (junitCase, bool) {
	c := junitCase{Name: "run", Time: seconds(0)}
	v := r.verdict
	detail := xmlText(r.runDetail())
	switch {
	case v == nil:
		c.Error = &junitResult{Message: "the run did not finish: the journal has no verdict", Type: "unfinished", Text: detail}
	case r.badge() != StatusPass && r.badge() != StatusFail:
		msg := r.badge()
		if why := r.facts().Reason; why != "" {
			msg += ": " + why
		}
		c.Error = &junitResult{Message: msg, Type: strings.ToLower(strings.ReplaceAll(r.badge(), " ", "-")), Text: detail}
	case r.badge() != StatusPass && len(r.failedAssertions()) == 0:
		msg := "run " + clean(r.statusLine())
		if v.Message != "" {
			msg += ": " + clean(v.Message)
		}
		c.Failure = &junitResult{Message: msg, Type: "verdict", Text: detail}
	case len(r.assertions) == 0:
		// An empty suite confuses some reporters: say the run passed.
	default:
		return c, false
	}
	return c, true
}

// runDetail is the status line and the reason, said once.
func (r *run) runDetail() string {
	return strings.Join(append([]string{r.statusLine()}, r.reasonLines()...), "\n")
}

func (r *run) junitProperties() []junitProperty {
	var ps []junitProperty
	add := func(name, value string) {
		if value != "" {
			ps = append(ps, junitProperty{Name: name, Value: clean(value)})
		}
	}
	add("run", r.id)
	add("outcome", r.badge())
	if v := r.verdict; v != nil {
		add("status", v.Status)
		add("deviated", strconv.FormatBool(v.Deviated))
		add("exit-code", strconv.Itoa(v.ExitCode))
	} else {
		add("status", "unfinished")
	}
	add("target", targetEndpoints(r.target))
	return ps
}

// junitOutput is the run's phases, faults, aborts and logs in the order
// they happened, one a line.
func (r *run) junitOutput() string {
	lines := []string{r.badge() + ": " + r.statusLine()}
	for _, e := range r.events {
		switch e.Type {
		case journal.TypePhase:
			lines = append(lines, r.offset(e.T)+" phase "+clean(e.Phase))
		case journal.TypeInject, journal.TypeRemove:
			lines = append(lines, r.faultLine(e))
		case journal.TypeAbort:
			lines = append(lines, r.offset(e.T)+" ABORT: "+clean(joinNonEmpty(": ", e.Message, e.Err)))
		case journal.TypeLog:
			lines = append(lines, r.offset(e.T)+" "+clean(joinNonEmpty(": ", e.Message, e.Err)))
		}
	}
	return strings.Join(lines, "\n")
}

// seconds formats a duration as JUnit's time attribute.
func seconds(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 3, 64)
}
