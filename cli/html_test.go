package cli_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/experiments/report/html/browsertest"
)

// shortRun is a short experiment on the embedded stack: a load and a gray
// failure, canary delivery and the load's rates measured.
const shortRun = "../experiments/report/html/testdata/short.yaml"

func TestDashboardRefusesAddressesOffLoopback(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	journal := filepath.Join(dir, "run.jsonl")
	code, _, stderr := runProcess(t, "run", "--journal", journal, "--dashboard", "0.0.0.0:0", shortRun)
	require.Equal(t, 2, code, stderr)
	require.Contains(t, stderr, "flag --dashboard")
	require.Contains(t, stderr, "not a loopback address")
	require.NoFileExists(t, journal, "nothing runs when the dashboard cannot")
	for _, addr := range []string{"127.0.0.1", "127.0.0.1:99999", "localhost:abc"} {
		code, _, stderr := runProcess(t, "run", "--journal", journal, "--dashboard", addr, shortRun)
		require.Equal(t, 2, code, "%s: %s", addr, stderr)
		require.Contains(t, stderr, "flag --dashboard", addr)
		require.NoFileExists(t, journal, addr)
	}
}

func TestReportHTMLRendersAJournal(t *testing.T) {
	t.Parallel()
	out := filepath.Join(t.TempDir(), "report.html")
	code, stdout, stderr := runProcess(t, "report", "--html", out, "../experiments/report/html/testdata/short.jsonl")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stdout, "PASS")
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	require.Equal(t, 5, strings.Count(string(b), `<figure class="sli"`))
}

// TestDashboardFollowsARealRunInABrowser runs a short experiment with
// --dashboard and --html, follows it in headless Chromium, sees a new
// sample arrive while it runs, and finds the page at the end equal to the
// HTML report.
func TestDashboardFollowsARealRunInABrowser(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("a real run")
	}
	dir := t.TempDir()
	report := filepath.Join(dir, "report.html")
	self, err := os.Executable()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, self, "run", "-q", "--journal", filepath.Join(dir, "run.jsonl"),
		"--html", report, "--dashboard", "127.0.0.1:0", shortRun)
	var out, errb syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	// The browser first: its start must not eat into the run.
	var url string
	b := browsertest.Start(t, func(u string) bool { return url != "" && (u == url || u == url+"events") })
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	re := regexp.MustCompile(`dashboard: (http://127\.0\.0\.1:\d+/)`)
	deadline := time.Now().Add(waitFor)
	for url == "" {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			url = m[1]
			break
		}
		require.True(t, time.Now().Before(deadline), "no dashboard address: %s\n%s", out.String(), errb.String())
		select {
		case err := <-exited:
			t.Fatalf("mailchaos exited before serving the dashboard: %v\n%s\n%s", err, out.String(), errb.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	require.NoError(t, b.Navigate(url))

	// A new sample appears on the page while the run goes.
	count := func() int {
		n, err := browsertest.Eval[string](b, `(document.querySelector('svg.chart[data-sli="delivery"]') || {dataset: {samples: "0"}}).dataset.samples`)
		require.NoError(t, err)
		v, err := strconv.Atoi(n)
		require.NoError(t, err)
		return v
	}
	state := func() string {
		s, err := browsertest.Eval[string](b, `document.getElementById("live").dataset.state`)
		require.NoError(t, err)
		return s
	}
	first := count()
	for count() <= first {
		require.NotEqual(t, "done", state(), "the run ended before the page saw a new sample")
		require.True(t, time.Now().Before(deadline.Add(time.Minute)), "no new sample on the page")
		time.Sleep(50 * time.Millisecond) // polling the page: nothing to wait on
	}
	require.Equal(t, "live", state())

	var runErr error
	select {
	case runErr = <-exited:
	case <-ctx.Done():
		t.Fatalf("the run took too long: %s\n%s", out.String(), errb.String())
	}
	var exit *exec.ExitError
	if errors.As(runErr, &exit) {
		t.Fatalf("mailchaos exited %d:\n%s\n%s", exit.ExitCode(), out.String(), errb.String())
	}
	require.NoError(t, runErr)
	require.Equal(t, "done", state(), "the page got the end of the run")
	live, err := browsertest.Eval[string](b, `document.getElementById("report").innerHTML`)
	require.NoError(t, err)

	// The HTML report, loaded in the same browser, has the same body.
	reportURL := "file://" + report
	url = reportURL // from here on only the report may be requested
	require.NoError(t, b.Navigate(reportURL))
	final, err := browsertest.Eval[string](b, `document.getElementById("report").innerHTML`)
	require.NoError(t, err)
	require.Equal(t, final, live, "the dashboard's last page is the HTML report")
	require.Contains(t, final, `class="chart"`)
	require.Empty(t, b.Problems())
}
