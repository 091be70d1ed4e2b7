package loadsurge

import (
	"context"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"time"
)

// Defaults used when the corresponding Config field is zero.
const (
	// DefaultConcurrency is the number of SMTP sessions in flight at most.
	DefaultConcurrency = 20
	// DefaultPerSession is how many messages a session sends before QUIT
	// and a new connection: enough to amortise connection set-up, few
	// enough that connection handling stays part of the load.
	DefaultPerSession = 10
	// DefaultTimeout bounds the connection and each exchange with the
	// server: a command and its reply, or a pipelined group of commands
	// (or the message body and the commands sent with it) and their
	// replies.
	DefaultTimeout = 30 * time.Second
	// DefaultBacklog bounds the due messages waiting for a free session;
	// beyond it they count as unsent.
	DefaultBacklog = 100_000
	// DefaultGrace is how long in-flight transactions (and, at the natural
	// end of a run, the backlog) get to finish before they are aborted.
	DefaultGrace = 5 * time.Second
	// DefaultFrom is the envelope and header sender.
	DefaultFrom = "mailchaos@example.test"
	// DefaultHelo is the name given in EHLO.
	DefaultHelo = "mailchaos.invalid"
	// MaxConcurrency bounds Config.Concurrency.
	MaxConcurrency = 10_000
)

// DefaultRcpts returns the recipients used when none are given.
func DefaultRcpts() []string { return []string{"alice@example.test", "bob@example.test"} }

// DefaultSize is the message size used when none is given (4 KB).
func DefaultSize() SizeRange { return SizeRange{Min: 4000, Max: 4000} }

// Config configures a load run. The zero value of a field means its default.
type Config struct {
	// Addr is the SMTP server's host:port.
	Addr string
	// Schedule is the arrival-rate curve. The zero Schedule (or
	// Constant(0)) is the closed loop: Concurrency workers each send back
	// to back.
	Schedule Schedule
	// Duration ends the run after this long (0: no limit). Messages due
	// before it are sent; the run then waits for them up to Grace.
	Duration time.Duration
	// Count ends the run after this many messages (0: no limit).
	Count int64
	// Concurrency is the number of SMTP sessions in flight at most
	// (default DefaultConcurrency).
	Concurrency int
	// PerSession is how many messages a session sends before QUIT
	// (default DefaultPerSession).
	PerSession int
	// Size is the message size, headers included (default DefaultSize).
	Size SizeRange
	// Infected is the share of messages, 0 to 1, that carry the EICAR test
	// file as a base64 attachment.
	Infected float64
	// From is the envelope and header sender (default DefaultFrom).
	From string
	// Rcpts are the recipients; each message goes to one drawn uniformly
	// (default DefaultRcpts).
	Rcpts []string
	// RunID prefixes every X-Mailchaos-Id and Message-ID; letters, digits,
	// '.', '_' and '-' (default: "ls" and 10 random hex digits). It also
	// seeds the draws of size, recipient and infection, so one run ID
	// always gives the same messages.
	RunID string
	// Timeout bounds the connection and each exchange with the server: a
	// command and its reply, or a pipelined group (MAIL, RCPT and DATA; or
	// the message body with the commands sent after it) and its replies
	// (default DefaultTimeout).
	Timeout time.Duration
	// Backlog bounds the due messages waiting for a free session (default
	// DefaultBacklog).
	Backlog int
	// Grace is how long in-flight transactions get to finish after Stop or
	// the end of the run (default DefaultGrace).
	Grace time.Duration
	// Helo is the name given in EHLO (default DefaultHelo).
	Helo string
}

// ConfigError is an invalid Config field.
type ConfigError struct {
	Field string
	Msg   string
}

func (e *ConfigError) Error() string { return "loadsurge: config " + e.Field + ": " + e.Msg }

// InvalidInput marks the error as the caller's input being wrong.
func (e *ConfigError) InvalidInput() bool { return true }

// common returns the fields every load run has.
func (c Config) common() runConfig {
	return runConfig{Addr: c.Addr, Schedule: c.Schedule, Duration: c.Duration, Count: c.Count, Concurrency: c.Concurrency,
		RunID: c.RunID, Timeout: c.Timeout, Backlog: c.Backlog, Grace: c.Grace}
}

