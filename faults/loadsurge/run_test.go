package loadsurge_test

import (
	"context"
	"fmt"
	"math"
	"net/mail"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/clamd"
	"github.com/mailchaos/mailchaos/faults/loadsurge"
	"github.com/mailchaos/mailchaos/faults/loadsurge/sinktest"
	"github.com/mailchaos/mailchaos/internal/testnet"
	"github.com/mailchaos/mailchaos/targets/mailstack"
)

// requireSameIDs checks that the run's accepted IDs are exactly what the
// sink received, each once.
func requireSameIDs(t *testing.T, r *loadsurge.Run, s *sinktest.Sink) {
	t.Helper()
	got := s.IDs()
	for id, n := range got {
		require.Equal(t, 1, n, "the sink received %s %d times", id, n)
	}
	sinkIDs := make([]string, 0, len(got))
	for id := range got {
		sinkIDs = append(sinkIDs, id)
	}
	accepted := r.Accepted()
	sort.Strings(sinkIDs)
	sort.Strings(accepted)
	require.Equal(t, sinkIDs, accepted)
}

func TestHeaderMatchesMailstack(t *testing.T) {
	t.Parallel()
	require.Equal(t, mailstack.HeaderMailchaosID, loadsurge.HeaderID)
}

func TestClosedLoopAccountingMatchesSink(t *testing.T) {
	t.Parallel()
	s := sinktest.Start(t, sinktest.Options{})
	r := start(t, loadsurge.Config{Addr: s.Addr, Count: 500, Concurrency: 8, PerSession: 7, RunID: "closed"})
	res := wait(t, r)
	requireBalanced(t, res)
	requireClosedLoop(t, res.RunFigures, 500)
	require.EqualValues(t, 500, res.Accepted, res.String())
	require.EqualValues(t, 500, s.Count())
	requireSameIDs(t, r, s)
	require.Contains(t, r.Accepted(), "closed-0")
	require.Contains(t, r.Accepted(), "closed-499")
}

func TestOpenLoopAccountingMatchesSink(t *testing.T) {
	t.Parallel()
	s := sinktest.Start(t, sinktest.Options{})
	r := start(t, loadsurge.Config{Addr: s.Addr, Schedule: loadsurge.Constant(200), Duration: time.Second, Concurrency: 4, PerSession: 3,
		Grace: waitFor}) // however busy the machine, every due message is sent
	res := wait(t, r)
	requireBalanced(t, res)
	require.False(t, res.ClosedLoop)
	// Messages 0..199 are due in [0, 1s): the count is exact, not a rate.
	require.EqualValues(t, 200, res.Scheduled, res.String())
	require.EqualValues(t, 200, res.Accepted, res.String())
	requireSameIDs(t, r, s)
	require.GreaterOrEqual(t, res.Duration, time.Second)
	require.Positive(t, res.Lag.Max+res.Lag.P50+1, "lag is recorded")
	require.True(t, strings.HasPrefix(r.RunID(), "ls"), "a generated run ID: %q", r.RunID())
}

func TestCountEndsOpenLoop(t *testing.T) {
	t.Parallel()
	s := sinktest.Start(t, sinktest.Options{})
	r := start(t, loadsurge.Config{Addr: s.Addr, Schedule: loadsurge.Constant(1000), Count: 50, Duration: time.Hour, Grace: waitFor})
	res := wait(t, r)
	requireBalanced(t, res)
	require.EqualValues(t, 50, res.Accepted)
}

func TestOutcomes(t *testing.T) {
	t.Parallel()
	var rcptTemp, rcptBad, dataTemp, dataBad atomic.Int64
	s := sinktest.Start(t, sinktest.Options{
		Rcpt: func(to string) error {
			switch to {
			case "rcpt-temp@example.test":
				rcptTemp.Add(1)
				return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
			case "rcpt-bad@example.test":
				rcptBad.Add(1)
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
			}
			return nil
		},
		Data: func(msg []byte) error {
			m, err := mail.ReadMessage(strings.NewReader(string(msg)))
			require.NoError(t, err)
			switch m.Header.Get("To") {
			case "<data-temp@example.test>":
				dataTemp.Add(1)
				return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "queue full"}
			case "<data-bad@example.test>":
				dataBad.Add(1)
				return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "virus"}
			}
			return nil
		},
	})
	rcpts := []string{"ok@example.test", "rcpt-temp@example.test", "rcpt-bad@example.test", "data-temp@example.test", "data-bad@example.test"}
	r := start(t, loadsurge.Config{Addr: s.Addr, Count: 300, Concurrency: 4, Rcpts: rcpts})
	res := wait(t, r)
	requireBalanced(t, res)
	require.EqualValues(t, 300, res.Sent)
	require.Equal(t, rcptTemp.Load()+dataTemp.Load(), res.Tempfail, res.String())
	require.Equal(t, rcptBad.Load()+dataBad.Load(), res.Rejected, res.String())
	require.Equal(t, s.Count(), res.Accepted)
	for _, n := range []int64{rcptTemp.Load(), rcptBad.Load(), dataTemp.Load(), dataBad.Load(), res.Accepted} {
		require.Positive(t, n, "every recipient gets some of 300 messages: %s", res)
	}
	requireSameIDs(t, r, s)
}

