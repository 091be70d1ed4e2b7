package report

import (
	"bytes"
	"encoding/xml"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/experiments/journal"
	"github.com/mailchaos/mailchaos/faults"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata from the current output")

// journals are the hand-written journals in testdata, by name.
// The exit-* journals were written by real runs, one per way a run ends
// (go test ./experiments -run TestSummaryOnEveryExitPath -args
// -write-journals DIR; exit-crashed is exit-interrupted cut before its
// rollback, as a killed run leaves it); the others are hand-written in the format of
// older versions, so that old journals keep rendering.
func journals() []string {
	return []string{
		"pass", "recovery-failed", "aborted", "truncated",
		"exit-pass", "exit-fail", "exit-aborted-baseline", "exit-interrupted",
		"exit-target-cannot-start", "exit-rollback-failed", "exit-crashed",
	}
}

func readJournal(t testing.TB, name string) []journal.Event {
	t.Helper()
	evs, err := journal.ReadFile(filepath.Join("testdata", name+".jsonl"))
	require.NoError(t, err)
	require.NotEmpty(t, evs)
	return evs
}

type renderer struct {
	ext    string
	render func(io.Writer, ...[]journal.Event) error
}

// renderers are the four outputs, by golden file extension.
func renderers() []renderer {
	return []renderer{{"txt", Terminal}, {"xml", JUnit}, {"md", Markdown}, {"json", JSON}}
}

// goldenCases are the journals to render, one per case: each testdata
// journal alone, and "multi": two runs in one journal (split by the
// renderer) plus the truncated one as a second argument.
func goldenCases(t testing.TB) map[string][][]journal.Event {
	t.Helper()
	cases := map[string][][]journal.Event{}
	for _, name := range journals() {
		cases[name] = [][]journal.Event{readJournal(t, name)}
	}
	both := append(readJournal(t, "pass"), readJournal(t, "recovery-failed")...)
	cases["multi"] = [][]journal.Event{both, readJournal(t, "truncated")}
	return cases
}

func TestGolden(t *testing.T) {
	for name, runs := range goldenCases(t) {
		for _, r := range renderers() {
			t.Run(name+"."+r.ext, func(t *testing.T) {
				var buf bytes.Buffer
				require.NoError(t, r.render(&buf, runs...))
				path := filepath.Join("testdata", name+".golden."+r.ext)
				if *update {
					require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o644))
					return
				}
				want, err := os.ReadFile(path)
				require.NoError(t, err, "run the tests with -update to create the golden files")
				if got := buf.String(); got != string(want) {
					t.Errorf("%s differs from the output (rerun with -update after checking):\ngot:\n%s\nwant:\n%s", path, got, want)
				}
			})
		}
	}
}

// parsed JUnit, as a reporter would read it.
type xSuites struct {
	XMLName  xml.Name `xml:"testsuites"`
	Tests    int      `xml:"tests,attr"`
	Failures int      `xml:"failures,attr"`
	Errors   int      `xml:"errors,attr"`
	Skipped  int      `xml:"skipped,attr"`
	Suites   []xSuite `xml:"testsuite"`
}

type xSuite struct {
	Name      string  `xml:"name,attr"`
	File      string  `xml:"file,attr"`
	Tests     int     `xml:"tests,attr"`
	Failures  int     `xml:"failures,attr"`
	Errors    int     `xml:"errors,attr"`
	Skipped   int     `xml:"skipped,attr"`
	Time      float64 `xml:"time,attr"`
	Timestamp string  `xml:"timestamp,attr"`
	Cases     []xCase `xml:"testcase"`
	SystemOut string  `xml:"system-out"`
}

type xCase struct {
	Name      string   `xml:"name,attr"`
	Classname string   `xml:"classname,attr"`
	Time      float64  `xml:"time,attr"`
	Failure   *xResult `xml:"failure"`
	Error     *xResult `xml:"error"`
	Skipped   *xResult `xml:"skipped"`
}

type xResult struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

