package htmlreport_test

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mailchaos/mailchaos/experiments/journal"
	htmlreport "github.com/mailchaos/mailchaos/experiments/report/html"
	"github.com/mailchaos/mailchaos/experiments/report/html/browsertest"
	"github.com/mailchaos/mailchaos/internal/safefile"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// realRun is the journal of a short real run on the embedded stack
// (testdata/short.yaml: a load and a gray failure on an AV link).
func realRun(t *testing.T) []journal.Event {
	t.Helper()
	evs, err := journal.ReadFile(filepath.Join("testdata", "short.jsonl"))
	require.NoError(t, err)
	return evs
}

// samplesBySLI counts each SLI's samples, and the failed ones.
func samplesBySLI(evs []journal.Event) (all, failed map[string]int) {
	all, failed = map[string]int{}, map[string]int{}
	for _, e := range evs {
		if e.Type == journal.TypeSample {
			all[e.SLI]++
			if e.Failed {
				failed[e.SLI]++
			}
		}
	}
	return all, failed
}

func render(t *testing.T, evs []journal.Event) string {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, htmlreport.Render(&b, evs))
	return b.String()
}

func TestReportDrawsEverySLIOfARealRun(t *testing.T) {
	evs := realRun(t)
	page := render(t, evs)
	all, _ := samplesBySLI(evs)
	require.Len(t, all, 5)
	for name, n := range all {
		re := regexp.MustCompile(`<svg class="chart"[^>]* data-sli="` + regexp.QuoteMeta(name) + `" data-samples="(\d+)"`)
		m := re.FindStringSubmatch(page)
		require.NotNil(t, m, "no chart for SLI %s", name)
		require.Equal(t, strconv.Itoa(n), m[1], "samples drawn for %s", name)
	}
	// The load's charts, the faults' timeline and table, the verdict.
	require.Contains(t, page, `data-chart="method[0] rate"`)
	require.Contains(t, page, `data-chart="method[0] latency"`)
	require.Contains(t, page, `<svg class="gantt"`)
	require.Contains(t, page, `data-steps="2"`)
	require.Contains(t, page, `<table class="verdict">`)
	require.Contains(t, page, `<span class="badge st-pass">PASS</span> <span class="line">completed, exit code 0, after `)
	require.Contains(t, page, `class="ttr"`)
	require.Contains(t, page, `class="rbound"`)
	require.Contains(t, page, `class="baseline"`)
	// Self-contained: no script, nothing to fetch, a strict policy.
	require.NotContains(t, page, "<script")
	require.NotRegexp(t, `\s(src|href)=`, page)
	require.Contains(t, page, `http-equiv="Content-Security-Policy" content="default-src &#39;none&#39;; style-src &#39;sha256-`)
}

func TestReportMarksFailedSamples(t *testing.T) {
	evs := realRun(t)
	// The same run with its last delivery sample failed.
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Type == journal.TypeSample && evs[i].SLI == "delivery" {
			evs[i].Failed, evs[i].Err, evs[i].Value = true, "dial tcp: connection refused", 0
			break
		}
	}
	page := render(t, evs)
	require.Regexp(t, `data-sli="delivery" data-samples="\d+" data-failed="1"`, page)
	require.Equal(t, 1, strings.Count(page, `class="fail"`))
	require.Contains(t, page, "failed: dial tcp: connection refused")
}

