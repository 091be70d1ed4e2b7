package cli_test

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/mailchaos/mailchaos/cli"
	"github.com/mailchaos/mailchaos/experiments/journal"
	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/network"
	"github.com/mailchaos/mailchaos/targets/proxy"
)

func TestInvalidExperimentsExitTwo(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("../experiments/testdata/invalid/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		for _, cmd := range []string{"validate", "run"} {
			code, _, stderr := run(t, cmd, f)
			require.Equal(t, cli.ExitInvalid, code, "%s %s: %s", cmd, f, stderr)
			require.Contains(t, stderr, filepath.Base(f))
			require.NotContains(t, stderr, "goroutine ", "a stack trace reached the user")
		}
	}
	code, out, _ := run(t, "validate", "../experiments/catalog/av-latency-remediated.yaml")
	require.Equal(t, cli.ExitOK, code)
	require.Contains(t, out, "av-latency-remediated.yaml: ok")
}

func TestSchemaIsJSON(t *testing.T) {
	t.Parallel()
	code, out, _ := run(t, "schema")
	require.Equal(t, cli.ExitOK, code)
	require.Contains(t, out, `"steady-state"`)
	require.Contains(t, out, `"$schema"`)
}

// A lane runs experiments whose verdicts depend on the machine's pace one
// after the other, in the order they ask; lanes run alongside each other
// and the other tests. The heavy lane has the AV pair (its 250 msg/s surge
// needs most of a core) and then the real-stack pair (Postfix, clamd and
// Dovecot under a surge): side by side, or beside each other's lanes, they
// would measure each other. The access pair is light.
var heavyLane, accessLane = make(lane, 1), make(lane, 1)

type lane chan struct{}

// take waits for t's turn in the lane, which passes on when t ends.
func (l lane) take(t *testing.T) {
	t.Helper()
	l <- struct{}{}
	t.Cleanup(func() { <-l })
}

// TestCatalogIncidentPairs runs both incident pairs end to end: the
// incident settings must fail their recovery bound (exit 1), the
// remediated ones must pass (exit 0).
func TestCatalogIncidentPairs(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs four experiments of about a minute")
	}
	// Each experiment runs its own embedded stack on free ports, in a
	// process of its own: the mailchaos binary, built without the race
	// detector, which makes the stack and the load generator several
	// times more expensive.
	for _, tt := range []struct {
		file string
		lane lane
		want int
	}{
		{"av-latency-incident.yaml", heavyLane, cli.ExitFailed},
		{"av-latency-remediated.yaml", heavyLane, cli.ExitOK},
		{"access-gray-shallow.yaml", accessLane, cli.ExitFailed},
		{"access-gray-deep.yaml", accessLane, cli.ExitOK},
	} {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			tt.lane.take(t)
			dir := t.TempDir()
			junit, summary, jpath := filepath.Join(dir, "junit.xml"), filepath.Join(dir, "summary.md"), filepath.Join(dir, "journal.jsonl")
			sjson := filepath.Join(dir, "summary.json")
			// As the README shows it, at the default log level: -q prints
			// the summary and nothing else (a failed run adds one line
			// naming its exit).
			code, out, stderr := runBinary(t, "run", "-q", "--journal", jpath, "--junit", junit, "--summary", summary,
				"--summary-json", sjson, "../experiments/catalog/"+tt.file)
			require.Equal(t, tt.want, code, "%s\n%s", out, stderr)
			require.Contains(t, out, "time to recover")
			if tt.want == cli.ExitOK {
				require.Empty(t, stderr)
			} else {
				require.Equal(t, "mailchaos: the system under test failed: see the summary\n", stderr)
			}
			requireValidSummary(t, sjson)

			data, err := os.ReadFile(junit)
			require.NoError(t, err)
			var suites struct {
				Tests    int `xml:"tests,attr"`
				Failures int `xml:"failures,attr"`
			}
			require.NoError(t, xml.Unmarshal(data, &suites))
			require.Positive(t, suites.Tests)
			require.Equal(t, tt.want == cli.ExitFailed, suites.Failures > 0)
			md, err := os.ReadFile(summary)
			require.NoError(t, err)
			require.Contains(t, string(md), "| SLI |")

			evs, err := journal.ReadFile(jpath)
			require.NoError(t, err)
			require.Empty(t, journal.Outstanding(evs))
			require.Equal(t, journal.TypeVerdict, evs[len(evs)-1].Type)
			if sum := evs[len(evs)-1].Summary; sum != nil {
				t.Logf("%s: time to recover %s (bound %s)", tt.file, sum.TimeToRecover, sum.RecoveryBound)
				for _, s := range sum.SLIs {
					t.Logf("%s: %s baseline %g worst %g (%d failed) recovered in %s", tt.file, s.Name, s.Baseline, s.Worst, s.FailedSamples, s.TimeToRecover)
				}
			}

			// The journal renders again, the same way.
			code, again, _ := runBinary(t, "report", jpath)
			require.Equal(t, cli.ExitOK, code)
			require.Equal(t, out, again, "-q: stdout is the summary alone")
		})
	}
}