// parseJUnit decodes JUnit output and checks what every reporter relies
// on: the counts add up and no attribute holds a control character.
func parseJUnit(t *testing.T, out []byte) xSuites {
	t.Helper()
	var doc xSuites
	require.NoError(t, xml.Unmarshal(out, &doc), "output:\n%s", out)

	dec := xml.NewDecoder(bytes.NewReader(out))
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		if se, ok := tok.(xml.StartElement); ok {
			for _, a := range se.Attr {
				for _, c := range a.Value {
					if unicode.IsControl(c) {
						t.Errorf("<%s %s=%q>: control character %U", se.Name.Local, a.Name.Local, a.Value, c)
					}
				}
			}
		}
	}

	var tests, failures, errs, skipped int
	for _, s := range doc.Suites {
		var f, e, sk int
		for _, c := range s.Cases {
			if c.Failure != nil {
				f++
			}
			if c.Error != nil {
				e++
			}
			if c.Skipped != nil {
				sk++
			}
			if c.Classname == "" || c.Name == "" {
				t.Errorf("suite %q: testcase without name or classname: %+v", s.Name, c)
			}
		}
		if s.Tests != len(s.Cases) || s.Failures != f || s.Errors != e || s.Skipped != sk {
			t.Errorf("suite %q: attributes tests=%d failures=%d errors=%d skipped=%d, children %d/%d/%d/%d",
				s.Name, s.Tests, s.Failures, s.Errors, s.Skipped, len(s.Cases), f, e, sk)
		}
		tests, failures, errs, skipped = tests+s.Tests, failures+s.Failures, errs+s.Errors, skipped+s.Skipped
	}
	if doc.Tests != tests || doc.Failures != failures || doc.Errors != errs || doc.Skipped != skipped {
		t.Errorf("testsuites: tests=%d failures=%d errors=%d skipped=%d, suites add up to %d/%d/%d/%d",
			doc.Tests, doc.Failures, doc.Errors, doc.Skipped, tests, failures, errs, skipped)
	}
	return doc
}

func TestJUnitCounts(t *testing.T) {
	tests := []struct {
		journal                          string
		name, file                       string
		tests, failures, errors, skipped int
		// failed are the testcases with a <failure>, errored with an <error>.
		failed, errored []string
	}{
		{
			journal: "pass", name: "Slow AV engine: clean mail keeps flowing", file: "experiments/av-latency.yaml",
			tests: 6,
		},
		{
			journal: "recovery-failed", name: "Gray failure on the SMTP ingress", file: "experiments/gray-smtp.yaml",
			tests: 9, failures: 3,
			failed: []string{"recovery: delivery-p99", "recovery: overall", "invariant: no-duplicates"},
		},
		{
			journal: "aborted", name: "Load surge <10% infected> & a stalled engine", file: "experiments/surge & stall.yaml",
			tests: 4, errors: 2,
			errored: []string{"run", "rollback: step 2 gray-failure"},
		},
		{
			journal: "truncated", name: "Slow AV engine under the incident profile", file: "experiments/av-incident.yaml",
			tests: 3, errors: 2,
			errored: []string{"run", "rollback: step 1 av-latency"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.journal, func(t *testing.T) {
			var buf bytes.Buffer
			require.NoError(t, JUnit(&buf, readJournal(t, tt.journal)))
			doc := parseJUnit(t, buf.Bytes())
			require.Len(t, doc.Suites, 1)
			s := doc.Suites[0]
			if s.Name != tt.name || s.File != tt.file {
				t.Errorf("suite name=%q file=%q, want %q %q", s.Name, s.File, tt.name, tt.file)
			}
			if s.Tests != tt.tests || s.Failures != tt.failures || s.Errors != tt.errors || s.Skipped != tt.skipped {
				t.Errorf("tests=%d failures=%d errors=%d skipped=%d, want %d/%d/%d/%d",
					s.Tests, s.Failures, s.Errors, s.Skipped, tt.tests, tt.failures, tt.errors, tt.skipped)
			}
			if _, err := time.Parse("2006-01-02T15:04:05", s.Timestamp); err != nil {
				t.Errorf("timestamp %q: %v", s.Timestamp, err)
			}
			var failed, errored []string
			for _, c := range s.Cases {
				if c.Classname != tt.file {
					t.Errorf("testcase %q: classname %q, want %q", c.Name, c.Classname, tt.file)
				}
				if c.Failure != nil {
					failed = append(failed, c.Name)
				}
				if c.Error != nil {
					errored = append(errored, c.Name)
				}
			}
			require.Equal(t, tt.failed, failed)
			require.Equal(t, tt.errored, errored)
		})
	}
}

func TestJUnitDetails(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, JUnit(&buf, readJournal(t, "recovery-failed"), readJournal(t, "aborted")))
	doc := parseJUnit(t, buf.Bytes())
	require.Len(t, doc.Suites, 2)

	c := findCase(t, doc.Suites[0], "recovery: delivery-p99")
	require.NotNil(t, c.Failure)
	require.Equal(t, "delivery-p99 recovered in 1m15s, too late (bound: 1m)", c.Failure.Message)
	require.Equal(t, "recovery", c.Failure.Type)
	require.Contains(t, c.Failure.Text, "worst during faults 1m (out; 3 failed),")
	require.InDelta(t, 75, c.Time, 1e-9) // 75s into the recover phase

	c = findCase(t, doc.Suites[0], "baseline: delivery-p99")
	require.InDelta(t, 20, c.Time, 1e-9) // 20s into the baseline phase
	require.InDelta(t, 140, doc.Suites[0].Time, 1e-9)

	c = findCase(t, doc.Suites[1], "rollback: step 2 gray-failure")
	require.NotNil(t, c.Error)
	require.Equal(t, "rollback-failed", c.Error.Type)
	require.Contains(t, c.Error.Text, "av-engine-2/mailchaos-r-0304-abort-2, smtp-in/mailchaos-r-0304-abort-2b")
	require.Contains(t, c.Error.Text, "connection refused")

	c = findCase(t, doc.Suites[1], "run")
	require.NotNil(t, c.Error)
	require.Equal(t, "rollback-failed", c.Error.Type)
	require.Contains(t, c.Error.Text, "safety: imap-login below 50%")
	// The log line's escape sequences and tab are gone, its text is kept.
	require.Contains(t, doc.Suites[1].SystemOut, "3 log-ins refused in a row retrying")
}

