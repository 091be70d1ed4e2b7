package htmlreport_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/experiments/journal"
	htmlreport "github.com/mailchaos/mailchaos/experiments/report/html"
)

// TestReportIgnoresStepsOutsideThePlan feeds fault and load events whose
// step is negative or far past the plan (and, without a plan, past the
// cap): the page neither panics nor grows a row for them.
func TestReportIgnoresStepsOutsideThePlan(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	plan := []byte(`{"method":[{"name":"slow","fault":"av-latency","at":0,"for":1000000000}]}`)
	hostileSteps := func(start journal.Event, steps ...int) []journal.Event {
		evs := []journal.Event{start, {T: t0, Type: journal.TypePhase, Run: "r", Phase: "inject"}}
		for _, s := range steps {
			evs = append(evs,
				journal.Event{T: t0, Type: journal.TypeInject, Run: "r", Step: s, Fault: "x"},
				journal.Event{T: t0, Type: journal.TypeRemove, Run: "r", Step: s, Fault: "x"},
				journal.Event{T: t0, Type: journal.TypeLoad, Run: "r", Step: s, At: t0, Load: &journal.LoadWindow{Seconds: 1, OfferedRate: 1}})
		}
		return evs
	}
	for _, c := range []struct {
		name  string
		evs   []journal.Event
		steps int
	}{
		{"plan", hostileSteps(journal.Event{T: t0, Type: journal.TypeRunStart, Run: "r", Experiment: plan}, -1, 0, 1, 100000), 1},
		{"no plan", hostileSteps(journal.Event{T: t0, Type: journal.TypeRunStart, Run: "r"}, -1, 0, 1024, 100000), 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			page := render(t, c.evs)
			require.Contains(t, page, fmt.Sprintf(`data-steps="%d"`, c.steps))
			require.Equal(t, 1, strings.Count(page, `data-chart="method[`)/2, "one load step drawn")
			require.NotContains(t, page, "method[-1]")
			require.NotContains(t, page, "method[100000]")
		})
	}
}

// following is a live view that has observed evs, served on loopback
// until the test ends.
func following(t *testing.T, evs []journal.Event) (*htmlreport.Live, *htmlreport.Server) {
	t.Helper()
	live := htmlreport.NewLive()
	srv, err := htmlreport.Listen("127.0.0.1:0", live)
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close(context.Background()) })
	for _, e := range evs {
		live.Observe(e)
	}
	return live, srv
}

// TestDashboardStreamCannotBeForged follows the hostile journal live: its
// removal error, with bare CRs that end lines of an event stream, stays
// inside the report's data, and the only "done" is the server's.
func TestDashboardStreamCannotBeForged(t *testing.T) {
	evs := hostile()
	live, srv := following(t, evs)
	stream, err := http.Get(srv.URL() + "events")
	require.NoError(t, err)
	defer stream.Body.Close()
	events := sse{bufio.NewReader(stream.Body)}
	name, last, err := events.next()
	require.NoError(t, err)
	require.Equal(t, "report", name)
	require.Contains(t, last, "550 no")
	live.Finish()
	for {
		name, data, err := events.next()
		require.NoError(t, err)
		if name == "done" {
			require.Equal(t, "end", data)
			break
		}
		require.Equal(t, "report", name)
		last = data
	}
	require.NoError(t, srv.Close(context.Background()))
	// The report, its line ends as the stream carries them.
	want := strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(mainOf(t, render(t, evs)))
	require.Equal(t, want, last)
}

// TestReportSaysAnAbortWithControlCharactersOnce: the verdict's reason is
// the abort's message, cleaned; the page says it once, with its time.
func TestReportSaysAnAbortWithControlCharactersOnce(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	const msg = "probe \x1b[31mfailed\x07 hard\tnow"
	code := 3
	evs := []journal.Event{
		{T: t0, Type: journal.TypeRunStart, Run: "r"},
		{T: t0.Add(time.Second), Type: journal.TypeAbort, Run: "r", Message: msg},
		{T: t0.Add(2 * time.Second), Type: journal.TypeVerdict, Run: "r", Status: "aborted", Message: msg, ExitCode: code},
	}
	page := render(t, evs)
	require.Equal(t, 1, strings.Count(page, "probe failed hard now"))
	require.Contains(t, page, "probe failed hard now (at &#43;1s)")
	require.NotContains(t, page, "abort at")
}

// TestDashboardPastItsCapStillEndsWithTheReport follows a real run with
// a cap of a few samples per SLI and windows per load: the live view keeps
// every other event, so its final page is the report (verdict and all),
// which draws as few and says how many it left out.
func TestDashboardPastItsCapStillEndsWithTheReport(t *testing.T) {
	defer htmlreport.SetMaxSamples(3)()
	evs := realRun(t)
	live, srv := following(t, evs)
	live.Finish()
	resp, err := http.Get(srv.URL())
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, srv.Close(context.Background()))
	want := mainOf(t, render(t, evs))
	require.Contains(t, want, `<span class="badge st-pass">PASS</span>`)
	require.Contains(t, want, "samples past the first of each SLI are not drawn")
	require.Contains(t, want, "windows past the first are not drawn")
	require.Equal(t, want, mainOf(t, string(b)))
}
