package loadsurge

import (
	"fmt"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/mailchaos/mailchaos/faults/loadsurge/loadfig"
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
	// Timeout: a command's deadline (the run's Timeout) passed.
	Timeout
	// Cut: the message was still in flight at the run's hard end (the
	// grace after its duration or a stop ran out, or it was aborted), and
	// its connection was closed under it. If its end of DATA had been sent
	// the server may have accepted it: see [Result.CutAfterData].
	Cut
	// Unsent: the message was due but never sent: the backlog was full, or
	// the run stopped first.
	Unsent
	numOutcomes
)

// String returns the outcome's name: accepted, tempfail, rejected,
// conn-error, timeout, cut or unsent.
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
	case Cut:
		return "cut"
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

// RunFigures are the figures every load run keeps, whatever its
// protocol. An item is a message (SMTP) or a session (IMAP).
type RunFigures struct {
	// RunID names the run (SMTP: it prefixes every message's
	// X-Mailchaos-Id).
	RunID string `json:"run_id"`
	// Done is true once every goroutine of the run has ended.
	Done bool `json:"done"`
	// ClosedLoop is true when workers went back to back, with no schedule.
	ClosedLoop bool `json:"closed_loop"`
	// Duration runs from the start to now, or to the end of the last
	// item once done.
	Duration time.Duration `json:"duration_ns"`

	// Scheduled counts the items made due so far: the sum of the outcomes
	// plus Backlog plus InFlight.
	Scheduled int64 `json:"scheduled"`
	// Unsent counts the items that were due but never started: the
	// backlog was full, or the run stopped first.
	Unsent int64 `json:"unsent"`
	// Backlog is how many due items wait for a free worker now;
	// MaxBacklog is the most that ever waited.
	Backlog    int `json:"backlog"`
	MaxBacklog int `json:"max_backlog"`
	// InFlight is how many items are under way now.
	InFlight int `json:"in_flight"`

	// Scheduling is true while the schedule still makes items due; false
	// once scheduling has ended (the planned duration passed, the count
	// was reached, or the run was stopped) and only the work in flight
	// remains.
	Scheduling bool `json:"scheduling"`

	// OfferedRate is Scheduled per second of scheduling: over the planned
	// duration (or up to the stop, or to now while scheduling goes on),
	// not counting the grace given to the work in flight at the end.
	// AchievedRate is the items attempted (every outcome but unsent) per
	// second of Duration, the grace included. An open-loop run against a
	// target that keeps up has both equal to the schedule's rate.
	OfferedRate  float64 `json:"offered_rate"`
	AchievedRate float64 `json:"achieved_rate"`
	// Latency runs from each successful item's scheduled time (in the
	// closed loop: the moment a worker took it) to its end, so time spent
	// waiting for a free worker counts.
	Latency Percentiles `json:"latency"`
	// Lag runs from each started item's scheduled time to the moment a
	// worker started it (open loop only).
	Lag Percentiles `json:"lag"`
	// LatencyBuckets counts the successes by latency, in the buckets of
	// [loadfig.LatencyBounds] (the Status figures lat_b000...).
	LatencyBuckets []int64 `json:"-"`
	// uncertain is the driver's count of failed items the server may have
	// completed (SMTP: Result.CutAfterData).
	uncertain int64
}

// Over reports whether the run is over (Done).
func (f RunFigures) Over() bool { return f.Done }

// writeHead writes the first line of a summary: the run, its mode and
// state, its length and its rates in unit ("msg/s"); proto, if not
// empty, comes before the mode.
func (f RunFigures) writeHead(b *strings.Builder, proto, unit string) {
	state := "running"
	if f.Done {
		state = "done"
	}
	mode := "open loop"
	if f.ClosedLoop {
		mode = "closed loop"
	}
	if proto != "" {
		mode = proto + ", " + mode
	}
	fmt.Fprintf(b, "load-surge %s (%s, %s): %s, offered %.1f %s, achieved %.1f %s\n",
		f.RunID, mode, state, f.Duration.Round(time.Millisecond), f.OfferedRate, unit, f.AchievedRate, unit)
}

// writeTail ends the counts line (what is in flight and waiting) and
// writes the latency of the successes (what) and the lag.
func (f RunFigures) writeTail(b *strings.Builder, what string) {
	if !f.Done {
		fmt.Fprintf(b, "; %d in flight, %d waiting", f.InFlight, f.Backlog)
	}
	if f.MaxBacklog > 0 {
		fmt.Fprintf(b, " (backlog peaked at %d)", f.MaxBacklog)
	}
	b.WriteByte('\n')
	l := f.Latency
	fmt.Fprintf(b, "  latency (%s): p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n",
		what, ms(l.P50), ms(l.P90), ms(l.P99), ms(l.P999), ms(l.Max))
	if !f.ClosedLoop {
		fmt.Fprintf(b, "  lag (start - schedule): p50 %s  p99 %s  max %s\n", ms(f.Lag.P50), ms(f.Lag.P99), ms(f.Lag.Max))
	}
}

// progress is a one-line status: seconds so far, items attempted (noun)
// with their rate in unit, successes (ok), failures, unsent, waiting and
// the p99 latency.
func (f RunFigures) progress(noun, unit, ok string, attempted, succeeded int64) string {
	return fmt.Sprintf("%5.0fs  %s %d (%.0f %s)  %s %d  failed %d  unsent %d  waiting %d  p99 %.1fms",
		f.Duration.Seconds(), noun, attempted, f.AchievedRate, unit, ok, succeeded, attempted-succeeded, f.Unsent, f.Backlog,
		float64(f.Latency.P99)/float64(time.Millisecond))
}

