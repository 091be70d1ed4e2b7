package loadsurge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailchaos/mailchaos/faults/loadsurge/loadfig"
)

// Defaults of the IMAP log-in generator, used when the corresponding
// IMAPConfig field is zero.
const (
	// DefaultPassword is the log-in password: that of the embedded stack's
	// users.
	DefaultPassword = "password"
	// DefaultMailbox is the mailbox selected after log-in.
	DefaultMailbox = "INBOX"
	// DefaultFetch is how many of the newest messages' envelopes a session
	// fetches.
	DefaultFetch = 5
	// MaxFetch bounds IMAPConfig.Fetch.
	MaxFetch = 10_000
)

// IMAPConfig configures an IMAP log-in run: sessions that each connect,
// LOGIN, SELECT the mailbox, FETCH the envelopes of its newest messages and
// LOGOUT. The zero value of a field means its default; the fields shared
// with [Config] mean the same there, with a session for a message.
type IMAPConfig struct {
	// Addr is the IMAP server's host:port.
	Addr string
	// Schedule is the log-in rate curve. The zero Schedule (or
	// Constant(0)) is the closed loop: Concurrency workers each log in
	// back to back.
	Schedule Schedule
	// Duration ends the run after this long (0: no limit).
	Duration time.Duration
	// Count ends the run after this many sessions (0: no limit).
	Count int64
	// Concurrency is the number of sessions in flight at most (default
	// DefaultConcurrency).
	Concurrency int
	// Users are the log-in names; session i logs in as Users[i mod
	// len(Users)] (default DefaultRcpts).
	Users []string
	// Password is the password of every user without one in Passwords
	// (default DefaultPassword).
	Password string
	// Passwords are the passwords of the log-in names that have their
	// own, by log-in name.
	Passwords map[string]string
	// Mailbox is the mailbox selected (default DefaultMailbox).
	Mailbox string
	// Fetch is how many of the newest messages' envelopes each session
	// fetches, all of them when there are fewer, none in an empty mailbox
	// (default DefaultFetch).
	Fetch int
	// RunID names the run (default: "li" and 10 random hex digits).
	RunID string
	// Timeout bounds the connection and each step of a session: the
	// greeting and each command with its responses (default
	// DefaultTimeout).
	Timeout time.Duration
	// Backlog bounds the due sessions waiting for a free worker (default
	// DefaultBacklog).
	Backlog int
	// Grace is how long sessions in flight get to finish after Stop or the
	// end of the run (default DefaultGrace).
	Grace time.Duration
}

// withDefaults fills in defaults and checks every field: those every run
// has go to the driver's configuration, the others stay in c.
func (c IMAPConfig) withDefaults() (runConfig, IMAPConfig, error) {
	rc, err := runConfig{Addr: c.Addr, Schedule: c.Schedule, Duration: c.Duration, Count: c.Count,
		Concurrency: c.Concurrency, RunID: c.RunID, Timeout: c.Timeout, Backlog: c.Backlog, Grace: c.Grace}.withDefaults("li")
	if err != nil {
		return rc, c, err
	}
	if len(c.Users) == 0 {
		c.Users = DefaultRcpts()
	}
	if c.Password == "" {
		c.Password = DefaultPassword
	}
	if c.Mailbox == "" {
		c.Mailbox = DefaultMailbox
	}
	if c.Fetch == 0 {
		c.Fetch = DefaultFetch
	}
	for _, u := range c.Users {
		if err := CheckUser(u); err != nil {
			return rc, c, &ConfigError{Field: "Users", Msg: err.Error()}
		}
	}
	if c.Fetch < 1 || c.Fetch > MaxFetch {
		return rc, c, &ConfigError{Field: "Fetch", Msg: fmt.Sprintf("%d is not from 1 to %d", c.Fetch, MaxFetch)}
	}
	return rc, c, nil
}

// CheckUser checks that u can be an IMAP log-in name: not empty, without
// spaces or control characters.
func CheckUser(u string) error {
	if u == "" || strings.ContainsFunc(u, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return fmt.Errorf("%q is not a log-in name (not empty, no spaces or control characters)", u)
	}
	return nil
}

// IMAPOutcome is what became of one IMAP session: success or the step at
// which it failed.
type IMAPOutcome int

