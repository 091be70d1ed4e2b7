package htmlreport_test

import (
	"bytes"
	"context"
	"encoding/json"
	"html"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/experiments/journal"
	"github.com/mailchaos/mailchaos/experiments/report"
	htmlreport "github.com/mailchaos/mailchaos/experiments/report/html"
	"github.com/mailchaos/mailchaos/experiments/report/html/browsertest"
)

// exitJournals are the golden journals of every exit path.
func exitJournals(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "testdata", "exit-*.jsonl"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 7, "a golden journal per exit path")
	return files
}

// told is what the terminal and JSON summaries say of a one-run journal.
type told struct {
	run report.RunSummary
	// badges are the terminal's status word and second badge, if any.
	badges []string
	// table is the terminal's SLI table, header left out; nil without one.
	table [][]string
}

func summaries(t *testing.T, evs []journal.Event) told {
	t.Helper()
	var js bytes.Buffer
	require.NoError(t, report.JSON(&js, evs))
	var sum report.Summary
	require.NoError(t, json.Unmarshal(js.Bytes(), &sum))
	require.Len(t, sum.Runs, 1)
	var term bytes.Buffer
	require.NoError(t, report.Terminal(&term, evs))
	out := told{run: sum.Runs[0]}
	lines := strings.Split(term.String(), "\n")
	badge := regexp.MustCompile(`^  ([A-Z][A-Z ]*?)(?:, ([A-Z][A-Z ]*?))?: `)
	for _, l := range lines {
		if m := badge.FindStringSubmatch(l); m != nil {
			out.badges = []string{m[1]}
			if m[2] != "" {
				out.badges = append(out.badges, m[2])
			}
			break
		}
	}
	require.NotNil(t, out.badges, "no status line in\n%s", term.String())
	out.table = terminalTable(lines)
	return out
}

// terminalTable cuts the terminal's SLI table into cells at the columns of
// its header.
func terminalTable(lines []string) [][]string {
	headers := []string{"SLI", "tolerance", "baseline", "worst during faults", "time to recover", "bound", "verdict"}
	for i, l := range lines {
		if !strings.HasPrefix(l, "  SLI ") || !strings.Contains(l, "worst during faults") {
			continue
		}
		var cols []int
		for _, name := range headers {
			cols = append(cols, len([]rune(l[:strings.Index(l, name)])))
		}
		var rows [][]string
		for _, row := range lines[i+1:] {
			if strings.TrimSpace(row) == "" || strings.HasPrefix(row, "  time to recover counted") {
				break
			}
			r := []rune(row)
			cells := make([]string, len(cols))
			for c, start := range cols {
				end := len(r)
				if c+1 < len(cols) {
					end = min(cols[c+1], len(r))
				}
				if start < len(r) {
					cells[c] = strings.TrimSpace(string(r[start:end]))
				}
			}
			rows = append(rows, cells)
		}
		return rows
	}
	return nil
}

// Markup of the page, read with regular expressions: html/template writes
// it, so its shape is known.
var (
	reBadges   = regexp.MustCompile(`<span class="badge ([a-z-]+)[^"]*">([^<]*)</span>`)
	reVerdict  = regexp.MustCompile(`(?s)<table class="verdict">.*?<tbody>(.*?)</tbody>`)
	reRow      = regexp.MustCompile(`(?s)<tr[^>]*>(.*?)</tr>`)
	reCell     = regexp.MustCompile(`(?s)<td>(.*?)</td>`)
	reReason   = regexp.MustCompile(`<p class="message reason">([^<]*)</p>`)
	reFailed   = regexp.MustCompile(`(?s)<ul class="asserts">(.*?)</ul>`)
	reItem     = regexp.MustCompile(`<li[^>]*>([^<]*)</li>`)
	reInvTable = regexp.MustCompile(`(?s)<table class="invariants">(.*?)</table>`)
)

// rows are the cells of each row of markup's table body.
func rows(body string) [][]string {
	var out [][]string
	for _, r := range reRow.FindAllStringSubmatch(body, -1) {
		var cells []string
		for _, c := range reCell.FindAllStringSubmatch(r[1], -1) {
			cells = append(cells, html.UnescapeString(c[1]))
		}
		out = append(out, cells)
	}
	return out
}

