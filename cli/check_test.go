package cli_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/cli"
	"github.com/mailchaos/mailchaos/targets/realstack"
)

// steadyStateOnly is an experiment with no method: the embedded stack's
// delivery, queue and IMAP log-ins.
const steadyStateOnly = `version: 1
title: the embedded stack's steady state
steady-state:
  - name: delivery
    probe: smtp-canary
    interval: 500ms
    tolerance: { max: 5s }
  - name: queue
    probe: metric
    interval: 500ms
    params: { metric: mailstack_queue_depth }
    tolerance: { max: 500 }
  - name: login
    probe: imap-login
    interval: 500ms
    tolerance: { max: 2s, over: 2s, stat: p90 }
`

// writeFile writes an experiment file in a directory of the test's own.
func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	return writeAt(t, filepath.Join(t.TempDir(), name), body)
}

func TestCheckOnTheEmbeddedStackHolds(t *testing.T) {
	t.Parallel()
	file := writeFile(t, "steady.yaml", steadyStateOnly)
	code, out, stderr := run(t, "--log-level", "warn", "check", file, "--for", "3s")
	require.Equal(t, cli.ExitOK, code, "%s\n%s", out, stderr)
	// Its endpoints first, then one line an SLI, then the verdict.
	require.Regexp(t, `(?m)^smtp=127\.0\.0\.1:\d+$`, out)
	require.Regexp(t, `(?m)^imap=127\.0\.0\.1:\d+$`, out)
	require.Regexp(t, `(?m)^delivery  holds +\d+ samples  min \S+  median \S+  max \S+  bound <= 5s$`, out)
	require.Regexp(t, `(?m)^queue     holds +\d+ samples  min 0  median 0  max \d+  bound <= 500$`, out)
	require.Regexp(t, `(?m)^login     holds +\d+ samples  min \S+  median \S+  max \S+  worst p90 \S+  bound p90 of <= 2s over 2s$`, out)
	require.Contains(t, out, "the steady state holds (sampled 3")
	require.NotContains(t, out, "ignored", "the file has no method to ignore")
}

func TestCheckThatCannotHoldExitsOne(t *testing.T) {
	t.Parallel()
	// Nothing sends mail: the queue stays empty, below its minimum.
	file := writeFile(t, "busy.yaml", `version: 1
title: a queue that is never empty
steady-state:
  - name: queue
    probe: metric
    interval: 200ms
    params: { metric: mailstack_queue_depth }
    tolerance: { min: 1 }
`)
	code, out, stderr := run(t, "--log-level", "warn", "check", "-q", file, "--for", "1s")
	require.Equal(t, cli.ExitFailed, code, "%s\n%s", out, stderr)
	require.Regexp(t, `(?m)^queue  DOES NOT HOLD +\d+ samples  min 0  median 0  max 0  bound >= 1  out of tolerance at (\d+) of (\d+) samples, first \S+ in$`, out)
	require.Contains(t, stderr, "the steady state does not hold: queue")
	require.NotContains(t, out, "phase check", "--quiet shows no progress lines")
}

func TestCheckIgnoresTheMethodOfARunFile(t *testing.T) {
	t.Parallel()
	file := writeFile(t, "run.yaml", steadyStateOnly+`method:
  - fault: av-latency
    at: 0s
    for: 1m
    link: av-engine-2
    params: { latency: 8s }
recovery: { within: 5s }
invariants: [no-mail-lost]
`)
	code, out, stderr := run(t, "--log-level", "warn", "check", "-q", file, "--for", "1s")
	require.Equal(t, cli.ExitOK, code, "%s\n%s", out, stderr)
	require.Contains(t, out, "check: the method (1 fault), the recovery bound, the invariants are ignored: "+
		"check measures the steady state alone, with no fault\n")
	require.NotContains(t, out, "inject")
}