// statusFigures returns the figures of [faults.Status] that every
// protocol has: scheduled and offered (the same count), elapsed_s,
// scheduling, unsent, in_flight, backlog, rate, offered_rate, p50_ms,
// p99_ms, lag_p99_ms and the latency histogram's buckets that are not
// empty (see package loadfig).
func (f RunFigures) statusFigures() map[string]float64 {
	msf := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	scheduling := 0.0
	if f.Scheduling {
		scheduling = 1
	}
	m := map[string]float64{
		"scheduled":        float64(f.Scheduled),
		loadfig.Offered:    float64(f.Scheduled),
		loadfig.Elapsed:    f.Duration.Seconds(),
		loadfig.Scheduling: scheduling,
		loadfig.Unsent:     float64(f.Unsent),
		"in_flight":        float64(f.InFlight),
		loadfig.Backlog:    float64(f.Backlog),
		"rate":             f.AchievedRate,
		"offered_rate":     f.OfferedRate,
		"p50_ms":           msf(f.Latency.P50),
		"p99_ms":           msf(f.Latency.P99),
		"lag_p99_ms":       msf(f.Lag.P99),
	}
	for i, n := range f.LatencyBuckets {
		if n > 0 {
			m[loadfig.BucketName(i)] = float64(n)
		}
	}
	return m
}

// Report is a load run's figures, of either protocol: [Result] (SMTP) or
// [IMAPResult].
type Report interface {
	// String is a human summary of a few lines.
	String() string
	// Progress is a one-line status for a terminal.
	Progress() string
	// StatusFigures are the figures of the load-surge fault's Status.
	StatusFigures() map[string]float64
	// Over reports whether the run is over.
	Over() bool
}

// results gives a run of either protocol its typed Wait and its Report,
// from its Snapshot.
type results[R Report] struct {
	d    *driver
	snap func() R
}

// Wait waits for the run to end and returns its final result.
func (x results[R]) Wait() R {
	<-x.d.done
	return x.snap()
}

// Report returns the run's Snapshot as a [Report].
func (x results[R]) Report() Report { return x.snap() }

// Result is an SMTP run's figures, final (from [Run.Wait]) or so far (from
// [Run.Snapshot]). Its Latency runs to the server's reply to the end of
// DATA.
type Result struct {
	RunFigures
	// Sent counts transactions attempted and ended: every outcome but
	// Unsent.
	Sent      int64 `json:"sent"`
	Accepted  int64 `json:"accepted"`
	Tempfail  int64 `json:"tempfail"`
	Rejected  int64 `json:"rejected"`
	ConnError int64 `json:"conn_error"`
	Timeout   int64 `json:"timeout"`
	Cut       int64 `json:"cut"`
	// CutAfterData counts the Cut messages whose end of DATA had been
	// sent when they were cut: the server may have accepted them, but its
	// reply never came, so the generator cannot tell how many it did (the
	// server's own records can: every message carries its X-Mailchaos-Id).
	// The others were cut before their end of DATA: not accepted.
	CutAfterData int64 `json:"cut_after_data"`
}

var _ Report = Result{}

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
	case Cut:
		return r.Cut
	case Unsent:
		return r.Unsent
	}
	return 0
}

// String is a human summary of a few lines.
func (r Result) String() string {
	var b strings.Builder
	r.writeHead(&b, "", "msg/s")
	fmt.Fprintf(&b, "  messages: %d scheduled, %d sent: %d accepted, %d tempfail, %d rejected, %d conn-error, %d timeout, %d cut",
		r.Scheduled, r.Sent, r.Accepted, r.Tempfail, r.Rejected, r.ConnError, r.Timeout, r.Cut)
	if r.Cut > 0 {
		fmt.Fprintf(&b, " (%d after their end of DATA: accepted or not, no reply came to tell)", r.CutAfterData)
	}
	fmt.Fprintf(&b, "; %d unsent", r.Unsent)
	r.writeTail(&b, "accepted")
	return b.String()
}

// Progress is a one-line status for a terminal.
func (r Result) Progress() string {
	return r.progress("sent", "msg/s", "accepted", r.Sent, r.Accepted)
}

// StatusFigures are the load-surge fault's Status figures: scheduled and
// offered, elapsed_s, scheduling, sent, accepted, tempfail, rejected,
// conn_error, timeout, cut, cut_after_data, unsent, in_flight, backlog,
// rate and offered_rate (msg/s), p50_ms, p99_ms, lag_p99_ms, and the
// latency histogram (see package loadfig for their meaning).
func (r Result) StatusFigures() map[string]float64 {
	m := r.statusFigures()
	for k, v := range map[string]int64{"sent": r.Sent, loadfig.Accepted: r.Accepted, loadfig.Tempfail: r.Tempfail,
		loadfig.Rejected: r.Rejected, loadfig.ConnError: r.ConnError, loadfig.Timeout: r.Timeout, loadfig.Cut: r.Cut,
		loadfig.CutAfterData: r.CutAfterData} {
		m[k] = float64(v)
	}
	return m
}

// ms formats d in milliseconds.
func ms(d time.Duration) string { return fmt.Sprintf("%.3fms", float64(d)/float64(time.Millisecond)) }