func TestRunStopsOnSignals(t *testing.T) {
	t.Parallel()
	for _, signals := range [][]os.Signal{{os.Interrupt}, {os.Interrupt, syscall.SIGTERM}} {
		t.Run(strings.Repeat("signal ", len(signals)), func(t *testing.T) {
			jpath := filepath.Join(t.TempDir(), "j.jsonl")
			out, errb, signal, done := startCLI(t, "--log-level", "warn", "run", "--journal", jpath,
				"../experiments/catalog/av-latency-remediated.yaml")
			require.Eventually(t, func() bool { return strings.Contains(out.String(), "inject av-latency") },
				waitFor, 10*time.Millisecond, "the faults never went in: %s %s", out.String(), errb.String())
			start := time.Now()
			for _, s := range signals {
				signal(s)
			}
			require.Equal(t, cli.ExitAborted, waitExit(t, done), errb.String())
			require.Less(t, time.Since(start), 15*time.Second)
			evs, err := journal.ReadFile(jpath)
			require.NoError(t, err)
			last := evs[len(evs)-1]
			require.Equal(t, journal.TypeVerdict, last.Type)
			require.Equal(t, journal.StatusInterrupted, last.Status)
			if len(signals) == 1 {
				require.Empty(t, journal.Outstanding(evs), "the first signal must roll every fault back")
			}
		})
	}
}

func TestRecoverRemovesWhatACrashedRunLeft(t *testing.T) {
	t.Parallel()
	srv, err := proxy.StartServer(context.Background(), "127.0.0.1:0", nil)
	require.NoError(t, err)
	defer srv.Close()
	_, err = srv.Link(context.Background(), "svc", "127.0.0.1:0", lineServer(t))
	require.NoError(t, err)
	name := network.ToxicName("run-1", "s0", time.Now().Add(time.Hour), 0)
	require.NoError(t, srv.Client().AddToxic(context.Background(), "svc", network.Toxic{Name: name, Type: network.ToxicBlackhole, Stream: network.Downstream}))
	h := faults.Handle{ID: "s0", Fault: "gray-failure", Owner: "run-1", Toxiproxy: srv.URL(),
		Toxics: []faults.ToxicRef{{Proxy: "svc", Name: name}}}
	jpath := filepath.Join(t.TempDir(), "crashed.jsonl")
	jw, err := journal.Create(jpath, "run-1")
	require.NoError(t, err)
	require.NoError(t, jw.Write(journal.Event{Type: journal.TypeRunStart, Title: "crashed"}))
	require.NoError(t, jw.Write(journal.Event{Type: journal.TypeInject, Fault: "gray-failure", Handle: &h}))
	require.NoError(t, jw.Close())

	_, out, _ := run(t, "report", jpath)
	require.Contains(t, out, "NOT REMOVED")
	code, out, stderr := run(t, "recover", jpath)
	require.Equal(t, cli.ExitOK, code, stderr)
	require.Contains(t, out, "removed s0 (gray-failure)")
	require.Zero(t, toxicsOn(t, srv.Client()))

	// A fault of a plugin that is no longer installed: its toxics are
	// removed all the same, named as they are after the fault.
	name = network.ToxicName("run-2", "s0", time.Now().Add(time.Hour), 0)
	require.NoError(t, srv.Client().AddToxic(context.Background(), "svc", network.Toxic{Name: name, Type: network.ToxicBlackhole, Stream: network.Downstream}))
	h = faults.Handle{ID: "s0", Fault: "uninstalled-plugin", Owner: "run-2", Toxiproxy: srv.URL(),
		Toxics: []faults.ToxicRef{{Proxy: "svc", Name: name}}}
	jpath2 := filepath.Join(t.TempDir(), "crashed2.jsonl")
	jw, err = journal.Create(jpath2, "run-2")
	require.NoError(t, err)
	require.NoError(t, jw.Write(journal.Event{Type: journal.TypeInject, Fault: h.Fault, Handle: &h}))
	require.NoError(t, jw.Close())
	code, out, stderr = run(t, "recover", jpath2)
	require.Equal(t, cli.ExitOK, code, stderr)
	require.Contains(t, out, "removed s0 (uninstalled-plugin)")
	require.Zero(t, toxicsOn(t, srv.Client()))

	code, out, _ = run(t, "report", jpath)
	require.Equal(t, cli.ExitOK, code)
	require.NotContains(t, out, "NOT REMOVED", "recover wrote what it did into the journal")
	code, out, _ = run(t, "recover", jpath)
	require.Equal(t, cli.ExitOK, code)
	require.Contains(t, out, "nothing to recover")
	code, _, stderr = run(t, "recover", filepath.Join(t.TempDir(), "missing.jsonl"))
	require.Equal(t, cli.ExitInvalid, code, stderr)
}

