package loadsurge

import (
	"fmt"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Outcome is what became of one message.
type Outcome int

// Outcomes. Every message the schedule made due ends with exactly one.
const (
	// Accepted: the server answered 2xx to the end of DATA.
	Accepted Outcome = iota
	// Tempfail: a 4xx reply at any step (greeting, EHLO, MAIL, RCPT, DATA).
	Tempfail
	// Rejected: a 5xx reply at any step.
	Rejected
	// ConnError: the connection failed (refused, reset, closed, or a reply
	// that is not SMTP).
	ConnError
	// Timeout: a command's deadline passed, or the run gave up waiting for
	// the reply when it was aborted.
	Timeout
	// Unsent: the message was due but never sent: the backlog was full, or
	// the run stopped first.
	Unsent
	numOutcomes
)

// String returns the outcome's name: accepted, tempfail, rejected,
// conn-error, timeout or unsent.
func (o Outcome) String() string {
	switch o {
	case Accepted:
		return "accepted"
	case Tempfail:
		return "tempfail"
	case Rejected:
		return "rejected"
	case ConnError:
		return "conn-error"
	case Timeout:
		return "timeout"
	case Unsent:
		return "unsent"
	}
	return fmt.Sprintf("outcome(%d)", int(o))
}

// Percentiles summarises a latency distribution. Durations are in
// nanoseconds in JSON; the histograms behind them have microsecond
// resolution and three significant digits.
type Percentiles struct {
	P50  time.Duration `json:"p50_ns"`
	P90  time.Duration `json:"p90_ns"`
	P99  time.Duration `json:"p99_ns"`
	P999 time.Duration `json:"p999_ns"`
	Max  time.Duration `json:"max_ns"`
}

// percentiles reads p50, p90, p99, p99.9 and the maximum from h, recorded in
// microseconds.
func percentiles(h *hdrhistogram.Histogram) Percentiles {
	v := h.ValueAtPercentilesSlice([]float64{50, 90, 99, 99.9, 100})
	us := func(x int64) time.Duration { return time.Duration(x) * time.Microsecond }
	return Percentiles{P50: us(v[0]), P90: us(v[1]), P99: us(v[2]), P999: us(v[3]), Max: us(v[4])}
}

// Result is a run's figures, final (from [Run.Wait]) or so far (from
// [Run.Snapshot]).
type Result struct {
	// RunID prefixes every message's X-Mailchaos-Id.
	RunID string `json:"run_id"`
	// Done is true once every goroutine of the run has ended.
	Done bool `json:"done"`
	// ClosedLoop is true when workers sent back to back, with no schedule.
	ClosedLoop bool `json:"closed_loop"`
	// Duration runs from the start to now, or to the end of the last
	// transaction once done.
	Duration time.Duration `json:"duration_ns"`

	// Scheduled counts the messages made due so far: the sum of the
	// outcomes plus Backlog plus InFlight.
	Scheduled int64 `json:"scheduled"`
	// Sent counts transactions attempted and finished: every outcome but
	// Unsent.
	Sent      int64 `json:"sent"`
	Accepted  int64 `json:"accepted"`
	Tempfail  int64 `json:"tempfail"`
	Rejected  int64 `json:"rejected"`
	ConnError int64 `json:"conn_error"`
	Timeout   int64 `json:"timeout"`
	Unsent    int64 `json:"unsent"`
	// Backlog is how many due messages wait for a free session now;
	// MaxBacklog is the most that ever waited.
	Backlog    int `json:"backlog"`
	MaxBacklog int `json:"max_backlog"`
	// InFlight is how many transactions are under way now: with
	// pipelining, up to two per session (one waiting for the reply to its
	// end of data, the next with its MAIL, RCPT and DATA already sent).
	InFlight int `json:"in_flight"`

	// OfferedRate is Scheduled per second of Duration; AchievedRate is Sent
	// per second of Duration. An open-loop run against a target that keeps
	// up has both equal to the schedule's rate.
	OfferedRate  float64 `json:"offered_rate"`
	AchievedRate float64 `json:"achieved_rate"`
	// Latency runs from each accepted message's scheduled time (in the
	// closed loop: the moment a worker took it) to the server's reply to
	// the end of DATA, so time spent waiting for a free session counts.
	Latency Percentiles `json:"latency"`
	// Lag runs from each sent message's scheduled time to the moment a
	// worker started its transaction (open loop only).
	Lag Percentiles `json:"lag"`
}

// Count returns the number of messages with outcome o.
func (r Result) Count(o Outcome) int64 {
	switch o {
	case Accepted:
		return r.Accepted
	case Tempfail:
		return r.Tempfail
	case Rejected:
		return r.Rejected
	case ConnError:
		return r.ConnError
	case Timeout:
		return r.Timeout
	case Unsent:
		return r.Unsent
	}
	return 0
}

// String is a human summary of a few lines.
func (r Result) String() string {
	var b strings.Builder
	state := "running"
	if r.Done {
		state = "done"
	}
	mode := "open loop"
	if r.ClosedLoop {
		mode = "closed loop"
	}
	fmt.Fprintf(&b, "load-surge %s (%s, %s): %s, offered %.1f msg/s, achieved %.1f msg/s\n",
		r.RunID, mode, state, r.Duration.Round(time.Millisecond), r.OfferedRate, r.AchievedRate)
	fmt.Fprintf(&b, "  messages: %d scheduled, %d sent: %d accepted, %d tempfail, %d rejected, %d conn-error, %d timeout; %d unsent",
		r.Scheduled, r.Sent, r.Accepted, r.Tempfail, r.Rejected, r.ConnError, r.Timeout, r.Unsent)
	if !r.Done {
		fmt.Fprintf(&b, "; %d in flight, %d waiting", r.InFlight, r.Backlog)
	}
	if r.MaxBacklog > 0 {
		fmt.Fprintf(&b, " (backlog peaked at %d)", r.MaxBacklog)
	}
	b.WriteByte('\n')
	l := r.Latency
	fmt.Fprintf(&b, "  latency (accepted): p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n",
		ms(l.P50), ms(l.P90), ms(l.P99), ms(l.P999), ms(l.Max))
	if !r.ClosedLoop {
		fmt.Fprintf(&b, "  lag (start - schedule): p50 %s  p99 %s  max %s\n", ms(r.Lag.P50), ms(r.Lag.P99), ms(r.Lag.Max))
	}
	return b.String()
}

// ms formats d in milliseconds.
func ms(d time.Duration) string { return fmt.Sprintf("%.3fms", float64(d)/float64(time.Millisecond)) }
