package cli_test

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/cli"
	"github.com/mailchaos/mailchaos/faults/loadsurge"
	"github.com/mailchaos/mailchaos/faults/loadsurge/sinktest"
	"github.com/mailchaos/mailchaos/internal/testnet"
	"github.com/mailchaos/mailchaos/targets/mailstack"
)

func TestSurgePrintsSummary(t *testing.T) {
	t.Parallel()
	s := sinktest.Start(t, sinktest.Options{})
	code, out, errb := run(t, "surge", "--to", s.Addr, "--rate", "200/s", "--duration", "500ms", "--run-id", "cli1",
		"--concurrency", "4", "--size", "2KB", "--infected", "10%", "--rcpt", "bob@example.test")
	require.Equal(t, cli.ExitOK, code, errb)
	require.Contains(t, out, "load-surge cli1 (open loop, done)")
	require.Contains(t, out, "100 accepted")
	require.Contains(t, out, "lag (start - schedule)")
	require.EqualValues(t, 100, s.Count())
	require.Equal(t, 1, s.IDs()["cli1-99"])
}

func TestSurgeOfferedRateIsOverTheDuration(t *testing.T) {
	t.Parallel()
	// Every message takes 300 ms: the run waits for the last ones after
	// its 500 ms, and the offered rate is still the 200/s asked for.
	s := sinktest.Start(t, sinktest.Options{Data: func([]byte) error { time.Sleep(300 * time.Millisecond); return nil }})
	code, out, errb := run(t, "surge", "--to", s.Addr, "--rate", "200/s", "--duration", "500ms", "--concurrency", "200", "--run-id", "off")
	require.Equal(t, cli.ExitOK, code, errb)
	require.Contains(t, out, "offered 200.0 msg/s", out)
	require.Contains(t, out, "100 accepted", out)
	require.Contains(t, out, "0 cut;", out)
}

func TestSurgeCutsWhatIsInFlightAtTheEnd(t *testing.T) {
	t.Parallel()
	// The server reads every message and never answers: at the end of the
	// grace all are cut, after their end of DATA, and the server then
	// accepts them all.
	release := make(chan struct{})
	var once sync.Once
	s := sinktest.Start(t, sinktest.Options{Data: func([]byte) error { <-release; return nil }})
	t.Cleanup(func() { once.Do(func() { close(release) }) }) // before the sink closes
	code, out, errb := run(t, "surge", "--to", s.Addr, "--rate", "50/s", "--duration", "200ms", "--grace", "1s",
		"--concurrency", "20", "--run-id", "cut")
	require.Equal(t, cli.ExitOK, code, errb)
	require.Contains(t, out, "offered 50.0 msg/s", out)
	require.Contains(t, out, "0 accepted, 0 tempfail, 0 rejected, 0 conn-error, 0 timeout, 10 cut (10 after their end of DATA", out)
	once.Do(func() { close(release) })
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	require.True(t, s.WaitCount(ctx, 10), "the server accepted the cut messages")
}

func TestSurgeJSON(t *testing.T) {
	t.Parallel()
	s := sinktest.Start(t, sinktest.Options{})
	res := surgeJSON[loadsurge.Result](t, "--to", s.Addr, "--rate", "0", "--count", "50", "--concurrency", "5")
	require.EqualValues(t, 50, res.Accepted)
	require.EqualValues(t, 50, s.Count())
}

func TestSurgeReportsFailuresAsFigures(t *testing.T) {
	t.Parallel()
	code, out, errb := run(t, "surge", "--to", testnet.FreeAddr(t), "--rate", "0", "--count", "3")
	require.Equal(t, cli.ExitOK, code, errb)
	require.Contains(t, out, "3 conn-error")
}