// withDefaults fills in defaults and checks every field.
func (c Config) withDefaults() (Config, error) {
	rc, err := c.common().withDefaults("ls")
	c.Concurrency, c.RunID, c.Timeout, c.Backlog, c.Grace = rc.Concurrency, rc.RunID, rc.Timeout, rc.Backlog, rc.Grace
	if err != nil {
		return c, err
	}
	if c.PerSession == 0 {
		c.PerSession = DefaultPerSession
	}
	if c.Size == (SizeRange{}) {
		c.Size = DefaultSize()
	}
	if c.From == "" {
		c.From = DefaultFrom
	}
	if len(c.Rcpts) == 0 {
		c.Rcpts = DefaultRcpts()
	}
	if c.Helo == "" {
		c.Helo = DefaultHelo
	}
	bad := func(field, format string, args ...any) (Config, error) {
		return c, &ConfigError{Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	if c.PerSession < 1 {
		return bad("PerSession", "must be at least 1")
	}
	if err := c.Size.check(); err != nil {
		return bad("Size", "%v", err)
	}
	if !(c.Infected >= 0 && c.Infected <= 1) {
		return bad("Infected", "%v is not from 0 to 1", c.Infected)
	}
	if err := CheckAddress(c.From); err != nil {
		return bad("From", "%v", err)
	}
	for _, r := range c.Rcpts {
		if err := CheckAddress(r); err != nil {
			return bad("Rcpts", "%v", err)
		}
	}
	if strings.ContainsAny(c.Helo, " \r\n") {
		return bad("Helo", "%q is not a host name", c.Helo)
	}
	return c, nil
}

// CheckAddress checks that a is a plain mailbox address (local@domain)
// that can go into a MAIL or RCPT command and a header.
func CheckAddress(a string) error {
	local, domain, ok := strings.Cut(a, "@")
	if !ok || local == "" || domain == "" || strings.ContainsAny(a, " \t\r\n<>,;\"") {
		return fmt.Errorf("%q is not an address like user@example.test", a)
	}
	return nil
}

// RunIDOf returns the run ID of the load a request asks for:
// "<owner>-<id>" (in an experiment run, "<the run's ID>-<the step's ID>"),
// so that no two runs send the same X-Mailchaos-Id or Message-ID; id alone
// when there is no owner or id already starts with "<owner>-" (`mailchaos
// inject` names its requests inject-<time>, owned by inject).
func RunIDOf(owner, id string) string {
	if owner == "" || strings.HasPrefix(id, owner+"-") {
		return id
	}
	return owner + "-" + id
}

// CheckRunID checks that id can be a run ID: 1 to 64 letters, digits, '.',
// '_' or '-', so that it fits in headers and Message-IDs as it is.
func CheckRunID(id string) error {
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%q may only hold letters, digits, '.', '_' and '-'", id)
		}
	}
	if id == "" || len(id) > 64 {
		return fmt.Errorf("%q must be 1 to 64 characters", id)
	}
	return nil
}

// Run is an SMTP load run under way. Its methods are safe for concurrent
// use.
//
// A run owns a scheduler goroutine (open loop only), Concurrency worker
// goroutines, each with at most one SMTP session, and a supervisor
// goroutine that ends the run and waits for the others; all of them have
// ended when Done is closed.
type Run struct {
	*driver
	results[Result]
	cfg  Config
	comp *composer
	// accepted has bit seq set when message seq was accepted; it is
	// guarded by the driver's mu.
	accepted []uint64
}

// Start validates cfg and starts a run against cfg.Addr; it does not wait
// for any connection. The run ends by itself after cfg.Duration or
// cfg.Count (if set; with neither it goes on until stopped), gracefully
// when Stop is called, and at once when ctx is cancelled. Errors are
// [*ConfigError] values.
func Start(ctx context.Context, cfg Config) (*Run, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	r := &Run{
		driver: newDriver(ctx, cfg.common(), int(numOutcomes), int(Accepted), int(Unsent)),
		cfg:    cfg,
		comp:   newComposer(&cfg),
	}
	r.results = results[Result]{r.driver, r.Snapshot}
	r.onSuccess = r.markAccepted
	r.launch(func(int) {
		w := &worker{r: r}
		w.loop()
	})
	return r, nil
}

// ID returns the X-Mailchaos-Id of message seq.
func (r *Run) ID(seq int64) string { return r.cfg.RunID + "-" + strconv.FormatInt(seq, 10) }

// Snapshot returns the figures so far; after the run has ended, the final
// ones. It is cheap enough to call once a second while a run is under way.
func (r *Run) Snapshot() Result {
	f, counts, sent := r.snapshot()
	return Result{
		RunFigures: f,
		Sent:       sent,
		Accepted:   counts[Accepted],
		Tempfail:   counts[Tempfail],
		Rejected:   counts[Rejected],
		ConnError:  counts[ConnError],
		Timeout:    counts[Timeout],
		Cut:        counts[Cut],
		// Only cut messages are booked as uncertain (see worker.finish).
		CutAfterData: f.uncertain,
	}
}

// Accepted returns the X-Mailchaos-Ids of the messages accepted so far, in
// sequence order.
func (r *Run) Accepted() []string {
	var seqs []int64
	r.mu.Lock()
	for w, word := range r.accepted {
		for word != 0 {
			b := bits.TrailingZeros64(word)
			seqs = append(seqs, int64(w)*64+int64(b))
			word &^= 1 << b
		}
	}
	r.mu.Unlock()
	ids := make([]string, len(seqs))
	for i, s := range seqs {
		ids[i] = r.ID(s)
	}
	return ids
}

// markAccepted notes that message seq was accepted; the driver calls it
// with its mu held.
func (r *Run) markAccepted(seq int64) {
	w := int(seq / 64)
	if w >= len(r.accepted) {
		r.accepted = append(r.accepted, make([]uint64, w+1-len(r.accepted))...)
	}
	r.accepted[w] |= 1 << (seq % 64)
}