// expectedRow is the row of an SLI by the summary's own fields, its
// bound left "-".
func expectedRow(s report.SLIResult) []string {
	row := []string{s.Name, s.Tolerance, "-", "-", "-", "-", "-"}
	if row[1] == "" {
		row[1] = "-"
	}
	if s.Baseline != nil {
		row[2] = s.Baseline.Text
	}
	if s.Worst != nil {
		row[3] = s.Worst.Text
	}
	if s.Recovery != nil {
		row[4] = s.Recovery.Text
	}
	if s.Passed != nil {
		row[6] = map[bool]string{true: "pass", false: "FAIL"}[*s.Passed]
	}
	return row
}

func TestPageSaysWhatTheSummarySaysOnEveryExitPath(t *testing.T) {
	for _, file := range exitJournals(t) {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".jsonl"), func(t *testing.T) {
			evs, err := journal.ReadFile(file)
			require.NoError(t, err)
			want := summaries(t, evs)
			page := render(t, evs)

			// The status word, and the second badge, as the terminal says.
			var badges []string
			for _, m := range reBadges.FindAllStringSubmatch(page, -1) {
				badges = append(badges, html.UnescapeString(m[2]))
			}
			require.Equal(t, want.badges, badges)
			require.Equal(t, want.run.Status, badges[0])
			require.Contains(t, page, `data-status="`+want.run.Status+`"`)

			// The verdict table: the terminal's cells, and the summary's.
			m := reVerdict.FindStringSubmatch(page)
			if want.table == nil {
				require.Nil(t, m, "a verdict table the terminal does not have")
				require.True(t, !want.run.Finished || len(want.run.SLIs) == 0, "a finished run with SLIs has a table")
			} else {
				require.NotNil(t, m, "no verdict table")
				got := rows(m[1])
				require.Equal(t, want.table, got, "the terminal's table")
				for i, s := range want.run.SLIs {
					// The bound is the run's recovery bound, judged or not.
					wantRow, gotRow := expectedRow(s), append([]string(nil), got[i]...)
					require.Equal(t, s.Recovery == nil, gotRow[5] == "-", "bound of %s", s.Name)
					gotRow[5] = "-"
					require.Equal(t, wantRow, gotRow, "the JSON summary's %s", s.Name)
				}
				overall := got[len(got)-1]
				require.Equal(t, "overall", overall[0])
				require.Equal(t, want.run.Status, overall[6])
			}

			// The reason, once; the failed assertions and invariants as
			// sentences.
			if want.run.Reason != "" {
				r := reReason.FindStringSubmatch(page)
				require.NotNil(t, r, "no reason")
				require.True(t, strings.HasPrefix(html.UnescapeString(r[1]), want.run.Reason), r[1])
				require.Equal(t, 1, strings.Count(html.UnescapeString(page), want.run.Reason), "the reason is said once")
			}
			var failed []string
			if f := reFailed.FindStringSubmatch(page); f != nil {
				for _, li := range reItem.FindAllStringSubmatch(f[1], -1) {
					failed = append(failed, html.UnescapeString(li[1]))
				}
			}
			var wantFailed []string
			for _, c := range want.run.Failed {
				wantFailed = append(wantFailed, c.Sentence)
			}
			require.Equal(t, wantFailed, failed)
			var inv [][]string
			if f := reInvTable.FindStringSubmatch(page); f != nil {
				inv = rows(f[1])
			}
			var wantInv [][]string
			for _, c := range want.run.Invariants {
				word := "skip"
				if c.Passed != nil {
					word = map[bool]string{true: "pass", false: "FAIL"}[*c.Passed]
				}
				wantInv = append(wantInv, []string{word, c.Sentence})
			}
			require.Equal(t, wantInv, inv)
		})
	}
}