func TestSurgeInvalidInput(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--rate", "10", "--count", "1"}, "flag --to: required"},
		{[]string{"--to", "nowhere", "--count", "1"}, "flag --to"},
		{[]string{"--to", "192.0.2.1:25", "--count", "1"}, "not a loopback address; add --allow-remote"},
		{[]string{"--to", "mail.example.com:25", "--count", "1"}, "not a loopback address"},
		{[]string{"--to", "127.0.0.1:25"}, "give --duration, --count or both"},
		{[]string{"--to", "127.0.0.1:25", "--count", "-1"}, "flag --count"},
		{[]string{"--to", "127.0.0.1:25", "--count", "1", "--grace", "0s"}, "flag --grace: must be positive"},
		{[]string{"--to", "127.0.0.1:25", "--count", "x"}, "count"},
		{[]string{"--to", "127.0.0.1:25", "--count", "1", "--rate", "fast"}, `flag --rate "fast": not a rate`},
		{[]string{"--to", "127.0.0.1:25", "--count", "1", "--size", "4XB"}, `flag --size "4XB"`},
		{[]string{"--to", "127.0.0.1:25", "--count", "1", "--concurrency", "0"}, "flag --concurrency"},
		{[]string{"--to", "127.0.0.1:25", "--count", "1", "--rcpt", "bob"}, `flag --rcpt "bob"`},
		{[]string{"--to", "127.0.0.1:25", "--count", "1", "--schedule", "ramp", "--rate-to", "10"}, "ramp needs a run duration"},
		{[]string{"--to", "127.0.0.1:25", "--duration", "1s", "--schedule", "ramp"}, "flag --rate-to: is required with schedule ramp"},
		{[]string{"--to", "127.0.0.1:25", "--count", "1", "--schedule", "step", "--steps", "10"}, "flag --steps"},
		{[]string{"--to", "127.0.0.1:25", "--count", "1", "--run-id", "a b"}, "flag --run-id"},
		{[]string{"--to", "127.0.0.1:25", "--count", "1", "--bogus"}, "bogus"},
		{[]string{"--to", "127.0.0.1:25", "--count", "1", "extra"}, `unexpected argument "extra"`},
		{[]string{"--to", "127.0.0.1:143", "--count", "1", "--protocol", "pop3"}, `flag --protocol "pop3"`},
		{[]string{"--to", "127.0.0.1:143", "--count", "1", "--protocol", "imap", "--rcpt", "bob@example.test"},
			"flag --rcpt \"bob@example.test\": only applies to protocol smtp"},
		{[]string{"--to", "127.0.0.1:25", "--count", "1", "--users", "bob@example.test"}, "flag --users \"bob@example.test\": only applies to protocol imap"},
		{[]string{"--to", "127.0.0.1:143", "--count", "1", "--protocol", "imap", "--fetch", "0"}, `flag --fetch "0"`},
		{[]string{"--to", "127.0.0.1:143", "--count", "1", "--protocol", "imap", "--users", "a b"}, `flag --users "a b"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errb := run(t, append([]string{"surge"}, tc.args...)...)
			require.Equal(t, cli.ExitInvalid, code, "stdout %q stderr %q", out, errb)
			require.Contains(t, errb, tc.want)
		})
	}
}

func TestSurgeAllowRemoteSkipsTheLoopbackGuard(t *testing.T) {
	t.Parallel()
	// The address is still only ever loopback in tests: "localhost" and
	// ::1-style names pass the guard without --allow-remote, and
	// --allow-remote lets a non-loopback name through to validation.
	s := sinktest.Start(t, sinktest.Options{})
	_, port, _ := strings.Cut(s.Addr, ":")
	code, _, errb := run(t, "surge", "--to", "localhost:"+port, "--rate", "0", "--count", "1", "--timeout", "5s")
	require.Equal(t, cli.ExitOK, code, errb)
	code, _, errb = run(t, "surge", "--to", "mail.example.com:25", "--allow-remote", "--count", "1", "--rate", "bad")
	require.Equal(t, cli.ExitInvalid, code)
	require.Contains(t, errb, "flag --rate", "the guard passed, the next check failed")
}

func TestSurgeStopsOnSignalAndPrintsSummary(t *testing.T) {
	t.Parallel()
	s := sinktest.Start(t, sinktest.Options{})
	out, errb, signal, done := startCLI(t, "surge", "--to", s.Addr, "--rate", "100", "--duration", "1h", "--run-id", "sig")
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	require.True(t, s.WaitCount(ctx, 10), errb.String())
	signal(os.Interrupt)
	require.Equal(t, cli.ExitAborted, waitExit(t, done), errb.String())
	require.Contains(t, out.String(), "load-surge sig (open loop, done)")
	require.Contains(t, errb.String(), "surge interrupted")
}

func TestSurgeSecondSignalAbortsAtOnce(t *testing.T) {
	t.Parallel()
	addr, conns := sinktest.Silent(t)
	out, errb, signal, done := startCLI(t, "surge", "--to", addr, "--rate", "100", "--duration", "1h", "--timeout", "1h", "--run-id", "kill")
	require.Eventually(t, func() bool { return conns() > 0 }, waitFor, time.Millisecond, "a session is waiting for its greeting")
	signal(os.Interrupt)
	signal(os.Interrupt)
	require.Equal(t, cli.ExitAborted, waitExit(t, done), errb.String())
	require.Contains(t, out.String(), "load-surge kill (open loop, done)")
	require.Regexp(t, `0 timeout, [1-9]\d* cut \(0 after their end of DATA`, out.String(), "the transactions cut short")
}

// surgeJSON runs "mailchaos surge --json" with args, which must succeed
// with a finished closed-loop run, and returns its result.
func surgeJSON[R interface{ Over() bool }](t *testing.T, args ...string) R {
	t.Helper()
	code, out, errb := run(t, append(append([]string{"surge"}, args...), "--json")...)
	require.Equal(t, cli.ExitOK, code, errb)
	var res R
	require.NoError(t, json.Unmarshal([]byte(out), &res), out)
	require.True(t, res.Over())
	var f loadsurge.RunFigures
	require.NoError(t, json.Unmarshal([]byte(out), &f), out)
	require.True(t, f.ClosedLoop)
	require.Positive(t, f.AchievedRate)
	require.Positive(t, f.Latency.P99)
	return res
}

// imapServer starts the embedded mail stack and returns its IMAP address;
// its users are alice@example.test and bob@example.test, password
// "password".
func imapServer(t *testing.T) string {
	t.Helper()
	cfg := mailstack.DefaultConfig()
	cfg.SMTP.Listen, cfg.IMAP.Listen, cfg.Metrics.Listen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	s, err := mailstack.New(cfg, mailstack.Options{})
	require.NoError(t, err)
	require.NoError(t, s.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		_ = s.Shutdown(ctx)
		_ = s.Close()
	})
	return s.Endpoint("imap")
}

func TestSurgeIMAPPrintsSummary(t *testing.T) {
	t.Parallel()
	addr := imapServer(t)
	code, out, errb := run(t, "surge", "--protocol", "imap", "--to", addr, "--rate", "100/s", "--duration", "500ms",
		"--run-id", "imap1", "--concurrency", "4", "--fetch", "3")
	require.Equal(t, cli.ExitOK, code, errb)
	require.Contains(t, out, "load-surge imap1 (imap, open loop, done)")
	require.Contains(t, out, "50 scheduled, 50 attempted: 50 succeeded, 0 failed")
	require.Contains(t, out, "lag (start - schedule)")
}

func TestSurgeIMAPJSON(t *testing.T) {
	t.Parallel()
	addr := imapServer(t)
	res := surgeJSON[loadsurge.IMAPResult](t, "--protocol", "imap", "--to", addr, "--rate", "0", "--count", "30", "--concurrency", "3",
		"--users", "bob@example.test,alice@example.test,nobody@example.test")
	require.EqualValues(t, 30, res.Attempted)
	require.EqualValues(t, 20, res.Succeeded)
	require.EqualValues(t, 10, res.Login, "the unknown user cannot log in")
	require.EqualValues(t, 10, res.Failed)
}

func TestSurgeIMAPWrongPasswordIsALoginFailure(t *testing.T) {
	t.Parallel()
	addr := imapServer(t)
	code, out, errb := run(t, "surge", "--protocol", "imap", "--to", addr, "--rate", "0", "--count", "5", "--password", "wrong")
	require.Equal(t, cli.ExitOK, code, errb)
	require.Contains(t, out, "0 succeeded, 5 failed (0 connect, 0 greeting, 5 login,")
}

func TestSurgeIMAPStopsOnSignal(t *testing.T) {
	t.Parallel()
	addr, conns := sinktest.Silent(t)
	out, errb, signal, done := startCLI(t, "surge", "--protocol", "imap", "--to", addr, "--rate", "100", "--duration", "1h",
		"--timeout", "1h", "--run-id", "imapsig")
	require.Eventually(t, func() bool { return conns() > 0 }, waitFor, time.Millisecond, "a session is waiting for its greeting")
	signal(os.Interrupt)
	signal(os.Interrupt)
	require.Equal(t, cli.ExitAborted, waitExit(t, done), errb.String())
	require.Contains(t, out.String(), "load-surge imapsig (imap, open loop, done)")
	require.Regexp(t, `0 timeout, [1-9]\d* cut\)`, out.String(), "the sessions cut short")
}