// IMAP outcomes. Every session the schedule made due ends with exactly one.
const (
	// IMAPSucceeded: every step of the session succeeded.
	IMAPSucceeded IMAPOutcome = iota
	// IMAPConnect: the TCP connection failed (refused, unreachable).
	IMAPConnect
	// IMAPGreeting: no usable greeting: the server closed the connection,
	// said BYE or sent something that is not IMAP.
	IMAPGreeting
	// IMAPLogin: LOGIN failed (wrong password, unknown user, refused).
	IMAPLogin
	// IMAPSelect: SELECT of the mailbox failed.
	IMAPSelect
	// IMAPFetch: FETCH failed or returned fewer messages than asked.
	IMAPFetch
	// IMAPLogout: LOGOUT failed.
	IMAPLogout
	// IMAPTimeout: a step's deadline (the run's Timeout) passed.
	IMAPTimeout
	// IMAPCut: the session was still in flight at the run's hard end (the
	// grace after its duration or a stop ran out, or it was aborted), and
	// its connection was closed under it.
	IMAPCut
	// IMAPUnsent: the session was due but never started: the backlog was
	// full, or the run stopped first.
	IMAPUnsent
	numIMAPOutcomes
)

// String returns the outcome's name: succeeded, connect, greeting, login,
// select, fetch, logout, timeout, cut or unsent.
func (o IMAPOutcome) String() string {
	names := [numIMAPOutcomes]string{"succeeded", "connect", "greeting", "login", "select", "fetch", "logout", "timeout", "cut", "unsent"}
	if o < 0 || o >= numIMAPOutcomes {
		return fmt.Sprintf("imap-outcome(%d)", int(o))
	}
	return names[o]
}

// IMAPRun is an IMAP log-in run under way. Its methods are safe for
// concurrent use.
//
// A run owns a scheduler goroutine (open loop only), Concurrency worker
// goroutines, each with at most one IMAP session (and its client's reading
// goroutine), and a supervisor goroutine that ends the run and waits for
// the others; all of them have ended when Done is closed.
type IMAPRun struct {
	*driver
	results[IMAPResult]
	cfg IMAPConfig
}

// StartIMAP validates cfg and starts an IMAP log-in run against cfg.Addr;
// it does not wait for any connection. The run ends by itself after
// cfg.Duration or cfg.Count (if set; with neither it goes on until
// stopped), gracefully when Stop is called, and at once when ctx is
// cancelled. Errors are [*ConfigError] values.
func StartIMAP(ctx context.Context, cfg IMAPConfig) (*IMAPRun, error) {
	rc, cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	r := &IMAPRun{driver: newDriver(ctx, rc, int(numIMAPOutcomes), int(IMAPSucceeded), int(IMAPUnsent)), cfg: cfg}
	r.results = results[IMAPResult]{r.driver, r.Snapshot}
	r.launch(func(int) { r.work() })
	return r, nil
}

// Snapshot returns the figures so far; after the run has ended, the final
// ones.
func (r *IMAPRun) Snapshot() IMAPResult {
	f, counts, attempted := r.snapshot()
	return IMAPResult{
		RunFigures: f,
		Attempted:  attempted,
		Succeeded:  counts[IMAPSucceeded],
		Failed:     attempted - counts[IMAPSucceeded],
		Connect:    counts[IMAPConnect],
		Greeting:   counts[IMAPGreeting],
		Login:      counts[IMAPLogin],
		Select:     counts[IMAPSelect],
		Fetch:      counts[IMAPFetch],
		Logout:     counts[IMAPLogout],
		Timeout:    counts[IMAPTimeout],
		Cut:        counts[IMAPCut],
	}
}

// work runs sessions until the run ends.
func (r *IMAPRun) work() {
	for {
		seq, due, lag, ok := r.take(true)
		if !ok {
			return
		}
		o, end := r.session(r.cfg.Users[seq%int64(len(r.cfg.Users))])
		r.finish(seq, int(o), end.Sub(due), lag)
	}
}

// session runs one session as user and returns its outcome and, for a
// success, when the FETCH (or, in an empty mailbox, the SELECT) completed.
// Each step has cfg.Timeout: when it passes, or the run is aborted, the
// connection is closed under the step.
func (r *IMAPRun) session(user string) (IMAPOutcome, time.Time) {
	timeout := r.driver.cfg.Timeout
	d := net.Dialer{Timeout: timeout, KeepAlive: -1}
	conn, err := d.DialContext(r.ctx, "tcp", r.driver.cfg.Addr)
	if err != nil {
		return r.classify(IMAPConnect, err, false), time.Time{}
	}
	var expired atomic.Bool
	timer := time.AfterFunc(timeout, func() {
		expired.Store(true)
		_ = conn.Close()
	})
	defer timer.Stop()
	unwatch := context.AfterFunc(r.ctx, func() { _ = conn.Close() })
	defer unwatch()
	c := imapclient.New(conn, nil)
	defer c.Close() // also waits for the client's reading goroutine

	fail := func(step IMAPOutcome, err error) (IMAPOutcome, time.Time) {
		return r.classify(step, err, expired.Load()), time.Time{}
	}
	if err := c.WaitGreeting(); err != nil {
		return fail(IMAPGreeting, err)
	}
	timer.Reset(timeout)
	password, ok := r.cfg.Passwords[user]
	if !ok {
		password = r.cfg.Password
	}
	if err := c.Login(user, password).Wait(); err != nil {
		return fail(IMAPLogin, err)
	}
	timer.Reset(timeout)
	sel, err := c.Select(r.cfg.Mailbox, nil).Wait()
	if err != nil {
		return fail(IMAPSelect, err)
	}
	if n := sel.NumMessages; n > 0 {
		want := min(n, uint32(r.cfg.Fetch))
		var set imap.SeqSet
		set.AddRange(n-want+1, n)
		timer.Reset(timeout)
		msgs, err := c.Fetch(set, &imap.FetchOptions{Envelope: true}).Collect()
		if err == nil && len(msgs) != int(want) {
			err = fmt.Errorf("fetch %s: %d of %d messages", set, len(msgs), want)
		}
		if err != nil {
			return fail(IMAPFetch, err)
		}
	}
	end := time.Now()
	timer.Reset(timeout)
	if err := c.Logout().Wait(); err != nil {
		return fail(IMAPLogout, err)
	}
	return IMAPSucceeded, end
}