// TestStatusBadgeColours checks each status word's colour class: green
// for PASS, red for FAIL, ERROR and ROLLBACK FAILED, amber for a run
// stopped or unfinished.
func TestStatusBadgeColours(t *testing.T) {
	want := map[string]string{
		report.StatusPass: "st-pass", report.StatusFail: "st-bad", report.StatusError: "st-bad",
		report.StatusRollbackFailed: "st-bad", report.StatusAborted: "st-warn",
		report.StatusInterrupted: "st-warn", report.StatusUnfinished: "st-warn",
	}
	seen := map[string]bool{}
	for _, file := range exitJournals(t) {
		evs, err := journal.ReadFile(file)
		require.NoError(t, err)
		m := reBadges.FindStringSubmatch(render(t, evs))
		require.NotNil(t, m, file)
		require.Equal(t, want[m[2]], m[1], "%s: %s", file, m[2])
		seen[m[2]] = true
	}
	for _, s := range []string{report.StatusPass, report.StatusFail, report.StatusAborted, report.StatusInterrupted,
		report.StatusError, report.StatusRollbackFailed, report.StatusUnfinished} {
		require.True(t, seen[s], "no golden journal reads %s", s)
	}
}

// TestExitPathsInBrowser loads each exit path's report in Chromium and
// reads the status badge and the verdict table from the DOM.
func TestExitPathsInBrowser(t *testing.T) {
	dir := t.TempDir()
	var urls []string
	files := exitJournals(t)
	for _, file := range files {
		path := filepath.Join(dir, strings.TrimSuffix(filepath.Base(file), ".jsonl")+".html")
		evs, err := journal.ReadFile(file)
		require.NoError(t, err)
		require.NoError(t, htmlreport.WriteFile(path, evs))
		urls = append(urls, "file://"+path)
	}
	allowed := map[string]bool{}
	for _, u := range urls {
		allowed[u] = true
	}
	b := browsertest.Start(t, func(u string) bool { return allowed[u] })
	for i, file := range files {
		evs, err := journal.ReadFile(file)
		require.NoError(t, err)
		want := summaries(t, evs)
		require.NoError(t, b.Navigate(urls[i]))
		badges, err := browsertest.Eval[[]string](b, `[...document.querySelectorAll("p.status .badge")].map(e => e.textContent)`)
		require.NoError(t, err)
		require.Equal(t, want.badges, badges, file)
		colour, err := browsertest.Eval[string](b, `getComputedStyle(document.querySelector("p.status .badge")).backgroundColor`)
		require.NoError(t, err)
		require.NotEqual(t, "rgba(0, 0, 0, 0)", colour, "%s: the badge has a colour", file)
		cells, err := browsertest.Eval[[][]string](b, `[...document.querySelectorAll("table.verdict tbody tr")].map(r => [...r.cells].map(c => c.textContent))`)
		require.NoError(t, err)
		if want.table == nil {
			require.Empty(t, cells, file)
		} else {
			require.Equal(t, want.table, cells, file)
		}
	}
	require.Empty(t, b.Problems())
}

// TestDashboardSaysRunningThenWhatTheReportSays follows each exit path's
// journal live: a run without its verdict reads RUNNING while the page
// follows it, and once the runs are over the page is the report, status
// word and all (a crashed run's included: DID NOT FINISH).
func TestDashboardSaysRunningThenWhatTheReportSays(t *testing.T) {
	client := &http.Client{Timeout: 30 * time.Second}
	get := func(url string) string {
		resp, err := client.Get(url)
		require.NoError(t, err)
		defer resp.Body.Close()
		var b bytes.Buffer
		_, err = b.ReadFrom(resp.Body)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		return b.String()
	}
	for _, file := range exitJournals(t) {
		evs, err := journal.ReadFile(file)
		require.NoError(t, err)
		live := htmlreport.NewLive()
		srv, err := htmlreport.Listen("127.0.0.1:0", live)
		require.NoError(t, err)
		// Up to the verdict: the run is going.
		i := 0
		for ; i < len(evs) && evs[i].Type != journal.TypeVerdict; i++ {
			live.Observe(evs[i])
		}
		require.Contains(t, get(srv.URL()), `<span class="badge st-run">RUNNING</span>`, file)
		for ; i < len(evs); i++ {
			live.Observe(evs[i])
		}
		live.Finish()
		page := get(srv.URL())
		require.NoError(t, srv.Close(context.Background()))
		require.Equal(t, mainOf(t, render(t, evs)), mainOf(t, page), "%s: the final page is the report", file)
		require.Contains(t, page, `data-status="`+summaries(t, evs).run.Status+`"`, file)
	}
}