// TestRunQuietPrintsOnlyTheSummary: with -q, and the default log level,
// a run on the embedded stack prints its summary and nothing else: stdout
// is what `report` renders from the journal, stderr is empty (the stack's
// own logs are debug messages during a run).
func TestRunQuietPrintsOnlyTheSummary(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	exp := writeExperiment(t, dir)
	jpath, sjson := filepath.Join(dir, "j.jsonl"), filepath.Join(dir, "summary.json")
	code, out, errb := run(t, "--builtins", "in-process", "run", "-q", "--journal", jpath, "--summary-json", sjson, exp)
	require.Equal(t, cli.ExitOK, code, "%s\n%s", out, errb)
	require.Empty(t, errb, "-q: nothing on stderr")
	code, again, _ := run(t, "report", jpath)
	require.Equal(t, cli.ExitOK, code)
	require.Equal(t, again, out, "-q: stdout is the summary alone")
	require.True(t, strings.HasPrefix(out, "secrets stay out of journals\n"), out)
	requireValidSummary(t, sjson)

	// report --json prints the same summary.
	code, js, errb := run(t, "report", "--json", jpath)
	require.Equal(t, cli.ExitOK, code, errb)
	want, err := os.ReadFile(sjson)
	require.NoError(t, err)
	require.JSONEq(t, string(want), js)
}

