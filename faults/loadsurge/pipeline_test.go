package loadsurge_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/faults/loadsurge"
	"github.com/mailchaos/mailchaos/faults/loadsurge/sinktest"
	"github.com/mailchaos/mailchaos/internal/testnet"
)

// scriptOpts say how a scripted server answers. The zero value advertises
// PIPELINING and accepts everything.
type scriptOpts struct {
	// NoPipelining leaves PIPELINING out of the EHLO reply; the server
	// then counts commands that arrive before the reply to the previous one.
	NoPipelining bool
	// Strict holds the replies to MAIL and RCPT until DATA has arrived (a
	// client that waits for them hangs), and counts the ends of data that
	// are not followed at once by the next command (MAIL or QUIT).
	Strict bool
	// MultiLine sends every 2xx and 3xx reply as two lines ("250-...").
	MultiLine bool
	// HangAfterMail answers the first MAIL, then nothing more.
	HangAfterMail bool
	// DataDespiteRefusal answers DATA with 354 even with no recipient.
	DataDespiteRefusal bool
	// Rcpt, Data and EOD give the replies to RCPT TO, to DATA (with a
	// recipient accepted) and to the end of data, by recipient; "" means
	// the default positive reply. EOD's close hangs up after the reply.
	Rcpt func(to string) string
	Data func(to string) string
	EOD  func(to string) (reply string, close bool)
}

// scripted is a hand-written SMTP server on loopback that answers as its
// options say and records what it saw. Like real pipelining servers, it
// sends its buffered replies when no more input is waiting.
type scripted struct {
	addr string
	opts scriptOpts

	mu        sync.Mutex
	open      []net.Conn
	conns     int
	ids       map[string]int // X-Mailchaos-Ids accepted
	rcpts     map[string]int // RCPT TO commands by recipient
	eods      map[string]int // ends of data by recipient
	bodies    int            // bodies received after a refused envelope
	unknown   int            // lines that were no command (a body after DATA was refused)
	early     int            // commands sent before the previous reply (NoPipelining)
	eodAlone  int            // ends of data not followed at once by a command (Strict)
	pipelined int            // ends of data followed at once by a command
}

func startScripted(t testing.TB, opts scriptOpts) *scripted {
	t.Helper()
	s := &scripted{opts: opts, ids: map[string]int{}, rcpts: map[string]int{}, eods: map[string]int{}}
	s.addr = testnet.Serve(t, func(_ context.Context, c net.Conn) {
		s.locked(func() { s.conns++ })
		s.serve(c)
	}).Addr
	return s
}

// locked runs f under the server's lock.
func (s *scripted) locked(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
}