func findCase(t *testing.T, s xSuite, name string) xCase {
	t.Helper()
	for _, c := range s.Cases {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("suite %q has no testcase %q", s.Name, name)
	return xCase{}
}

// hostile is a journal whose text tries to break every format.
func hostile() []journal.Event {
	t0 := time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)
	no := false
	return []journal.Event{
		{T: t0, Type: journal.TypeRunStart, Run: "r\x00", Title: "a <b> & \"c\" | *d* `e`\x1b[0m\nf", File: "x]]>.yaml"},
		{
			T: t0.Add(time.Second), Type: journal.TypeAssertion, Name: "recovery: p|99 ]]>", Passed: &no,
			Measured: "1s\x07", Bound: "<= \xff500ms", Message: "line 1\nline 2 ]]> <!-- --> \x01",
		},
		{
			T: t0.Add(2 * time.Second), Type: journal.TypeVerdict, Status: "failed\x0b", ExitCode: 1,
			Summary: &journal.Summary{SLIs: []journal.SLISummary{{Name: "p|99", Tolerance: "< 1s | x", Unit: "s"}}},
		},
	}
}

func TestJUnitEscapes(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, JUnit(&buf, hostile()))
	doc := parseJUnit(t, buf.Bytes())
	require.Len(t, doc.Suites, 1)
	s := doc.Suites[0]
	require.Equal(t, "a <b> & \"c\" | *d* `e` f", s.Name)
	require.Equal(t, "x]]>.yaml", s.File)
	c := findCase(t, s, "recovery: p|99 ]]>")
	require.NotNil(t, c.Failure)
	require.Equal(t, "p|99 ]]> recovered in 1s, too late (bound: <= 500ms)", c.Failure.Message)
	require.Contains(t, c.Failure.Text, "line 1 line 2 ]]> <!-- -->")
}

func TestMarkdownEscapes(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, Markdown(&buf, hostile()))
	out := buf.String()
	require.Contains(t, out, "## a \\<b\\> \\& \"c\" \\| \\*d\\* \\`e\\` f **FAIL**\n")
	// Every table line has the table's 8 unescaped pipes.
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "| ") {
			n := strings.Count(line, "|") - strings.Count(line, "\\|")
			require.Equal(t, 8, n, "line %q", line)
		}
	}
	require.Contains(t, out, "| p\\|99 | \\< 1s \\| x |")
	require.NotContains(t, out, "\x1b")
}

func TestTerminalCleansControlCharacters(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, Terminal(&buf, hostile()))
	for _, c := range buf.String() {
		if c != '\n' && unicode.IsControl(c) {
			t.Fatalf("output holds control character %U:\n%s", c, buf.String())
		}
	}
}