// TestRunSummaryJSONOnStdout: with --summary-json -, stdout is the JSON
// alone (a pipeline parses it); the progress lines and the summary for
// people go to stderr.
func TestRunSummaryJSONOnStdout(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	exp := writeExperiment(t, dir)
	jpath := filepath.Join(dir, "j.jsonl")
	code, out, errb := run(t, "--builtins", "in-process", "run", "--journal", jpath, "--summary-json", "-", exp)
	require.Equal(t, cli.ExitOK, code, "%s\n%s", out, errb)
	var sum struct {
		Schema string `json:"schema"`
		Status string `json:"status"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &sum), "stdout is JSON alone:\n%s", out)
	require.Equal(t, "PASS", sum.Status)
	require.Contains(t, errb, "phase baseline")
	require.Contains(t, errb, "journal: "+jpath)
	summaryFile := filepath.Join(dir, "summary.json")
	require.NoError(t, os.WriteFile(summaryFile, []byte(out), 0o600))
	requireValidSummary(t, summaryFile)
}

// TestRunLogsComponentsAtDebug: the embedded stack's messages are shown
// with --log-level debug only; the progress lines are always there.
func TestRunLogsComponentsAtDebug(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	exp := writeExperiment(t, dir)
	code, out, errb := run(t, "--builtins", "in-process", "run", "--journal", filepath.Join(dir, "a.jsonl"), exp)
	require.Equal(t, cli.ExitOK, code, "%s\n%s", out, errb)
	require.NotContains(t, errb, "component=mailstack")
	require.Contains(t, out, "phase baseline")
	code, out, errb = run(t, "--log-level", "debug", "--builtins", "in-process", "run", "--journal", filepath.Join(dir, "b.jsonl"), exp)
	require.Equal(t, cli.ExitOK, code, "%s\n%s", out, errb)
	require.Contains(t, errb, "component=mailstack")
}

// requireValidSummary validates a summary file against
// docs/summary.schema.json.
func requireValidSummary(t *testing.T, path string) {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	sch, err := c.Compile("../docs/summary.schema.json")
	require.NoError(t, err)
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	inst, err := jsonschema.UnmarshalJSON(f)
	require.NoError(t, err)
	require.NoError(t, sch.Validate(inst))
}

// TestSummaryJSONIsWrittenSafely: a link at the summary's path is refused
// and left as it is; a regular file there is replaced whole.
func TestSummaryJSONIsWrittenSafely(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	exp := writeExperiment(t, dir)
	victim := filepath.Join(dir, "victim")
	require.NoError(t, os.WriteFile(victim, []byte("keep"), 0o600))
	link := filepath.Join(dir, "link.json")
	require.NoError(t, os.Symlink(victim, link))
	code, _, errb := run(t, "--builtins", "in-process", "run", "-q", "--journal", filepath.Join(dir, "a.jsonl"), "--summary-json", link, exp)
	require.Equal(t, cli.ExitOK, code, "the run's verdict stands: %s", errb)
	require.Contains(t, errb, "symbolic link")
	b, err := os.ReadFile(victim)
	require.NoError(t, err)
	require.Equal(t, "keep", string(b), "nothing written through the link")

	old := filepath.Join(dir, "old.json")
	require.NoError(t, os.WriteFile(old, []byte(strings.Repeat("x", 1<<20)), 0o600))
	code, _, errb = run(t, "--builtins", "in-process", "run", "-q", "--journal", filepath.Join(dir, "b.jsonl"), "--summary-json", old, exp)
	require.Equal(t, cli.ExitOK, code, errb)
	requireValidSummary(t, old)
	left, err := filepath.Glob(filepath.Join(dir, ".old.json.tmp-*"))
	require.NoError(t, err)
	require.Empty(t, left, "no temporary file left")
}

// openPTY opens a pseudo-terminal: what mailchaos writes to tty, the test
// reads from the returned function once tty is closed.
func openPTY(t *testing.T) (tty *os.File, read func() string) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	require.NoError(t, err, "a pseudo-terminal is needed to test terminal output")
	t.Cleanup(func() { m.Close() })
	require.NoError(t, unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0))
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	require.NoError(t, err)
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	require.NoError(t, err)
	var buf syncBuffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(&buf, m) // ends with EIO once the terminal side is closed
	}()
	return s, func() string {
		s.Close()
		<-done
		return buf.String()
	}
}

// envWith is the environment with the given variables set.
func envWith(vars map[string]string) func(string) string {
	return func(k string) string {
		if v, ok := vars[k]; ok {
			return v
		}
		return os.Getenv(k)
	}
}

// TestTerminalOutput: on a terminal the summary has colours and the run a
// live status line; with NO_COLOR no colours, with TERM=dumb neither
// colours nor the status line: no escape sequence at all.
func TestTerminalOutput(t *testing.T) {
	t.Parallel()
	jpath := "../experiments/report/testdata/exit-fail.jsonl"
	report := func(vars map[string]string) string {
		tty, read := openPTY(t)
		code := runCLI(t, cli.Env{Stdout: tty, Stderr: io.Discard, Getenv: envWith(vars)}, "report", jpath)
		require.Equal(t, cli.ExitOK, code)
		return read()
	}
	require.Contains(t, report(map[string]string{"TERM": "xterm", "NO_COLOR": ""}), "\x1b[1;31mFAIL\x1b[0m")
	require.NotContains(t, report(map[string]string{"TERM": "xterm", "NO_COLOR": "1"}), "\x1b")
	require.NotContains(t, report(map[string]string{"TERM": "dumb", "NO_COLOR": ""}), "\x1b")

	dir := t.TempDir()
	exp := writeExperiment(t, dir)
	runOn := func(name string, vars map[string]string, args ...string) string {
		tty, read := openPTY(t)
		var errb syncBuffer
		args = append(append([]string{"--builtins", "in-process", "run", "--journal", filepath.Join(dir, name+".jsonl")}, args...), exp)
		code := runCLI(t, cli.Env{Stdout: tty, Stderr: &errb, Getenv: envWith(vars)}, args...)
		out := read()
		require.Equal(t, cli.ExitOK, code, "%s\n%s", out, errb.String())
		require.Contains(t, out, "secrets stay out of journals")
		return out
	}
	out := runOn("color", map[string]string{"TERM": "xterm", "NO_COLOR": ""})
	require.Contains(t, out, "\x1b[K", "a terminal shows the live status line")
	require.Contains(t, out, "\x1b[1;32mPASS\x1b[0m")
	out = runOn("dumb", map[string]string{"TERM": "dumb", "NO_COLOR": ""})
	require.NotContains(t, out, "\x1b", "TERM=dumb: no escape sequence")
	require.Contains(t, out, "phase baseline", "the progress lines stay")
	out = runOn("nocolor", map[string]string{"TERM": "xterm", "NO_COLOR": "1"}, "-q")
	require.NotContains(t, out, "\x1b", "NO_COLOR, -q: no escape sequence")
}