func TestTimeoutOutcome(t *testing.T) {
	t.Parallel()
	addr := silentServer(t)
	r := start(t, loadsurge.Config{Addr: addr, Count: 3, Concurrency: 1, Timeout: 100 * time.Millisecond})
	res := wait(t, r)
	requireBalanced(t, res)
	require.EqualValues(t, 3, res.Timeout, res.String())
}

func TestConnErrorOutcome(t *testing.T) {
	t.Parallel()
	r := start(t, loadsurge.Config{Addr: testnet.FreeAddr(t), Count: 5, Concurrency: 2})
	res := wait(t, r)
	requireBalanced(t, res)
	require.EqualValues(t, 5, res.ConnError, res.String())
	require.Empty(t, r.Accepted())
}

func TestSlowServerShowsAsLatencyAndBacklog(t *testing.T) {
	t.Parallel()
	// One session against a server that never answers: due messages pile
	// up behind it; beyond the backlog they are unsent. Nothing is lost.
	addr := silentServer(t)
	r := start(t, loadsurge.Config{Addr: addr, Schedule: loadsurge.Constant(1000), Duration: 300 * time.Millisecond,
		Concurrency: 1, Backlog: 10, Timeout: 2 * time.Second, Grace: 100 * time.Millisecond})
	res := wait(t, r)
	requireBalanced(t, res)
	require.EqualValues(t, 300, res.Scheduled)
	require.Positive(t, res.Unsent, res.String())
	// The one message in flight at the hard end (300 ms + 100 ms grace,
	// before its 2 s timeout) is cut, not timed out; the server never
	// answered its greeting, so it is not one it may have accepted.
	require.EqualValues(t, 1, res.Cut, res.String())
	require.Zero(t, res.CutAfterData, res.String())
	require.Zero(t, res.Timeout, res.String())
	require.Equal(t, 10, res.MaxBacklog, res.String())
}

