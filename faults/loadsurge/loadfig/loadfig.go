// Package loadfig names the figures a load-surge run reports in its
// fault Status (the Figures of a faults.Status), and turns two snapshots
// of them into what happened between the two: the accepted and offered
// rates, the share of each outcome, and the latency percentiles.
//
// Every count among the figures is cumulative from the start of the run,
// and the latency distribution is a cumulative histogram with fixed bucket
// boundaries ([LatencyBounds]), so that a reader who keeps two snapshots
// can work out any window exactly ([Window]), however often it samples and
// wherever the run lives (in this process or a plugin's). The package has
// no dependencies beyond the standard library, so that both the generator
// and its readers can import it.
package loadfig

import (
	"fmt"
	"math"
	"sort"
	"time"
)

// FaultName is the name of the fault whose Status carries these figures.
const FaultName = "load-surge"

// Figure names. Counts are cumulative from the start of the run; an item
// is a message (protocol smtp) or a log-in session (protocol imap).
const (
	// Elapsed is the run's age in seconds: to now while it runs, to its
	// end once it is over.
	Elapsed = "elapsed_s"
	// Offered counts the items due so far by the schedule (in the closed
	// loop: taken by a worker).
	Offered = "offered"
	// Scheduling is 1 while the schedule still makes items due, 0 once it
	// has stopped (its planned duration passed, or the run was stopped):
	// what follows is the work in flight finishing.
	Scheduling = "scheduling"
	// Accepted counts SMTP messages the server answered 2xx to at the end
	// of DATA.
	Accepted = "accepted"
	// Succeeded counts IMAP sessions whose every step succeeded.
	Succeeded = "succeeded"
	// Tempfail counts SMTP messages refused with a 4xx reply.
	Tempfail = "tempfail"
	// Rejected counts SMTP messages refused with a 5xx reply.
	Rejected = "rejected"
	// ConnError counts SMTP messages whose connection failed.
	ConnError = "conn_error"
	// Timeout counts items whose own deadline passed (the run's timeout
	// parameter).
	Timeout = "timeout"
	// Cut counts items still in flight at the run's hard end (its grace
	// after the planned duration, its time-to-live, an aborted removal):
	// they were cut off, not timed out.
	Cut = "cut"
	// CutAfterData counts the SMTP messages among Cut whose end of DATA
	// had been sent: the server may have accepted them (its reply never
	// came, so the generator cannot tell).
	CutAfterData = "cut_after_data"
	// Unsent counts items that were due but never started: the backlog
	// was full, or the run stopped first.
	Unsent = "unsent"
	// Failed counts IMAP sessions that did not succeed, whatever the step
	// (timeouts and cut sessions included, unsent ones not).
	Failed = "failed"
	// Backlog is how many due items wait for a free session now (a gauge,
	// not a count).
	Backlog = "backlog"
	// LatencyPrefix starts the names of the latency histogram's buckets:
	// see [BucketName].
	LatencyPrefix = "lat_b"
)

// Latency histogram boundaries: from LatencyMin to LatencyMax, each
// boundary LatencyRatio times the one before, rounded down to the
// nanosecond (the last one is LatencyMax).
const (
	LatencyMin   = 100 * time.Microsecond
	LatencyMax   = 5 * time.Minute
	LatencyRatio = 1.05
)

// LatencyBounds returns the upper bounds of the latency histogram's
// buckets, in increasing order: bucket 0 holds latencies up to bounds[0]
// (100µs), bucket i latencies in (bounds[i-1], bounds[i]], and bucket
// len(bounds) those above the last bound (5 min). Successive bounds differ
// by a factor of at most [LatencyRatio], so a percentile read from the
// histogram is within 5 % of the true one. The slice is new on every call.
func LatencyBounds() []time.Duration {
	// In integer nanoseconds, rounded down, so that the bounds are the
	// same on every platform and no ratio exceeds 1.05.
	out := []time.Duration{LatencyMin}
	for b := LatencyMin; ; {
		b = b * 105 / 100
		if b >= LatencyMax {
			return append(out, LatencyMax)
		}
		out = append(out, b)
	}
}

// NumBuckets is the number of buckets of the latency histogram:
// len(LatencyBounds()) + 1.
func NumBuckets() int { return len(LatencyBounds()) + 1 }