func (s *scripted) serve(c net.Conn) {
	o := s.opts
	br := bufio.NewReaderSize(c, 64<<10)
	bw := bufio.NewWriter(c)
	reply := func(r string) {
		if o.MultiLine && (r[0] == '2' || r[0] == '3') {
			_, _ = bw.WriteString(r[:3] + "-first line\r\n")
		}
		_, _ = bw.WriteString(r + "\r\n")
	}
	reply("220 scripted ESMTP")
	if bw.Flush() != nil {
		return
	}
	var mail bool
	var rcpt string // the accepted recipient
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb, arg, _ := strings.Cut(line, " ")
		verb = strings.ToUpper(verb)
		if o.NoPipelining && br.Buffered() > 0 {
			s.locked(func() { s.early++ })
		}
		hold := false
		switch verb {
		case "EHLO":
			reply("250-scripted")
			if !o.NoPipelining {
				reply("250-PIPELINING")
			}
			reply("250 8BITMIME")
		case "MAIL":
			mail, rcpt = true, ""
			reply("250 2.1.0 ok")
			if o.HangAfterMail {
				_ = bw.Flush()
				_, _ = io.Copy(io.Discard, br)
				return
			}
			hold = o.Strict
		case "RCPT":
			to := strings.TrimSuffix(strings.TrimPrefix(strings.ToLower(arg), "to:<"), ">")
			s.locked(func() { s.rcpts[to]++ })
			r := "250 2.1.5 ok"
			if o.Rcpt != nil && o.Rcpt(to) != "" {
				r = o.Rcpt(to)
			}
			if !mail {
				r = "503 5.5.1 need MAIL"
			}
			if r[0] == '2' {
				rcpt = to
			}
			reply(r)
			hold = o.Strict
		case "DATA":
			r := "354 go ahead"
			if o.Data != nil && rcpt != "" && o.Data(rcpt) != "" {
				r = o.Data(rcpt)
			}
			if rcpt == "" && !o.DataDespiteRefusal {
				r = "554 5.5.1 no valid recipients"
			}
			reply(r)
			if r[0] != '3' {
				break
			}
			if bw.Flush() != nil {
				return
			}
			id, ok := readBody(br)
			if !ok {
				return
			}
			if rcpt == "" {
				s.locked(func() { s.bodies++ })
			}
			r, hangUp := "250 2.0.0 queued", false
			if o.EOD != nil {
				if er, h := o.EOD(rcpt); er != "" {
					r, hangUp = er, h
				}
			}
			s.locked(func() {
				s.eods[rcpt]++
				if r[0] == '2' {
					s.ids[id]++
				}
			})
			if o.Strict {
				// A pipelining client sends its next command with the dot.
				_ = c.SetReadDeadline(time.Now().Add(time.Second))
				_, err := br.Peek(1)
				_ = c.SetReadDeadline(time.Time{})
				s.locked(func() {
					if err != nil {
						s.eodAlone++
					} else {
						s.pipelined++
					}
				})
			} else if br.Buffered() > 0 {
				s.locked(func() { s.pipelined++ })
			}
			reply(r)
			mail, rcpt = false, ""
			if hangUp {
				_ = bw.Flush()
				return
			}
		case "RSET":
			mail, rcpt = false, ""
			reply("250 2.0.0 ok")
		case "QUIT":
			reply("221 2.0.0 bye")
			_ = bw.Flush()
			return
		default:
			s.locked(func() { s.unknown++ })
			reply("500 5.5.2 unknown command")
		}
		if !hold && br.Buffered() == 0 && bw.Flush() != nil {
			return
		}
	}
}

// readBody reads a message up to the terminating dot and returns its
// X-Mailchaos-Id.
func readBody(br *bufio.Reader) (id string, ok bool) {
	head := true
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return "", false
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == ".":
			return id, true
		case line == "":
			head = false
		case head && strings.HasPrefix(line, loadsurge.HeaderID+": "):
			id = strings.TrimPrefix(line, loadsurge.HeaderID+": ")
		}
	}
}

// requireScriptedIDs checks that the run's accepted IDs are exactly those
// the server accepted, each once.
func requireScriptedIDs(t *testing.T, r *loadsurge.Run, s *scripted) {
	t.Helper()
	var got []string
	s.locked(func() {
		for id, n := range s.ids {
			require.Equal(t, 1, n, "the server accepted %s %d times", id, n)
			got = append(got, id)
		}
	})
	want := r.Accepted()
	sort.Strings(got)
	sort.Strings(want)
	require.Equal(t, want, got)
}

func TestSinkAdvertisesPipelining(t *testing.T) {
	t.Parallel()
	// The other tests against sinktest exercise the pipelined path only if
	// go-smtp's server advertises it.
	s := sinktest.Start(t, sinktest.Options{})
	c, err := smtp.Dial(s.Addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.Hello("test.invalid"))
	ok, _ := c.Extension("PIPELINING")
	require.True(t, ok)
	require.NoError(t, c.Quit())
}