// hostile is a journal whose every name and message tries to open markup.
func hostile() []journal.Event {
	const x = `<script>alert(1)</script><img src=x onerror=alert(2)>"'&`
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ok := true
	exp := []byte(`{"steady-state":[{"name":"` + strings.ReplaceAll(x, `"`, `\"`) + `","probe":"smtp-canary","tolerance":{"max":"2"}}],` +
		`"method":[{"name":"` + strings.ReplaceAll(x, `"`, `\"`) + `","fault":"av-latency","at":1000000000,"for":2000000000}],"recovery":{"within":3000000000,"hold":1000000000}}`)
	return []journal.Event{
		{T: t0, Type: journal.TypeRunStart, Run: "r" + x, Title: x, File: x, Experiment: exp},
		{T: t0, Type: journal.TypePhase, Run: "r" + x, Phase: "inject"},
		{T: t0.Add(time.Second), Type: journal.TypeSample, Run: "r" + x, SLI: x, At: t0.Add(time.Second), Value: 1},
		{T: t0.Add(time.Second), Type: journal.TypeInject, Run: "r" + x, Fault: x, Message: x},
		{T: t0.Add(2 * time.Second), Type: journal.TypeSample, Run: "r" + x, SLI: x, At: t0.Add(2 * time.Second), Failed: true, Err: x},
		{T: t0.Add(2 * time.Second), Type: journal.TypeLoad, Run: "r" + x, Fault: x, At: t0.Add(2 * time.Second),
			Load: &journal.LoadWindow{Seconds: 1, OfferedRate: 1, Tempfail: 1}},
		// A bare CR ends a line of an event stream.
		{T: t0.Add(3 * time.Second), Type: journal.TypeRemove, Run: "r" + x, Fault: x, Message: x, Err: x + "550 no\r\revent: done\rdata: forged\r\r"},
		{T: t0.Add(4 * time.Second), Type: journal.TypeAssertion, Run: "r" + x, Name: x, Passed: &ok, Measured: x, Bound: x, Message: x},
		{T: t0.Add(5 * time.Second), Type: journal.TypeVerdict, Run: "r" + x, Status: x, Message: x, Err: x,
			Summary: &journal.Summary{SLIs: []journal.SLISummary{{Name: x, Tolerance: x, Unit: x, LastFailure: x, FailedSamples: 1}}}},
	}
}

func TestReportEscapesTheJournal(t *testing.T) {
	page := render(t, hostile())
	require.NotContains(t, page, "<script")
	require.NotContains(t, page, "<img")
	require.Contains(t, page, "&lt;script&gt;alert(1)&lt;/script&gt;")
	require.Contains(t, page, `data-chart="method[0] failures"`)
}

func TestWriteFileReplacesFilesAndRefusesLinks(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "report.html")
	require.NoError(t, os.WriteFile(path, []byte("old"), 0o600))
	require.NoError(t, htmlreport.WriteFile(path, realRun(t)))
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Contains(t, string(b), `<svg class="chart"`)

	victim := filepath.Join(dir, "victim")
	require.NoError(t, os.WriteFile(victim, []byte("keep"), 0o600))
	link := filepath.Join(dir, "link.html")
	require.NoError(t, os.Symlink(victim, link))
	require.ErrorIs(t, htmlreport.WriteFile(link, realRun(t)), safefile.ErrSymlink)
	b, err = os.ReadFile(victim)
	require.NoError(t, err)
	require.Equal(t, "keep", string(b))
	left, err := filepath.Glob(filepath.Join(dir, ".*.tmp"))
	require.NoError(t, err)
	require.Empty(t, left)
}

func TestDashboardListensOnLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", "[::]:0", "192.0.2.1:0", ":0", "example.com:80"} {
		_, err := htmlreport.Listen(addr, htmlreport.NewLive())
		require.ErrorIs(t, err, htmlreport.ErrNotLoopback, addr)
	}
}

// sse reads server-sent events as a browser does: a line ends at CR, LF
// or CRLF; a field's name ends at the first colon and one space after it
// is dropped; a line starting with a colon is a comment; an empty line
// dispatches the event unless it has no data.
type sse struct{ r *bufio.Reader }

// line returns the next line, without its end.
func (s sse) line() (string, error) {
	var b strings.Builder
	for {
		c, err := s.r.ReadByte()
		if err != nil {
			return "", err
		}
		switch c {
		case '\n':
			return b.String(), nil
		case '\r':
			if n, err := s.r.Peek(1); err == nil && n[0] == '\n' {
				_, _ = s.r.ReadByte()
			}
			return b.String(), nil
		}
		b.WriteByte(c)
	}
}