func TestSplit(t *testing.T) {
	ev := func(typ, run, name string) journal.Event {
		return journal.Event{Type: typ, Run: run, Name: name}
	}
	start, other := journal.TypeRunStart, journal.TypeLog
	tests := []struct {
		name string
		in   []journal.Event
		want [][]string // names, by run
	}{
		{"empty", nil, nil},
		{"one run", []journal.Event{ev(start, "a", "1"), ev(other, "a", "2")}, [][]string{{"1", "2"}}},
		{
			"two runs in a row",
			[]journal.Event{ev(start, "a", "1"), ev(other, "a", "2"), ev(start, "b", "3"), ev(other, "b", "4")},
			[][]string{{"1", "2"}, {"3", "4"}},
		},
		{
			"interleaved",
			[]journal.Event{ev(start, "a", "1"), ev(start, "b", "2"), ev(other, "a", "3"), ev(other, "b", "4")},
			[][]string{{"1", "3"}, {"2", "4"}},
		},
		{
			"no run ids",
			[]journal.Event{ev(start, "", "1"), ev(other, "", "2"), ev(start, "", "3"), ev(other, "", "4")},
			[][]string{{"1", "2"}, {"3", "4"}},
		},
		{
			"events before the first run-start",
			[]journal.Event{ev(other, "", "1"), ev(start, "a", "2")},
			[][]string{{"1"}, {"2"}},
		},
		{
			"id learnt after an anonymous run-start",
			[]journal.Event{ev(start, "", "1"), ev(other, "a", "2"), ev(other, "", "3")},
			[][]string{{"1", "2", "3"}},
		},
		{
			"new id without run-start",
			[]journal.Event{ev(start, "a", "1"), ev(other, "b", "2"), ev(other, "a", "3")},
			[][]string{{"1", "3"}, {"2"}},
		},
		{
			"reused id",
			[]journal.Event{ev(start, "a", "1"), ev(start, "a", "2"), ev(other, "a", "3")},
			[][]string{{"1"}, {"2", "3"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got [][]string
			for _, r := range Split(tt.in) {
				var names []string
				for _, e := range r {
					names = append(names, e.Name)
				}
				got = append(got, names)
			}
			require.Equal(t, tt.want, got)
		})
	}
}

func TestSplitTestdata(t *testing.T) {
	both := append(readJournal(t, "pass"), readJournal(t, "recovery-failed")...)
	runs := Split(both)
	require.Len(t, runs, 2)
	require.Equal(t, "r-0304-pass", runs[0][0].Run)
	require.Equal(t, "r-0304-slow", runs[1][0].Run)
	require.Len(t, runs[0], len(readJournal(t, "pass")))
}

func TestValue(t *testing.T) {
	tests := []struct {
		v    float64
		unit string
		want string
	}{
		{0.85, "s", "850ms"},
		{1.2, "s", "1.2s"},
		{1.25, "s", "1.2s"}, // halves round to even
		{12.25, "s", "12.2s"},
		{0.0025, "s", "2.5ms"},
		{0.0000425, "s", "42µs"},
		{0.9996, "s", "1s"},
		{75, "s", "1m15s"},
		{60, "s", "1m"},
		{3600, "s", "1h"},
		{3725, "s", "1h2m5s"},
		{0, "s", "0s"},
		{-1.5, "s", "-1.5s"},
		{1, "ratio", "100%"},
		{0.985, "ratio", "98.5%"},
		{0.92345, "ratio", "92.34%"},
		{140, "", "140"},
		{2.5e-7, "", "2.5e-07"},
		{12.5, "msg/s", "12.5 msg/s"},
	}
	for _, tt := range tests {
		if got := value(tt.v, tt.unit); got != tt.want {
			t.Errorf("value(%v, %q) = %q, want %q", tt.v, tt.unit, got, tt.want)
		}
	}
}

func TestEmptyRuns(t *testing.T) {
	for _, r := range renderers() {
		var buf bytes.Buffer
		require.NoError(t, r.render(&buf))
		require.NoError(t, r.render(&buf, nil, []journal.Event{}))
	}
	var buf bytes.Buffer
	require.NoError(t, JUnit(&buf))
	doc := parseJUnit(t, buf.Bytes())
	require.Empty(t, doc.Suites)
	// A journal with no run in it (the process was killed as it began)
	// did not finish: never a pass.
	sum := Summarize([]journal.Event{})
	require.Equal(t, StatusUnfinished, sum.Status)
	require.Equal(t, 3, sum.ExitCode)
}

// A run that passed without assertions still yields a passing testcase.
func TestJUnitRunWithoutAssertions(t *testing.T) {
	t0 := time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)
	evs := []journal.Event{
		{T: t0, Type: journal.TypeRunStart, Run: "r", Title: "smoke"},
		{T: t0.Add(time.Second), Type: journal.TypeVerdict, Run: "r", Status: journal.StatusCompleted, Duration: time.Second},
	}
	var buf bytes.Buffer
	require.NoError(t, JUnit(&buf, evs))
	doc := parseJUnit(t, buf.Bytes())
	require.Len(t, doc.Suites, 1)
	require.Len(t, doc.Suites[0].Cases, 1)
	c := doc.Suites[0].Cases[0]
	require.Equal(t, "run", c.Name)
	require.Equal(t, "smoke", c.Classname)
	require.Nil(t, c.Failure)
	require.Nil(t, c.Error)
}