// classify maps the error of a session's step to its outcome: a deadline
// that passed (expired, or the network's own) is a timeout, a session the
// run's hard end closed under it is cut, anything else a failure of the
// step.
func (r *IMAPRun) classify(step IMAPOutcome, err error, expired bool) IMAPOutcome {
	var ne net.Error
	switch {
	case expired || errors.Is(err, os.ErrDeadlineExceeded):
		return IMAPTimeout
	case r.ctx.Err() != nil:
		return IMAPCut
	case errors.As(err, &ne) && ne.Timeout():
		return IMAPTimeout
	}
	return step
}

// IMAPResult is an IMAP run's figures, final (from [IMAPRun.Wait]) or so
// far (from [IMAPRun.Snapshot]). Its Latency runs to the end of the FETCH
// (of the SELECT in an empty mailbox): LOGOUT is not included.
type IMAPResult struct {
	RunFigures
	// Attempted counts the sessions started and finished: Succeeded plus
	// Failed. Failed is the sum of the failure kinds that follow it.
	Attempted int64 `json:"attempted"`
	Succeeded int64 `json:"succeeded"`
	Failed    int64 `json:"failed"`
	Connect   int64 `json:"connect"`
	Greeting  int64 `json:"greeting"`
	Login     int64 `json:"login"`
	Select    int64 `json:"select"`
	Fetch     int64 `json:"fetch"`
	Logout    int64 `json:"logout"`
	Timeout   int64 `json:"timeout"`
	Cut       int64 `json:"cut"`
}

var _ Report = IMAPResult{}

// Count returns the number of sessions with outcome o.
func (r IMAPResult) Count(o IMAPOutcome) int64 {
	counts := [numIMAPOutcomes]int64{r.Succeeded, r.Connect, r.Greeting, r.Login, r.Select, r.Fetch, r.Logout, r.Timeout, r.Cut, r.Unsent}
	if o < 0 || o >= numIMAPOutcomes {
		return 0
	}
	return counts[o]
}

// String is a human summary of a few lines.
func (r IMAPResult) String() string {
	var b strings.Builder
	r.writeHead(&b, "imap", "log-ins/s")
	fmt.Fprintf(&b, "  sessions: %d scheduled, %d attempted: %d succeeded, %d failed (", r.Scheduled, r.Attempted, r.Succeeded, r.Failed)
	for o := IMAPConnect; o <= IMAPCut; o++ {
		if o > IMAPConnect {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d %s", r.Count(o), o)
	}
	fmt.Fprintf(&b, "); %d unsent", r.Unsent)
	r.writeTail(&b, "succeeded, schedule to fetch")
	return b.String()
}

// Progress is a one-line status for a terminal.
func (r IMAPResult) Progress() string {
	return r.progress("log-ins", "/s", "succeeded", r.Attempted, r.Succeeded)
}

// StatusFigures are the load-surge fault's Status figures with protocol
// imap: scheduled and offered, elapsed_s, scheduling, attempted, succeeded,
// failed, one per failure kind (connect, greeting, login, select, fetch,
// logout, timeout, cut), unsent, in_flight, backlog, rate and offered_rate
// (log-ins/s), p50_ms, p99_ms, lag_p99_ms, and the latency histogram (see
// package loadfig).
func (r IMAPResult) StatusFigures() map[string]float64 {
	m := r.statusFigures()
	m["attempted"], m[loadfig.Succeeded], m[loadfig.Failed] = float64(r.Attempted), float64(r.Succeeded), float64(r.Failed)
	for o := IMAPConnect; o <= IMAPCut; o++ {
		m[o.String()] = float64(r.Count(o))
	}
	return m
}