// next returns the next event's name and data.
func (s sse) next() (string, string, error) {
	var name string
	var data []string
	for {
		line, err := s.line()
		if err != nil {
			return "", "", err
		}
		if line == "" {
			if data == nil {
				name = ""
				continue
			}
			if name == "" {
				name = "message"
			}
			return name, strings.Join(data, "\n"), nil
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			name = value
		case "data":
			data = append(data, value)
		}
	}
}

// mainOf returns what is inside a page's <main id="report">.
func mainOf(t *testing.T, page string) string {
	t.Helper()
	_, after, ok := strings.Cut(page, `<main id="report">`)
	require.True(t, ok, "no report in %.200s", page)
	body, _, ok := strings.Cut(after, "</main>")
	require.True(t, ok)
	return body
}

func TestDashboardStreamsTheRunAndEndsWithTheReport(t *testing.T) {
	evs := realRun(t)
	live := htmlreport.NewLive()
	srv, err := htmlreport.Listen("127.0.0.1:0", live)
	require.NoError(t, err)
	defer srv.Close(context.Background())
	client := &http.Client{Timeout: 30 * time.Second}

	// Foreign Hosts and other origins are refused.
	req, err := http.NewRequest(http.MethodGet, srv.URL(), nil)
	require.NoError(t, err)
	req.Host = "rebound.example:80"
	resp, err := client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	req, err = http.NewRequest(http.MethodGet, srv.URL()+"events", nil)
	require.NoError(t, err)
	req.Header.Set("Origin", "http://evil.example")
	resp, err = client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusForbidden, resp.StatusCode)

	// The page, with its script allowed by hash and nothing else.
	resp, err = client.Get(srv.URL())
	require.NoError(t, err)
	var page bytes.Buffer
	_, err = page.ReadFrom(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, page.String(), "script-src &#39;sha256-")
	require.Contains(t, page.String(), "The journal holds no run yet.")

	stream, err := http.Get(srv.URL() + "events")
	require.NoError(t, err)
	defer stream.Body.Close()
	require.Equal(t, "text/event-stream", stream.Header.Get("Content-Type"))
	events := sse{bufio.NewReader(stream.Body)}
	name, _, err := events.next()
	require.NoError(t, err)
	require.Equal(t, "report", name)

	// No more than MaxClients pages at once.
	var held []*http.Response
	for range htmlreport.MaxClients - 1 {
		r, err := http.Get(srv.URL() + "events")
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, r.StatusCode)
		held = append(held, r)
	}
	over, err := client.Get(srv.URL() + "events")
	require.NoError(t, err)
	over.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, over.StatusCode)
	for _, r := range held {
		r.Body.Close()
	}

	// The run goes: the first half of its events, then the rest.
	half := len(evs) / 2
	for _, e := range evs[:half] {
		live.Observe(e)
	}
	var last string
	for !strings.Contains(last, `class="chart"`) {
		name, last, err = events.next()
		require.NoError(t, err)
		require.Equal(t, "report", name)
	}
	for _, e := range evs[half:] {
		live.Observe(e)
	}
	closed := make(chan error, 1)
	go func() { closed <- srv.Close(context.Background()) }()
	for {
		name, data, err := events.next()
		require.NoError(t, err)
		if name == "done" {
			break
		}
		last = data
	}
	require.NoError(t, <-closed)
	require.Equal(t, mainOf(t, render(t, evs)), last, "the final live report is the report")
}

