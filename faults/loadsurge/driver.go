package loadsurge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/mailchaos/mailchaos/faults/loadsurge/loadfig"
)

// histogramMax is the largest latency the histograms track (10 minutes, in
// microseconds); longer ones are recorded as this.
const histogramMax = int64(10 * time.Minute / time.Microsecond)

// runConfig is what every load run has, whatever its protocol: where it
// goes, when work is due, how much may be in flight and how it ends.
type runConfig struct {
	Addr        string
	Schedule    Schedule
	Duration    time.Duration
	Count       int64
	Concurrency int
	RunID       string
	Timeout     time.Duration
	Backlog     int
	Grace       time.Duration
}

// withDefaults fills in the defaults (a run ID starting with idPrefix) and
// checks every field.
func (c runConfig) withDefaults(idPrefix string) (runConfig, error) {
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.RunID == "" {
		var b [5]byte
		_, _ = rand.Read(b[:])
		c.RunID = idPrefix + hex.EncodeToString(b[:])
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
	bad := func(field, format string, args ...any) (runConfig, error) {
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
	return c, nil
}

// driver is the protocol-independent part of a load run: it makes work
// due, open loop (at the times the schedule sets, from a scheduler
// goroutine, through a bounded backlog) or closed loop (each worker takes
// the next item as soon as it is free), books each item's outcome with its
// latency and lag in HDR histograms, and ends the run. Its methods are safe
// for concurrent use.
//
// A driver owns the scheduler goroutine (open loop only), the workers
// started by launch and a supervisor goroutine that ends the run and waits
// for the others; all of them have ended when done is closed.
type driver struct {
	cfg       runConfig
	success   int                // the outcome whose latency is recorded
	unsent    int                // the outcome of due items never started
	onSuccess func(seq int64)    // called with mu held for each success, if set
	start     time.Time          // when the run started; offsets count from it
	closed    bool               // closed loop
	ctx       context.Context    // ends when the run is aborted
	abort     context.CancelFunc // ends ctx: closes every connection
	queue     chan int64         // open loop: due items by sequence number; nil once done (under mu)
	next      atomic.Int64       // closed loop: next sequence number
	live      atomic.Int32       // scheduler and workers still running
	stopReq   chan struct{}      // closed by requestStop
	stopped   atomic.Bool        // stop was requested or the run was aborted: start nothing more
	ended     chan struct{}      // closed when nothing more will be scheduled
	endOnce   sync.Once
	stopOnce  sync.Once
	allGone   chan struct{} // closed when the scheduler and workers have returned
	done      chan struct{} // closed when the run is over and end is set

	scheduled  atomic.Int64
	inFlight   atomic.Int32
	maxBacklog atomic.Int32
	// schedEnd is 1 + the offset from start at which scheduling ended (a
	// stop, the schedule's end, the count reached, an abort); 0 before.
	schedEnd atomic.Int64
	bounds   []time.Duration // of the latency buckets (loadfig.LatencyBounds)

	mu      sync.Mutex // guards the fields below
	counts  []int64
	latency *hdrhistogram.Histogram // successes, µs
	lag     *hdrhistogram.Histogram // started items, µs
	buckets []int64                 // successes by latency bucket (bounds)
	// uncertain counts the failed items the server may have completed
	// (see finishAs).
	uncertain int64
	end       time.Time // when the run finished
}

// newDriver returns a driver for a run of cfg (with its defaults set) whose
// items end with one of numOutcomes outcomes. It starts nothing: see launch.
func newDriver(ctx context.Context, cfg runConfig, numOutcomes, success, unsent int) *driver {
	rctx, abort := context.WithCancel(ctx)
	bounds := loadfig.LatencyBounds()
	return &driver{
		cfg:     cfg,
		success: success,
		unsent:  unsent,
		closed:  cfg.Schedule.Closed(),
		ctx:     rctx,
		abort:   abort,
		stopReq: make(chan struct{}),
		ended:   make(chan struct{}),
		allGone: make(chan struct{}),
		done:    make(chan struct{}),
		counts:  make([]int64, numOutcomes),
		latency: hdrhistogram.New(1, histogramMax, 3),
		lag:     hdrhistogram.New(1, histogramMax, 3),
		bounds:  bounds,
		buckets: make([]int64, len(bounds)+1),
	}
}

// launch starts the run: the scheduler (open loop), cfg.Concurrency
// goroutines each running work(i) until it returns, and the supervisor.
// work takes items with take until it reports none.
func (d *driver) launch(work func(i int)) {
	d.start = time.Now()
	d.live.Store(int32(d.cfg.Concurrency))
	if !d.closed {
		d.queue = make(chan int64, d.cfg.Backlog)
		d.live.Add(1)
		go d.schedule()
	}
	for i := range d.cfg.Concurrency {
		go func() {
			defer d.exit()
			work(i)
		}()
	}
	go d.supervise()
}

// RunID returns the run's ID (the configured one, or the one generated).
func (d *driver) RunID() string { return d.cfg.RunID }

// Done is closed when the run is over and every goroutine it started has
// ended.
func (d *driver) Done() <-chan struct{} { return d.done }

// Stop ends the run gracefully and waits for it: nothing more is scheduled,
// items still waiting for a worker count as unsent, and those in flight get
// the grace period to finish before their connections are closed. Calling
// Stop again, or after the run ended, just waits.
func (d *driver) Stop() {
	d.requestStop()
	<-d.done
}

// requestStop starts a graceful stop without waiting for it.
func (d *driver) requestStop() {
	d.stopOnce.Do(func() {
		d.markSchedEnd()
		d.stopped.Store(true)
		close(d.stopReq)
	})
}

// scheduleEnded is closed once nothing more will be scheduled: the
// schedule ran out, the count or the duration was reached, or the run was
// stopped or aborted.
func (d *driver) scheduleEnded() <-chan struct{} { return d.ended }

// endAsPlanned ends the run as its own end would: when the schedule has
// already ended by itself, the run is in its grace, where the items that
// were due are still offered, and nothing more is done; else it is a
// graceful stop (requestStop).
func (d *driver) endAsPlanned() {
	select {
	case <-d.ended:
		if !d.stopped.Load() {
			return
		}
	default:
	}
	d.requestStop()
}

// take makes the next item due. Unless wait is set it only takes one that
// is already due (the closed loop always has one). It reports false when
// there is none: the run is ending, or none is due yet. In the open loop,
// items due after a stop or an abort are booked as unsent. due is the
// item's scheduled time (in the closed loop, now) and lag how late it
// starts (-1 in the closed loop). The item is in flight until finish.
func (d *driver) take(wait bool) (seq int64, due time.Time, lag time.Duration, ok bool) {
	if d.closed {
		if d.dropping() {
			return 0, time.Time{}, 0, false
		}
		select {
		case <-d.ended:
			return 0, time.Time{}, 0, false
		default:
		}
		seq = d.next.Add(1) - 1
		if d.cfg.Count > 0 && seq >= d.cfg.Count {
			d.endScheduling()
			return 0, time.Time{}, 0, false
		}
		d.scheduled.Add(1)
	} else {
		for {
			if !wait && d.dropping() {
				return 0, time.Time{}, 0, false
			}
			if wait {
				seq, ok = <-d.queue
			} else {
				select {
				case seq, ok = <-d.queue:
				default:
				}
			}
			if !ok {
				return 0, time.Time{}, 0, false
			}
			if !d.dropping() {
				break
			}
			d.record(seq, d.unsent, -1, -1, false)
		}
	}
	now := time.Now()
	due, lag = now, -1
	if !d.closed {
		at, _ := d.cfg.Schedule.At(seq)
		due = d.start.Add(at)
		lag = max(0, now.Sub(due))
	}
	d.inFlight.Add(1)
	return seq, due, lag, true
}

// finish books the outcome of an item taken with this lag; latency is
// recorded for a success only.
func (d *driver) finish(seq int64, o int, latency, lag time.Duration) {
	d.finishAs(seq, o, latency, lag, false)
}

// finishAs is finish; uncertain marks a failed item the server may have
// completed all the same (an SMTP message cut after its end of DATA was
// sent), counted with it in one step so that snapshots stay consistent.
func (d *driver) finishAs(seq int64, o int, latency, lag time.Duration, uncertain bool) {
	if o == d.unsent {
		lag = -1
	}
	d.record(seq, o, latency, lag, uncertain)
	d.inFlight.Add(-1)
}

// record books the outcome of item seq; latency and lag are negative when
// not measured.
func (d *driver) record(seq int64, o int, latency, lag time.Duration, uncertain bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.counts[o]++
	if uncertain {
		d.uncertain++
	}
	if lag >= 0 {
		_ = d.lag.RecordValue(min(lag.Microseconds(), histogramMax))
	}
	if o != d.success {
		return
	}
	_ = d.latency.RecordValue(min(latency.Microseconds(), histogramMax))
	d.buckets[loadfig.Bucket(d.bounds, latency)]++
	if d.onSuccess != nil {
		d.onSuccess(seq)
	}
}

// endScheduling marks that nothing more will be scheduled.
// ended is closed first, so a run seen no longer scheduling has ended its
// schedule by the time a stop looks.
func (d *driver) endScheduling() {
	d.endOnce.Do(func() { close(d.ended) })
	d.markSchedEnd()
}

// markSchedEnd notes when scheduling ended, the first time it is called.
func (d *driver) markSchedEnd() { d.schedEnd.CompareAndSwap(0, int64(time.Since(d.start))+1) }

// offeredSpan is how long the run has been making work due by now: from
// its start to now, to the end of scheduling, or to the end of its planned
// duration, whichever comes first. The grace that follows is not part of
// it, so the offered rate is the schedule's, not one diluted by the wait
// for the last replies.
func (d *driver) offeredSpan(now time.Time) time.Duration {
	span := now.Sub(d.start)
	if e := d.schedEnd.Load(); e > 0 {
		span = min(span, time.Duration(e-1))
	}
	if d.cfg.Duration > 0 {
		span = min(span, d.cfg.Duration)
	}
	return span
}

// dropping reports whether due items must no longer be started.
func (d *driver) dropping() bool { return d.stopped.Load() || d.ctx.Err() != nil }

// exit is called by the scheduler and each worker as it returns.
func (d *driver) exit() {
	if d.live.Add(-1) == 0 {
		close(d.allGone)
	}
}

// schedule makes items due at their scheduled times (open loop). It sleeps
// until the next due time, then queues every item due by then; a full queue
// makes an item unsent. It returns at the end of the schedule, on a stop or
// on abort, closing the queue.
func (d *driver) schedule() {
	defer d.exit()
	defer close(d.queue)
	defer d.endScheduling()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	sleepUntil := func(t time.Time) bool {
		wait := time.Until(t)
		if wait <= 0 {
			return true
		}
		timer.Reset(wait)
		select {
		case <-timer.C:
			return true
		case <-d.stopReq:
		case <-d.ctx.Done():
		}
		return false
	}
	for seq := int64(0); ; seq++ {
		if d.cfg.Count > 0 && seq >= d.cfg.Count {
			// The count is reached: the schedule offered it by the time
			// the next item would have been due.
			// ended first: a run seen no longer scheduling has ended its
			// schedule.
			d.endOnce.Do(func() { close(d.ended) })
			if at, ok := d.cfg.Schedule.At(seq); ok {
				d.schedEnd.CompareAndSwap(0, int64(at)+1)
			}
			return
		}
		at, ok := d.cfg.Schedule.At(seq)
		if !ok || d.cfg.Duration > 0 && at >= d.cfg.Duration {
			break
		}
		if !sleepUntil(d.start.Add(at)) {
			return
		}
		d.scheduled.Add(1)
		select {
		case d.queue <- seq:
			if n := int32(len(d.queue)); n > d.maxBacklog.Load() {
				d.maxBacklog.Store(n)
			}
		default:
			d.record(seq, d.unsent, -1, -1, false)
		}
	}
	// The schedule ran out before the count: the run lasts its duration.
	if d.cfg.Duration > 0 {
		sleepUntil(d.start.Add(d.cfg.Duration))
	}
}

// supervise ends the run: it waits for the end of scheduling, a stop or an
// abort, gives the rest the grace period to finish, aborts what is left,
// and waits for every other goroutine before setting the final figures.
func (d *driver) supervise() {
	defer close(d.done)
	var limit <-chan time.Time
	if d.closed && d.cfg.Duration > 0 {
		t := time.NewTimer(d.cfg.Duration)
		defer t.Stop()
		limit = t.C
	}
	select {
	case <-d.ended:
	case <-limit:
		d.endScheduling()
	case <-d.stopReq:
	case <-d.ctx.Done():
	case <-d.allGone:
	}
	d.markSchedEnd()
	grace := time.NewTimer(d.cfg.Grace)
	defer grace.Stop()
	select {
	case <-d.allGone:
	case <-grace.C:
	case <-d.ctx.Done():
	}
	d.stopped.Store(true)
	d.abort()
	<-d.allGone
	d.mu.Lock()
	d.end = time.Now()
	d.queue = nil // its buffer is the largest part of a finished run
	d.mu.Unlock()
}

// snapshot returns the figures every protocol shares, with a copy of the
// outcome counts; attempted is the number of items that were started and
// finished: every outcome but unsent.
func (d *driver) snapshot() (f RunFigures, counts []int64, attempted int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	end := d.end
	f.Done = !end.IsZero()
	if !f.Done {
		end = time.Now()
	}
	f.RunID = d.cfg.RunID
	f.ClosedLoop = d.closed
	f.Duration = end.Sub(d.start)
	f.Scheduled = d.scheduled.Load()
	f.Unsent = d.counts[d.unsent]
	f.MaxBacklog = int(d.maxBacklog.Load())
	f.InFlight = int(d.inFlight.Load())
	f.Latency = percentiles(d.latency)
	f.Lag = percentiles(d.lag)
	f.Scheduling = d.schedEnd.Load() == 0
	f.LatencyBuckets = append([]int64(nil), d.buckets...)
	if d.queue != nil {
		f.Backlog = len(d.queue)
	}
	counts = append([]int64(nil), d.counts...)
	f.uncertain = d.uncertain
	for o, n := range counts {
		if o != d.unsent {
			attempted += n
		}
	}
	if s := d.offeredSpan(end).Seconds(); s > 0 {
		f.OfferedRate = float64(f.Scheduled) / s
	}
	if s := f.Duration.Seconds(); s > 0 {
		f.AchievedRate = float64(attempted) / s
	}
	return f, counts, attempted
}
