package loadsurge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/bits"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
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

// histogramMax is the largest latency the histograms track (10 minutes, in
// microseconds); longer ones are recorded as this.
const histogramMax = int64(10 * time.Minute / time.Microsecond)

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

// withDefaults fills in defaults and checks every field.
func (c Config) withDefaults() (Config, error) {
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
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
	if c.RunID == "" {
		var b [5]byte
		_, _ = rand.Read(b[:])
		c.RunID = "ls" + hex.EncodeToString(b[:])
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Backlog == 0 {
		c.Backlog = DefaultBacklog
	}
	if c.Grace == 0 {
		c.Grace = DefaultGrace
	}
	if c.Helo == "" {
		c.Helo = DefaultHelo
	}
	bad := func(field, format string, args ...any) (Config, error) {
		return c, &ConfigError{Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return bad("Addr", "%q is not a host:port address", c.Addr)
	}
	if c.Duration < 0 {
		return bad("Duration", "must not be negative")
	}
	if c.Count < 0 {
		return bad("Count", "must not be negative")
	}
	if c.Concurrency < 1 || c.Concurrency > MaxConcurrency {
		return bad("Concurrency", "%d is not from 1 to %d", c.Concurrency, MaxConcurrency)
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
	if err := CheckRunID(c.RunID); err != nil {
		return bad("RunID", "%v", err)
	}
	if c.Timeout < 0 {
		return bad("Timeout", "must not be negative")
	}
	if c.Backlog < 1 {
		return bad("Backlog", "must be at least 1")
	}
	if c.Grace < 0 {
		return bad("Grace", "must not be negative")
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

// Run is a load run under way. Its methods are safe for concurrent use.
//
// A run owns a scheduler goroutine (open loop only), Concurrency worker
// goroutines, each with at most one SMTP session, and a supervisor
// goroutine that ends the run and waits for the others; all of them have
// ended when Done is closed.
type Run struct {
	cfg     Config
	comp    *composer
	start   time.Time
	closed  bool // closed loop
	ctx     context.Context
	abort   context.CancelFunc // ends ctx: closes every connection
	queue   chan int64         // open loop: due messages by sequence number; nil once done (under mu)
	next    atomic.Int64       // closed loop: next sequence number
	live    atomic.Int32       // scheduler and workers still running
	stopReq chan struct{}      // closed by Stop
	stopped atomic.Bool        // Stop was called or the run was aborted: send nothing more
	ended   chan struct{}      // closed when no more messages will be scheduled
	endOnce sync.Once
	stopOne sync.Once
	allGone chan struct{} // closed when the scheduler and workers have returned
	done    chan struct{} // closed when the run is over and end is set

	scheduled  atomic.Int64
	inFlight   atomic.Int32
	maxBacklog atomic.Int32

	mu       sync.Mutex // guards the fields below
	counts   [numOutcomes]int64
	latency  *hdrhistogram.Histogram // accepted messages, µs
	lag      *hdrhistogram.Histogram // started messages, µs
	accepted []uint64                // bit seq set when message seq was accepted
	end      time.Time               // when the run finished
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
	rctx, abort := context.WithCancel(ctx)
	r := &Run{
		cfg:     cfg,
		comp:    newComposer(&cfg),
		closed:  cfg.Schedule.Closed(),
		ctx:     rctx,
		abort:   abort,
		stopReq: make(chan struct{}),
		ended:   make(chan struct{}),
		allGone: make(chan struct{}),
		done:    make(chan struct{}),
		latency: hdrhistogram.New(1, histogramMax, 3),
		lag:     hdrhistogram.New(1, histogramMax, 3),
	}
	r.start = time.Now()
	r.live.Store(int32(cfg.Concurrency))
	if !r.closed {
		r.queue = make(chan int64, cfg.Backlog)
		r.live.Add(1)
		go r.schedule()
	}
	for range cfg.Concurrency {
		w := &worker{r: r}
		go w.loop()
	}
	go r.supervise()
	return r, nil
}

// RunID returns the run's ID (cfg.RunID, or the one generated).
func (r *Run) RunID() string { return r.cfg.RunID }

// ID returns the X-Mailchaos-Id of message seq.
func (r *Run) ID(seq int64) string { return r.cfg.RunID + "-" + strconv.FormatInt(seq, 10) }

// Done is closed when the run is over and every goroutine it started has
// ended.
func (r *Run) Done() <-chan struct{} { return r.done }

// Stop ends the run gracefully and waits for it: nothing more is scheduled,
// messages still waiting for a session count as unsent, and in-flight
// transactions get cfg.Grace to finish before their connections are
// closed. Calling Stop again, or after the run ended, just waits.
func (r *Run) Stop() {
	r.requestStop()
	<-r.done
}

// requestStop starts a graceful stop without waiting for it.
func (r *Run) requestStop() {
	r.stopOne.Do(func() {
		r.stopped.Store(true)
		close(r.stopReq)
	})
}

// Wait waits for the run to end and returns its final result.
func (r *Run) Wait() Result {
	<-r.done
	return r.Snapshot()
}

// Snapshot returns the figures so far; after the run has ended, the final
// ones. It is cheap enough to call once a second while a run is under way.
func (r *Run) Snapshot() Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	end := r.end
	done := !end.IsZero()
	if !done {
		end = time.Now()
	}
	res := Result{
		RunID:      r.cfg.RunID,
		Done:       done,
		ClosedLoop: r.closed,
		Duration:   end.Sub(r.start),
		Scheduled:  r.scheduled.Load(),
		Accepted:   r.counts[Accepted],
		Tempfail:   r.counts[Tempfail],
		Rejected:   r.counts[Rejected],
		ConnError:  r.counts[ConnError],
		Timeout:    r.counts[Timeout],
		Unsent:     r.counts[Unsent],
		MaxBacklog: int(r.maxBacklog.Load()),
		InFlight:   int(r.inFlight.Load()),
		Latency:    percentiles(r.latency),
		Lag:        percentiles(r.lag),
	}
	if r.queue != nil {
		res.Backlog = len(r.queue)
	}
	res.Sent = res.Accepted + res.Tempfail + res.Rejected + res.ConnError + res.Timeout
	if s := res.Duration.Seconds(); s > 0 {
		res.OfferedRate = float64(res.Scheduled) / s
		res.AchievedRate = float64(res.Sent) / s
	}
	return res
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

// record books the outcome of message seq; latency and lag are negative
// when not measured.
func (r *Run) record(seq int64, o Outcome, latency, lag time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts[o]++
	if lag >= 0 {
		_ = r.lag.RecordValue(min(lag.Microseconds(), histogramMax))
	}
	if o != Accepted {
		return
	}
	_ = r.latency.RecordValue(min(latency.Microseconds(), histogramMax))
	w := int(seq / 64)
	if w >= len(r.accepted) {
		r.accepted = append(r.accepted, make([]uint64, w+1-len(r.accepted))...)
	}
	r.accepted[w] |= 1 << (seq % 64)
}

// endScheduling marks that no more messages will be scheduled.
func (r *Run) endScheduling() { r.endOnce.Do(func() { close(r.ended) }) }

// dropping reports whether due messages must no longer be sent.
func (r *Run) dropping() bool { return r.stopped.Load() || r.ctx.Err() != nil }

// exit is called by the scheduler and each worker as it returns.
func (r *Run) exit() {
	if r.live.Add(-1) == 0 {
		close(r.allGone)
	}
}

// schedule makes messages due at their scheduled times (open loop). It
// sleeps until the next due time, then queues every message due by then;
// a full queue makes a message unsent. It returns at the end of the
// schedule, on Stop or on abort, closing the queue.
func (r *Run) schedule() {
	defer r.exit()
	defer close(r.queue)
	defer r.endScheduling()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	sleepUntil := func(t time.Time) bool {
		d := time.Until(t)
		if d <= 0 {
			return true
		}
		timer.Reset(d)
		select {
		case <-timer.C:
			return true
		case <-r.stopReq:
		case <-r.ctx.Done():
		}
		return false
	}
	for seq := int64(0); ; seq++ {
		if r.cfg.Count > 0 && seq >= r.cfg.Count {
			return
		}
		at, ok := r.cfg.Schedule.At(seq)
		if !ok || r.cfg.Duration > 0 && at >= r.cfg.Duration {
			break
		}
		if !sleepUntil(r.start.Add(at)) {
			return
		}
		r.scheduled.Add(1)
		select {
		case r.queue <- seq:
			if n := int32(len(r.queue)); n > r.maxBacklog.Load() {
				r.maxBacklog.Store(n)
			}
		default:
			r.record(seq, Unsent, -1, -1)
		}
	}
	// The schedule ran out before the count: the run lasts its duration.
	if r.cfg.Duration > 0 {
		sleepUntil(r.start.Add(r.cfg.Duration))
	}
}

// supervise ends the run: it waits for the end of scheduling, Stop or an
// abort, gives the rest Grace to finish, aborts what is left, and waits for
// every other goroutine before setting the final figures.
func (r *Run) supervise() {
	defer close(r.done)
	var limit <-chan time.Time
	if r.closed && r.cfg.Duration > 0 {
		t := time.NewTimer(r.cfg.Duration)
		defer t.Stop()
		limit = t.C
	}
	select {
	case <-r.ended:
	case <-limit:
		r.endScheduling()
	case <-r.stopReq:
	case <-r.ctx.Done():
	case <-r.allGone:
	}
	grace := time.NewTimer(r.cfg.Grace)
	defer grace.Stop()
	select {
	case <-r.allGone:
	case <-grace.C:
	case <-r.ctx.Done():
	}
	r.stopped.Store(true)
	r.abort()
	<-r.allGone
	r.mu.Lock()
	r.end = time.Now()
	r.queue = nil // its buffer is the largest part of a finished run
	r.mu.Unlock()
}