func TestPipelining(t *testing.T) {
	t.Parallel()
	// The strict server answers MAIL and RCPT only once DATA has come, so
	// a client that waits for each reply gets nowhere; every end of data
	// must come with the next message's MAIL or with QUIT. Replies are
	// multi-line.
	s := startScripted(t, scriptOpts{Strict: true, MultiLine: true})
	r := start(t, loadsurge.Config{Addr: s.addr, Count: 40, Concurrency: 1, PerSession: 8, Timeout: 5 * time.Second})
	res := wait(t, r)
	requireBalanced(t, res)
	require.EqualValues(t, 40, res.Accepted, res.String())
	requireScriptedIDs(t, r, s)
	s.locked(func() {
		require.Equal(t, 5, s.conns, "a session per 8 messages")
		require.Zero(t, s.eodAlone, "ends of data sent without the next command")
		require.Equal(t, 40, s.pipelined)
		require.Zero(t, s.unknown)
	})
}

func TestPipelinedRefusalsCountByFirstRefusal(t *testing.T) {
	t.Parallel()
	s := startScripted(t, scriptOpts{
		Strict: true,
		Rcpt: func(to string) string {
			switch to {
			case "rcpt-temp@example.test":
				return "451 4.3.0 try later"
			case "rcpt-bad@example.test":
				return "550 5.1.1 no such user"
			}
			return ""
		},
		Data: func(to string) string {
			switch to {
			case "data-temp@example.test":
				return "452 4.3.1 queue full"
			case "data-bad@example.test":
				return "554 5.7.1 not from you"
			}
			return ""
		},
		EOD: func(to string) (string, bool) {
			if to == "eod-bad@example.test" {
				return "554 5.7.1 virus", false
			}
			return "", false
		},
	})
	rcpts := []string{"ok@example.test", "rcpt-temp@example.test", "rcpt-bad@example.test",
		"data-temp@example.test", "data-bad@example.test", "eod-bad@example.test"}
	r := start(t, loadsurge.Config{Addr: s.addr, Count: 120, Concurrency: 1, PerSession: 6, Rcpts: rcpts,
		RunID: "refusals", Timeout: 5 * time.Second})
	res := wait(t, r)
	requireBalanced(t, res)
	require.EqualValues(t, 120, res.Sent)
	requireScriptedIDs(t, r, s)
	s.locked(func() {
		for _, to := range rcpts {
			require.Positive(t, s.rcpts[to], "every recipient gets some of 120 messages: %s", to)
		}
		// A refused RCPT makes DATA fail too (554, no valid recipients);
		// the message counts by the RCPT reply: a 451 is a tempfail.
		require.EqualValues(t, s.rcpts["rcpt-temp@example.test"]+s.rcpts["data-temp@example.test"], res.Tempfail, res.String())
		require.EqualValues(t, s.rcpts["rcpt-bad@example.test"]+s.rcpts["data-bad@example.test"]+s.eods["eod-bad@example.test"],
			res.Rejected, res.String())
		require.EqualValues(t, s.rcpts["ok@example.test"], res.Accepted, res.String())
		require.Zero(t, s.eods["data-temp@example.test"]+s.eods["data-bad@example.test"], "no body after a refused DATA")
		require.Zero(t, s.unknown, "no body after a refused DATA")
		require.Zero(t, s.bodies)
		require.Zero(t, s.eodAlone)
		require.Equal(t, 20, s.conns, "refusals keep the session (RSET)")
	})
}

func TestDataAcceptedDespiteRefusal(t *testing.T) {
	t.Parallel()
	// A server that answers DATA with 354 although the only RCPT was
	// refused must not get a body: the client hangs up instead.
	s := startScripted(t, scriptOpts{
		DataDespiteRefusal: true,
		Rcpt: func(to string) string {
			if to == "bad@example.test" {
				return "550 5.1.1 no such user"
			}
			return ""
		},
	})
	r := start(t, loadsurge.Config{Addr: s.addr, Count: 60, Concurrency: 2, Rcpts: []string{"ok@example.test", "bad@example.test"}})
	res := wait(t, r)
	requireBalanced(t, res)
	requireScriptedIDs(t, r, s)
	s.locked(func() {
		require.EqualValues(t, s.rcpts["bad@example.test"], res.Rejected, res.String())
		require.EqualValues(t, s.rcpts["ok@example.test"], res.Accepted, res.String())
		require.Positive(t, res.Rejected)
		require.Zero(t, s.bodies)
		require.Zero(t, s.unknown)
	})
}