func TestReportInBrowser(t *testing.T) {
	evs := realRun(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "report.html")
	require.NoError(t, htmlreport.WriteFile(path, evs))
	url := "file://" + path
	b := browsertest.Start(t, func(u string) bool { return u == url })
	require.NoError(t, b.Navigate(url))

	all, _ := samplesBySLI(evs)
	// Every SLI chart is laid out with its line and points drawn.
	type chart struct {
		SLI    string  `json:"sli"`
		Width  float64 `json:"width"`
		Points int     `json:"points"`
		Line   float64 `json:"line"`
	}
	charts, err := browsertest.Eval[[]chart](b, `[...document.querySelectorAll("figure.sli svg.chart")].map(s => ({
		sli: s.dataset.sli, width: s.getBoundingClientRect().width,
		points: s.querySelectorAll("circle.pt").length,
		line: (s.querySelector("polyline.line") || {getTotalLength: () => 0}).getTotalLength()}))`)
	require.NoError(t, err)
	require.Len(t, charts, len(all))
	for _, c := range charts {
		require.Greater(t, c.Width, 300.0, c.SLI)
		require.Equal(t, all[c.SLI], c.Points, c.SLI)
		require.Greater(t, c.Line, 10.0, c.SLI)
	}
	// The load's charts too: one per kind, each series a line with a
	// point per window.
	n, lat := loadWindows(evs)
	type loadChart struct {
		Chart  string             `json:"chart"`
		Width  float64            `json:"width"`
		Points map[string]int     `json:"points"`
		Lines  map[string]float64 `json:"lines"`
	}
	loads, err := browsertest.Eval[[]loadChart](b, `[...document.querySelectorAll("figure.load")].map(f => {
		const s = f.querySelector("svg.chart.load"), points = {}, lines = {};
		s.querySelectorAll("circle.pt").forEach(c => points[c.dataset.series] = (points[c.dataset.series] || 0) + 1);
		s.querySelectorAll("polyline.line").forEach(l => lines[l.dataset.series] = (lines[l.dataset.series] || 0) + l.getTotalLength());
		return {chart: f.dataset.chart, width: s.getBoundingClientRect().width, points, lines};
	})`)
	require.NoError(t, err)
	require.Len(t, loads, 2)
	want := map[string]map[string]int{
		"method[0] rate":    {"offered": n, "accepted": n},
		"method[0] latency": {"p50": lat, "p99": lat},
	}
	for _, c := range loads {
		require.Greater(t, c.Width, 300.0, c.Chart)
		require.Equal(t, want[c.Chart], c.Points, c.Chart)
		for series := range want[c.Chart] {
			require.Greater(t, c.Lines[series], 100.0, "%s %s", c.Chart, series)
		}
	}
	scripts, err := browsertest.Eval[int](b, `document.scripts.length`)
	require.NoError(t, err)
	require.Zero(t, scripts)

	png, err := b.Screenshot()
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "report.png"), png, 0o600))
	stddev, colours, err := browsertest.Spread(png)
	require.NoError(t, err)
	t.Logf("screenshot: %d bytes, luminance stddev %.1f, %d colours", len(png), stddev, colours)
	require.Greater(t, stddev, 10.0, "the screenshot looks blank")
	require.Greater(t, colours, 50)
	require.Empty(t, b.Problems())
	require.Equal(t, []string{url}, b.Requests())
}

func TestHostileReportInBrowserRunsNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hostile.html")
	require.NoError(t, htmlreport.WriteFile(path, hostile()))
	url := "file://" + path
	b := browsertest.Start(t, func(u string) bool { return u == url })
	require.NoError(t, b.Navigate(url))
	title, err := browsertest.Eval[string](b, `document.querySelector("h1").textContent`)
	require.NoError(t, err)
	require.Equal(t, hostile()[0].Title, title)
	n, err := browsertest.Eval[int](b, `document.querySelectorAll("script, img, [onerror]").length`)
	require.NoError(t, err)
	require.Zero(t, n)
	require.Empty(t, b.Problems())
}

// TestBrowserSeesWhatAReportMustNotDo checks the checks: a page that logs
// an error and fetches something is caught.
func TestBrowserSeesWhatAReportMustNotDo(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.html")
	require.NoError(t, os.WriteFile(path, []byte(`<!DOCTYPE html><p>x</p><img src="http://127.0.0.1:9/x.png"><script>console.error("boom")</script>`), 0o600))
	url := "file://" + path
	b := browsertest.Start(t, func(u string) bool { return u == url })
	require.NoError(t, b.Navigate(url))
	problems := strings.Join(b.Problems(), "\n")
	require.Contains(t, problems, "boom")
	require.Contains(t, problems, "request: http://127.0.0.1:9/x.png")
}
