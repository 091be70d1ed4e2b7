package htmlreport_test

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/experiments/journal"
)

// loadWindows counts the load windows journaled for step 0, and those
// with latency figures.
func loadWindows(evs []journal.Event) (all, withLatency int) {
	for _, e := range evs {
		if e.Type == journal.TypeLoad && e.Step == 0 && e.Load != nil {
			all++
			if e.Load.P50 != nil {
				withLatency++
			}
		}
	}
	return all, withLatency
}

// chartOf returns the markup of the figure whose data-chart is key.
func chartOf(t *testing.T, page, key string) string {
	t.Helper()
	_, after, ok := strings.Cut(page, `<figure class="load" data-chart="`+key+`">`)
	require.True(t, ok, "no chart %s", key)
	fig, _, ok := strings.Cut(after, "</figure>")
	require.True(t, ok)
	return fig
}

// points counts the points of one series in a chart.
func points(chart, series string) int {
	return strings.Count(chart, `data-series="`+series+`" cx=`)
}

func TestReportDrawsTheLoadWindowByWindow(t *testing.T) {
	evs := realRun(t)
	n, lat := loadWindows(evs)
	require.GreaterOrEqual(t, n, 4, "the real run journals a window about every second of its 6s load")
	page := render(t, evs)

	require.Contains(t, page, `<section class="load-step" data-step="0"><h3>method[0] load-surge (surge)</h3>`)
	rate := chartOf(t, page, "method[0] rate")
	require.Contains(t, rate, `data-windows="`+strconv.Itoa(n)+`"`)
	for _, s := range []string{"offered", "accepted"} {
		require.Equal(t, n, points(rate, s), s)
		require.Regexp(t, `<polyline class="line s\d[^"]*" data-series="`+s+`" points="[^"]+ [^"]+"`, rate, s)
	}
	require.Contains(t, rate, " msg/s</title>")
	latency := chartOf(t, page, "method[0] latency")
	for _, s := range []string{"p50", "p99"} {
		require.Equal(t, lat, points(latency, s), s)
		require.Regexp(t, `<polyline class="line s\d[^"]*" data-series="`+s+`" points=`, latency, s)
	}
	require.NotContains(t, latency, `class="gap"`)
	// Nothing failed in the real run: no failures chart.
	require.NotContains(t, page, `data-chart="method[0] failures"`)
	// The windows say what the load SLIs' group charts said: not twice.
	require.NotContains(t, page, `data-chart="load: `)
	// The SLIs read from the load keep their own charts.
	require.Contains(t, page, `data-sli="accepted"`)

	// Every invariant is said, a passed one with its figures.
	require.Regexp(t, `<tr class="ok"><td>pass</td><td>invariant: no-mail-lost: \d+ accepted: 0 still queued at the end, 0 bounced`, page)
}

func TestReportMarksLoadWindowsThatAcceptedNothing(t *testing.T) {
	evs := realRun(t)
	n, _ := loadWindows(evs)
	require.GreaterOrEqual(t, n, 5)
	// The same run with its third window refused with tempfails and its
	// fourth cut off.
	seen := 0
	for i := range evs {
		if evs[i].Type != journal.TypeLoad || evs[i].Load == nil {
			continue
		}
		seen++
		w := *evs[i].Load
		switch seen {
		case 3:
			w.AcceptedRate, w.Tempfail, w.P50, w.P99 = 0, 1, nil, nil
		case 4:
			w.Cut = 0.25
		}
		evs[i].Load = &w
	}
	page := render(t, evs)
	latency := chartOf(t, page, "method[0] latency")
	require.Equal(t, 1, strings.Count(latency, `class="gap"`))
	require.Contains(t, latency, ": nothing accepted</title>")
	require.Contains(t, latency, "1 windows accepted nothing (marked on the axis)")
	require.Equal(t, n-1, points(latency, "p99"))
	// The line breaks at the gap: one piece before, one after.
	require.Equal(t, 2, strings.Count(latency, `data-series="p99" points=`))

	fail := chartOf(t, page, "method[0] failures")
	require.Equal(t, n, points(fail, "tempfail"))
	require.Equal(t, n, points(fail, "cut"))
	require.Equal(t, 0, points(fail, "rejected"), "a share that stayed zero is not drawn")
	require.Regexp(t, `tempfail peaked at 100% at &#43;[\d.]+s, cut peaked at 25% at &#43;[\d.]+s`, fail)
	require.Regexp(t, regexp.QuoteMeta(`tempfail +`)+`[\d.]+s 100%</title>`, fail)
}

func TestReportOfAnOlderJournalDrawsTheLoadSLIs(t *testing.T) {
	var evs []journal.Event
	for _, e := range realRun(t) {
		if e.Type != journal.TypeLoad {
			evs = append(evs, e)
		}
	}
	page := render(t, evs)
	require.NotContains(t, page, `class="load-step"`)
	require.Contains(t, page, `data-chart="load: offered and accepted rate"`)
	require.Contains(t, page, `data-chart="load: latency"`)
}