func TestServerWithoutPipelining(t *testing.T) {
	t.Parallel()
	s := startScripted(t, scriptOpts{
		NoPipelining: true,
		MultiLine:    true,
		Rcpt: func(to string) string {
			if to == "bad@example.test" {
				return "550 5.1.1 no such user"
			}
			return ""
		},
		EOD: func(to string) (string, bool) {
			if to == "temp@example.test" {
				return "451 4.3.0 later", false
			}
			return "", false
		},
	})
	rcpts := []string{"ok@example.test", "bad@example.test", "temp@example.test"}
	r := start(t, loadsurge.Config{Addr: s.addr, Count: 200, Concurrency: 4, PerSession: 7, Rcpts: rcpts})
	res := wait(t, r)
	requireBalanced(t, res)
	require.EqualValues(t, 200, res.Sent)
	requireScriptedIDs(t, r, s)
	s.locked(func() {
		require.Zero(t, s.early, "commands sent before the previous reply")
		require.Zero(t, s.pipelined)
		require.EqualValues(t, s.rcpts["bad@example.test"], res.Rejected, res.String())
		require.EqualValues(t, s.rcpts["temp@example.test"], res.Tempfail, res.String())
		require.EqualValues(t, s.rcpts["ok@example.test"], res.Accepted, res.String())
		require.Zero(t, s.unknown)
	})
}

func TestServerHangsAfterMail(t *testing.T) {
	t.Parallel()
	s := startScripted(t, scriptOpts{HangAfterMail: true})
	r := start(t, loadsurge.Config{Addr: s.addr, Count: 3, Concurrency: 1, Timeout: 100 * time.Millisecond})
	res := wait(t, r)
	requireBalanced(t, res)
	require.EqualValues(t, 3, res.Timeout, res.String())
	s.locked(func() { require.Equal(t, 3, s.conns) })
}

func TestSessionClosedAfterEndOfData(t *testing.T) {
	t.Parallel()
	// The server answers some ends of data with 421 and hangs up, after
	// the next message's commands were pipelined with the body: that next
	// message starts again on a new session and counts once.
	s := startScripted(t, scriptOpts{
		EOD: func(to string) (string, bool) {
			if to == "close@example.test" {
				return "421 4.3.2 shutting down", true
			}
			return "", false
		},
	})
	r := start(t, loadsurge.Config{Addr: s.addr, Count: 300, Concurrency: 3, PerSession: 10,
		Rcpts: []string{"ok@example.test", "close@example.test"}})
	res := wait(t, r)
	requireBalanced(t, res)
	require.EqualValues(t, 300, res.Sent)
	requireScriptedIDs(t, r, s)
	s.locked(func() {
		require.EqualValues(t, s.eods["close@example.test"], res.Tempfail, res.String())
		require.EqualValues(t, 300-res.Tempfail, res.Accepted, res.String())
		require.Positive(t, res.Tempfail)
		require.Positive(t, s.pipelined)
		require.Greater(t, s.conns, 30, "a new session after each 421")
	})
}

func TestStopWithPipelinedMessage(t *testing.T) {
	t.Parallel()
	// Stop while every session has a message pipelined behind another:
	// both finish, and the figures add up.
	s := sinktest.Start(t, sinktest.Options{})
	r := start(t, loadsurge.Config{Addr: s.Addr, Duration: time.Hour, Concurrency: 4, PerSession: 1000})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	require.True(t, s.WaitCount(ctx, 200))
	r.Stop()
	res := r.Wait()
	requireBalanced(t, res)
	require.Zero(t, res.Unsent+res.Timeout+res.ConnError+res.Cut, res.String())
	require.Equal(t, s.Count(), res.Accepted)
	requireSameIDs(t, r, s)
}