func TestStopIsGracefulAndPrompt(t *testing.T) {
	t.Parallel()
	s := sinktest.Start(t, sinktest.Options{})
	r := start(t, loadsurge.Config{Addr: s.Addr, Schedule: loadsurge.Constant(100), Duration: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	require.True(t, s.WaitCount(ctx, 10))
	requireStops(t, r)
	res := r.Wait()
	requireBalanced(t, res)
	require.Less(t, res.Duration, time.Hour)
	require.Equal(t, s.Count(), res.Accepted)
	requireSameIDs(t, r, s)
}

func TestContextCancelAborts(t *testing.T) {
	t.Parallel()
	for _, protocol := range []string{loadsurge.ProtocolSMTP, loadsurge.ProtocolIMAP} {
		t.Run(protocol, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			l := loadsurge.Load{Protocol: protocol, Addr: silentServer(t), Duration: time.Hour,
				SMTP: loadsurge.Config{Schedule: loadsurge.Constant(50), Concurrency: 5},
				IMAP: loadsurge.IMAPConfig{Schedule: loadsurge.Constant(50), Concurrency: 5, Timeout: time.Hour}}
			g, err := l.Start(ctx)
			require.NoError(t, err)
			require.Eventually(t, func() bool { return g.Report().StatusFigures()["in_flight"] > 0 }, waitFor, time.Millisecond)
			cancel()
			switch r := g.(type) {
			case *loadsurge.Run:
				res := wait(t, r)
				requireBalanced(t, res)
				require.Positive(t, res.Cut, "transactions cut short count as cut: %s", res)
				require.Zero(t, res.Timeout, res.String())
			case *loadsurge.IMAPRun:
				res := waitIMAP(t, r)
				requireIMAPBalanced(t, res)
				require.Positive(t, res.Cut, "sessions cut short count as cut: %s", res)
				require.Equal(t, res.Cut, res.Failed, res.String())
			default:
				t.Fatalf("Load.Start returned a %T", g)
			}
		})
	}
}

func TestInfectedShareAndSize(t *testing.T) {
	t.Parallel()
	const n, p = 400, 0.5
	s := sinktest.Start(t, sinktest.Options{Keep: true})
	r := start(t, loadsurge.Config{Addr: s.Addr, Count: n, Infected: p, Size: loadsurge.SizeRange{Min: 8000, Max: 8000}})
	res := wait(t, r)
	requireBalanced(t, res)
	require.EqualValues(t, n, res.Accepted)
	engine := clamd.NewMatcher(clamd.DefaultSignatures())
	infected := 0
	for _, m := range s.Messages() {
		sig, found := engine.Match(m.Raw)
		multipart := strings.Contains(string(m.Raw), "Content-Type: multipart/mixed")
		require.Equal(t, multipart, found, "message %s: only the multipart ones carry EICAR", m.ID)
		if found {
			require.Equal(t, clamd.EICARSignature, sig)
			infected++
		}
		require.InDelta(t, 8000, m.Size, 800, "message %s", m.ID)
		_, err := mail.ReadMessage(strings.NewReader(string(m.Raw)))
		require.NoError(t, err, "message %s parses", m.ID)
	}
	sigma := math.Sqrt(n * p * (1 - p))
	require.InDelta(t, n*p, infected, 4*sigma, "infected messages")
}

func TestMessageSizes(t *testing.T) {
	t.Parallel()
	for _, size := range []string{"1KB", "4KB", "64KB", "1MiB"} {
		t.Run(size, func(t *testing.T) {
			want, err := loadsurge.ParseSizeRange(size)
			require.NoError(t, err)
			s := sinktest.Start(t, sinktest.Options{Keep: true})
			r := start(t, loadsurge.Config{Addr: s.Addr, Count: 20, Size: want, Infected: 0.3})
			requireBalanced(t, wait(t, r))
			for _, m := range s.Messages() {
				// Exactly the size, or one byte less when the filler is cut
				// between CR and LF: nothing was dot-unstuffed on the way.
				require.Contains(t, []int{want.Min - 1, want.Min}, m.Size, "message %s", m.ID)
				require.True(t, strings.HasSuffix(string(m.Raw), "\r\n"))
				for _, line := range strings.Split(strings.TrimSuffix(string(m.Raw), "\r\n"), "\r\n") {
					require.NotContains(t, line, "\r")
					require.NotContains(t, line, "\n")
					require.False(t, strings.HasPrefix(line, "."), "message %s: a line needs dot-stuffing: %q", m.ID, line)
				}
				msg, err := mail.ReadMessage(strings.NewReader(string(m.Raw)))
				require.NoError(t, err)
				require.Equal(t, m.ID, msg.Header.Get(loadsurge.HeaderID))
				for _, h := range []string{"Message-Id", "Date", "From", "To", "Subject"} {
					require.NotEmpty(t, msg.Header.Get(h), "header %s", h)
				}
				_, err = msg.Header.Date()
				require.NoError(t, err)
			}
		})
	}
	t.Run("range", func(t *testing.T) {
		want, err := loadsurge.ParseSizeRange("1KB-64KB")
		require.NoError(t, err)
		s := sinktest.Start(t, sinktest.Options{})
		r := start(t, loadsurge.Config{Addr: s.Addr, Count: 200, Size: want})
		requireBalanced(t, wait(t, r))
		lo, hi := math.MaxInt, 0
		for _, m := range s.Messages() {
			lo, hi = min(lo, m.Size), max(hi, m.Size)
		}
		require.GreaterOrEqual(t, lo, 1000)
		require.LessOrEqual(t, hi, 64000)
		require.Less(t, lo, 10000, "sizes spread over the range")
		require.Greater(t, hi, 55000, "sizes spread over the range")
	})
}

func TestSameRunIDSameMessages(t *testing.T) {
	t.Parallel()
	sizes := func() []int {
		s := sinktest.Start(t, sinktest.Options{})
		r := start(t, loadsurge.Config{Addr: s.Addr, Count: 30, Concurrency: 1, RunID: "repeat", Size: loadsurge.SizeRange{Min: 1000, Max: 9000}})
		requireBalanced(t, wait(t, r))
		var out []int
		for _, m := range s.Messages() {
			out = append(out, m.Size)
		}
		return out
	}
	require.Equal(t, sizes(), sizes())
}

func TestParseSizeRange(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]loadsurge.SizeRange{
		"4KB": {Min: 4000, Max: 4000}, "4KiB": {Min: 4096, Max: 4096}, "1KB-64KB": {Min: 1000, Max: 64000}, "512": {Min: 512, Max: 512},
	} {
		got, err := loadsurge.ParseSizeRange(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "big", "0", "64KB-1KB", "1KB-", "1GB", "-1"} {
		_, err := loadsurge.ParseSizeRange(bad)
		require.Error(t, err, "%q", bad)
	}
}

func TestStartRejectsBadConfig(t *testing.T) {
	t.Parallel()
	for _, cfg := range []loadsurge.Config{
		{},
		{Addr: "nowhere"},
		{Addr: "127.0.0.1:25", Concurrency: -1},
		{Addr: "127.0.0.1:25", Concurrency: 10001},
		{Addr: "127.0.0.1:25", Infected: 1.5},
		{Addr: "127.0.0.1:25", From: "nobody"},
		{Addr: "127.0.0.1:25", Rcpts: []string{"a@b", "c d@e"}},
		{Addr: "127.0.0.1:25", RunID: "has space"},
		{Addr: "127.0.0.1:25", Size: loadsurge.SizeRange{Min: 10, Max: 5}},
	} {
		_, err := loadsurge.Start(context.Background(), cfg)
		var ce *loadsurge.ConfigError
		require.ErrorAs(t, err, &ce, fmt.Sprintf("%+v", cfg))
	}
}

func TestResultJSONAndString(t *testing.T) {
	t.Parallel()
	s := sinktest.Start(t, sinktest.Options{})
	r := start(t, loadsurge.Config{Addr: s.Addr, Count: 20, RunID: "sum"})
	res := wait(t, r)
	out := res.String()
	for _, want := range []string{"load-surge sum (closed loop, done)", "20 accepted", "latency (accepted): p50"} {
		require.Contains(t, out, want)
	}
	for o := loadsurge.Accepted; o <= loadsurge.Unsent; o++ {
		require.NotContains(t, o.String(), "outcome(")
	}
	require.EqualValues(t, 20, res.Count(loadsurge.Accepted))
}

// gatedRun starts a 20-message schedule over 200 ms with one session,
// which a sink holds on the first message until release: the rest of the
// schedule queues behind it. It returns once the schedule has ended.
func gatedRun(t *testing.T) (r *loadsurge.Run, release func()) {
	t.Helper()
	gate := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	s := sinktest.Start(t, sinktest.Options{Data: func([]byte) error { <-gate; return nil }})
	r = start(t, loadsurge.Config{Addr: s.Addr, Schedule: loadsurge.Constant(100), Duration: 200 * time.Millisecond,
		Concurrency: 1, PerSession: 100, Grace: time.Minute})
	// Registered after the run's own cleanup, so it runs first.
	t.Cleanup(release)
	require.Eventually(t, func() bool { return !r.Snapshot().Scheduling }, waitFor, time.Millisecond)
	require.EqualValues(t, 20, r.Snapshot().Scheduled)
	return r, release
}

// TestEndAsPlannedAfterTheScheduleEndedStillOffersTheBacklog: a removal at the
// planned end that finds the schedule ended by itself leaves the run in
// its grace; the messages that were due and still wait for a session are
// offered, not booked unsent.
func TestEndAsPlannedAfterTheScheduleEndedStillOffersTheBacklog(t *testing.T) {
	t.Parallel()
	r, release := gatedRun(t)
	r.EndAsPlanned()
	release()
	res := wait(t, r)
	requireBalanced(t, res)
	require.Zero(t, res.Unsent, res.String())
	require.EqualValues(t, 20, res.Accepted, res.String())
}

// TestStopAfterTheScheduleEndedDropsTheBacklog: a stop (mailchaos surge's
// first Ctrl-C) stops sending even in the grace after the schedule: what
// still waits for a session is unsent; what the session had taken (the
// held message, and the next one it may have taken up) finishes.
func TestStopAfterTheScheduleEndedDropsTheBacklog(t *testing.T) {
	t.Parallel()
	r, release := gatedRun(t)
	r.RequestStop()
	release()
	res := wait(t, r)
	requireBalanced(t, res)
	require.GreaterOrEqual(t, res.Unsent, int64(18), res.String())
	require.EqualValues(t, 20, res.Accepted+res.Unsent, res.String())
}