func TestRunWithAnEmptyMethodPointsAtCheck(t *testing.T) {
	t.Parallel()
	file := writeFile(t, "steady.yaml", steadyStateOnly+"method: []\n")
	for _, cmd := range []string{"run", "validate"} {
		code, _, stderr := run(t, cmd, file)
		require.Equal(t, cli.ExitInvalid, code, "%s: %s", cmd, stderr)
		require.Contains(t, stderr, file+":17:1: method: no fault: a run needs at least one; "+
			"to measure the steady state alone, use mailchaos check", cmd)
	}
}

func TestCheckInvalidInput(t *testing.T) {
	t.Parallel()
	bad := writeFile(t, "bad.yaml", strings.Replace(steadyStateOnly, "interval: 500ms", "intreval: 500ms", 1))
	loadOnly := "../experiments/testdata/check/load-only.yaml"
	steady := writeFile(t, "steady.yaml", steadyStateOnly)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"check", bad}, bad + `:6:5: steady-state[0].intreval: unknown field "intreval"`},
		{[]string{"check", filepath.Join(t.TempDir(), "missing.yaml")}, "missing.yaml: cannot read"},
		{[]string{"check"}, "check needs exactly one experiment FILE"},
		{[]string{"check", steady, steady}, "check needs exactly one experiment FILE, got 2"},
		{[]string{"check", steady, "--for", "0s"}, "flag --for: must be positive"},
		{[]string{"check", steady, "--for", "soon"}, "invalid value"},
		{[]string{"check", loadOnly}, "every SLI reads the load of a method step"},
	} {
		code, _, stderr := run(t, tt.args...)
		require.Equal(t, cli.ExitInvalid, code, "%v: %s", tt.args, stderr)
		require.Contains(t, stderr, tt.want, "%v", tt.args)
		require.NotContains(t, stderr, "goroutine ", "a stack trace reached the user")
	}
}

// refused reports whether nothing listens at addr any more.
func refused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return true
	}
	_ = c.Close()
	return false
}

func TestCheckStopsOnCtrlC(t *testing.T) {
	t.Parallel()
	file := writeFile(t, "steady.yaml", steadyStateOnly)
	out, errb, signal, done := startCLI(t, "--log-level", "warn", "check", file, "--for", "10m")
	eps := endpoints(t, out, "smtp", "imap", "metrics")
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "phase check") },
		waitFor, 10*time.Millisecond, "the check never started: %s", out.String())
	require.False(t, refused(eps["smtp"]), "the stack is not up")
	signal(os.Interrupt)
	require.Equal(t, cli.ExitAborted, waitExit(t, done), errb.String())
	require.Contains(t, errb.String(), "interrupted: the check stopped early and its target was stopped")
	// What it measured so far is shown; the stack is gone.
	require.Contains(t, out.String(), "\ndelivery  ")
	for _, name := range []string{"smtp", "imap", "metrics"} {
		require.True(t, refused(eps[name]), "%s still answers at %s", name, eps[name])
	}
}

// TestCheckOnTheRealStack checks the steady state of the real-stack catalog
// experiment against Debian's Postfix, clamav-milter, clamd and Dovecot:
// its method (a surge and a slow clamd) is ignored, and so is the SLI that
// reads the surge; the senders' transactions and the delivery hold.
func TestCheckOnTheRealStack(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a real mail stack")
	}
	stack := realstack.Start(t, realstack.Options{Mailchaos: mailchaosBinary(t), Profile: realstack.ProfileRemediated})
	heavyLane.take(t)
	code, out, stderr := runBinary(t, "--log-level", "warn", "check", "-q", "--target", stack.TargetFile, "--for", "10s",
		"../experiments/catalog/realstack/postfix-milter-remediated.yaml")
	require.Equal(t, cli.ExitOK, code, "%s\n%s", out, stderr)
	require.Contains(t, out, "check: the method (2 faults), the recovery bound are ignored")
	require.Regexp(t, `(?m)^clean-send +holds +\d+ samples`, out)
	require.Regexp(t, `(?m)^delivery +holds +\d+ samples`, out)
	require.Regexp(t, `(?m)^surge-accepted +not measured: it reads the load of a method step`, out)
	t.Log(out)
}