// BucketName returns the figure name of latency bucket i: "lat_b000",
// "lat_b001", ... Its value is the number of successful items so far whose
// latency fell in the bucket. A bucket that is still empty may be left out
// of the figures.
func BucketName(i int) string { return fmt.Sprintf("%s%03d", LatencyPrefix, i) }

// Bucket returns the bucket of latency d, for the given bounds (from
// [LatencyBounds]).
func Bucket(bounds []time.Duration, d time.Duration) int {
	return sort.Search(len(bounds), func(i int) bool { return bounds[i] >= d })
}

// Figures is a snapshot of a load run's Status figures. A figure that is
// missing counts as 0.
type Figures map[string]float64

// WindowStats is what a load run did between two snapshots of its
// figures. Outcome counts are of the items whose outcome was settled in
// the window; Offered of the items that became due in it.
type WindowStats struct {
	// Seconds is the window's length: the difference of the runs' ages.
	Seconds float64
	// Offered and Succeeded count the items that became due, and those
	// that succeeded (SMTP: accepted; IMAP: succeeded), in the window.
	Offered, Succeeded float64
	// Ended counts the items whose outcome was settled in the window:
	// successes, every kind of failure, cut and unsent ones.
	Ended float64
	// OfferedRate and AcceptedRate are Offered and Succeeded per second
	// (0 for an empty window).
	OfferedRate, AcceptedRate float64
	// Shares of Ended, 0 to 1 (all 0 when nothing ended): refused with
	// 4xx or 5xx (SMTP only), connection failures (SMTP only), own
	// deadline passed, cut off at the hard end, never started.
	Tempfail, Rejected, ConnError, Timeout, Cut, Unsent float64
	// Latency holds, per histogram bucket, the successes of the window.
	Latency []float64
}

// Window returns what the run did between snapshots a and b (a taken
// first; a nil a is the run's start). Counts that went down (snapshots of
// different runs, or swapped) count as 0.
func Window(a, b Figures) WindowStats {
	d := func(name string) float64 { return max(0, b[name]-a[name]) }
	w := WindowStats{Seconds: d(Elapsed), Offered: d(Offered)}
	w.Succeeded = d(Accepted) + d(Succeeded)
	fails := d(Tempfail) + d(Rejected) + d(ConnError) + d(Timeout) + d(Cut)
	if _, imap := b[Succeeded]; imap {
		// An IMAP run's failures are counted by step; Failed is their sum.
		fails = d(Failed)
	}
	w.Ended = w.Succeeded + fails + d(Unsent)
	if w.Seconds > 0 {
		w.OfferedRate, w.AcceptedRate = w.Offered/w.Seconds, w.Succeeded/w.Seconds
	}
	if w.Ended > 0 {
		w.Tempfail, w.Rejected, w.ConnError = d(Tempfail)/w.Ended, d(Rejected)/w.Ended, d(ConnError)/w.Ended
		w.Timeout, w.Cut, w.Unsent = d(Timeout)/w.Ended, d(Cut)/w.Ended, d(Unsent)/w.Ended
	}
	n := NumBuckets()
	w.Latency = make([]float64, n)
	for i := range n {
		w.Latency[i] = d(BucketName(i))
	}
	return w
}

// Latencies returns the number of successes whose latency the window's
// histogram holds.
func (w WindowStats) Latencies() float64 {
	var n float64
	for _, c := range w.Latency {
		n += c
	}
	return n
}

// Quantile returns the q-quantile (0 < q ≤ 1) of the window's latencies,
// by nearest rank, interpolated linearly within its bucket; ok is false
// when the window holds no latency. A quantile beyond the last bound is
// reported as [LatencyMax].
func (w WindowStats) Quantile(q float64) (d time.Duration, ok bool) {
	n := w.Latencies()
	if n == 0 {
		return 0, false
	}
	bounds := LatencyBounds()
	rank := max(1, math.Ceil(q*n))
	var cum float64
	for i, c := range w.Latency {
		if c == 0 || cum+c < rank {
			cum += c
			continue
		}
		if i >= len(bounds) {
			return LatencyMax, true
		}
		lo := time.Duration(0)
		if i > 0 {
			lo = bounds[i-1]
		}
		hi := bounds[i]
		return lo + time.Duration(float64(hi-lo)*(rank-cum)/c), true
	}
	return LatencyMax, true
}