// A removal that failed and then succeeded leaves nothing in place.
func TestRetriedRemoval(t *testing.T) {
	t0 := time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)
	h := &faults.Handle{ID: "h1", Fault: "gray-failure"}
	evs := []journal.Event{
		{T: t0, Type: journal.TypeRunStart, Run: "r", Title: "retry"},
		{T: t0, Type: journal.TypeInject, Run: "r", Step: 1, Fault: "gray-failure", Handle: h},
		{T: t0.Add(time.Second), Type: journal.TypeRemove, Run: "r", Step: 1, Fault: "gray-failure", Handle: h, Err: "timeout"},
		{T: t0.Add(2 * time.Second), Type: journal.TypeRemove, Run: "r", Step: 1, Fault: "gray-failure", Handle: h},
		{T: t0.Add(2 * time.Second), Type: journal.TypeVerdict, Run: "r", Status: journal.StatusCompleted},
	}
	var buf bytes.Buffer
	require.NoError(t, Terminal(&buf, evs))
	out := buf.String()
	require.Contains(t, out, "REMOVAL FAILED: timeout")
	require.NotContains(t, out, StatusRollbackFailed)
	require.Contains(t, out, "PASS: completed, exit code 0")
}

// failingWriter fails every write after its first n.
type failingWriter struct {
	n   int
	err error
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.n <= 0 {
		return 0, w.err
	}
	w.n--
	return len(p), nil
}

func TestWriteErrors(t *testing.T) {
	runs := readJournal(t, "recovery-failed")
	for _, r := range renderers() {
		writes := 3
		if r.ext == "json" {
			writes = 1 // the document is written at once
		}
		for n := range writes {
			w := &failingWriter{n: n, err: errors.New("disk full")}
			if err := r.render(w, runs); !errors.Is(err, w.err) {
				t.Errorf("%s, failing after %d writes: err = %v, want %v", r.ext, n, err, w.err)
			}
		}
	}
}

func TestClean(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"  padded\t", "padded"},
		{"a\nb\r\nc\td", "a b  c d"},
		{"\x1b[1;31mred\x1b[0m text", "red text"},
		{"bell\x07 nul\x00 del\x7f c1\u0085", "bell nul del c1"},
		{"bad \xff\xfe utf-8", "bad  utf-8"},
		{"kept \uFFFD replacement", "kept \uFFFD replacement"},
		{"non-char \uFFFE\uFFFF", "non-char"},
		{"µs and ≤", "µs and ≤"},
		{"trailing escape \x1b[", "trailing escape"},
	}
	for _, tt := range tests {
		if got := clean(tt.in); got != tt.want {
			t.Errorf("clean(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestOutstandingToxicsNameTheirServers(t *testing.T) {
	t0 := time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)
	h := &faults.Handle{ID: "s0", Fault: "gray-failure", Toxiproxy: "http://127.0.0.1:8474", Toxics: []faults.ToxicRef{
		{Proxy: "mta", Name: "mc.r.s0.1.0"},
		{Proxy: "clamd", Name: "mc.r.s0.1.1", Toxiproxy: "http://127.0.0.1:8475"},
		{Proxy: "smtp", Name: "mc.r.s0.1.2"},
	}}
	evs := []journal.Event{
		{T: t0, Type: journal.TypeRunStart, Run: "r", Title: "fleet"},
		{T: t0, Type: journal.TypeInject, Run: "r", Step: 0, Fault: "gray-failure", Handle: h},
		{T: t0.Add(time.Second), Type: journal.TypeRemove, Run: "r", Step: 0, Fault: "gray-failure", Handle: h, Err: "timeout"},
	}
	var buf bytes.Buffer
	require.NoError(t, Terminal(&buf, evs))
	require.Contains(t, buf.String(), "toxics mta/mc.r.s0.1.0, smtp/mc.r.s0.1.2 on http://127.0.0.1:8474; clamd/mc.r.s0.1.1 on http://127.0.0.1:8475")
}
