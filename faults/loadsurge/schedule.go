package loadsurge

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/mailchaos/mailchaos/faults"
)

// Schedule is an arrival-rate curve: how many messages per second are due at
// each moment of a run. It is piecewise linear in the rate, so the intended
// send time of message i (counting from 0) has a closed form ([Schedule.At]);
// nothing is simulated and nothing drifts.
//
// The zero Schedule, like Constant(0), is the closed loop: no arrival curve,
// every worker sends back to back. A Schedule is immutable and safe for
// concurrent use.
type Schedule struct {
	segs []segment
}

// segment is a stretch of a schedule from start on (up to the next
// segment's start, the last one for ever), where the rate is
// rate + slope·(t-start), in messages per second.
type segment struct {
	start time.Duration
	rate  float64
	slope float64 // per second, per second
	cum   float64 // messages due before start
}

// Step is one step of a step schedule: from At on, Rate messages per second.
type Step struct {
	Rate float64
	At   time.Duration
}

// Constant returns a schedule of rate messages per second. Constant(0) is
// the closed loop.
func Constant(rate float64) Schedule {
	if rate <= 0 {
		return Schedule{}
	}
	return build([]segment{{rate: rate}})
}

// Ramp returns a schedule whose rate goes linearly from from to to over the
// given duration, and stays at to afterwards.
func Ramp(from, to float64, over time.Duration) Schedule {
	if over <= 0 {
		return build([]segment{{rate: to}})
	}
	return build([]segment{
		{rate: from, slope: (to - from) / over.Seconds()},
		{start: over, rate: to},
	})
}

// Steps returns a step schedule. Steps must be in increasing order of At;
// before the first step the rate is 0.
func Steps(steps []Step) Schedule {
	segs := []segment{{}}
	for _, s := range steps {
		if s.At <= 0 {
			segs[0].rate = s.Rate
			continue
		}
		segs = append(segs, segment{start: s.At, rate: s.Rate})
	}
	return build(segs)
}

// Spike returns a schedule of base messages per second with a burst of spike
// messages per second from at to at+length.
func Spike(base, spike float64, at, length time.Duration) Schedule {
	return Steps([]Step{{Rate: base}, {Rate: spike, At: at}, {Rate: base, At: at + length}})
}

// build fills in the cumulative counts of segs.
func build(segs []segment) Schedule {
	for i := 1; i < len(segs); i++ {
		p := segs[i-1]
		u := (segs[i].start - p.start).Seconds()
		segs[i].cum = p.cum + p.rate*u + p.slope*u*u/2
	}
	return Schedule{segs: segs}
}

// Closed reports whether s is the closed loop (no arrival curve).
func (s Schedule) Closed() bool { return len(s.segs) == 0 }

// At returns the intended send time of message i (from 0), as an offset from
// the start of the run, or false if the schedule never reaches i (it ends at
// a rate of 0 first). Message i is due when the cumulative rate reaches i, so
// message 0 is due at the first instant the rate is positive.
func (s Schedule) At(i int64) (time.Duration, bool) {
	if s.Closed() || i < 0 {
		return 0, false
	}
	n := float64(i)
	for k, seg := range s.segs {
		last := k == len(s.segs)-1
		if !last && n >= s.segs[k+1].cum {
			continue
		}
		if last && seg.rate <= 0 {
			return 0, false
		}
		x := n - seg.cum
		if x <= 0 {
			return seg.start, true
		}
		var u float64
		if seg.slope == 0 {
			u = x / seg.rate
		} else {
			// Solve rate·u + slope·u²/2 = x in the form that stays exact as
			// slope goes to 0 and when rate is 0.
			u = 2 * x / (seg.rate + math.Sqrt(math.Max(0, seg.rate*seg.rate+2*seg.slope*x)))
		}
		return seg.start + time.Duration(u*float64(time.Second)), true
	}
	return 0, false
}

// Expected returns how many messages the schedule makes due in [0, d): the
// integral of the rate.
func (s Schedule) Expected(d time.Duration) float64 {
	var total float64
	for k, seg := range s.segs {
		if d <= seg.start {
			break
		}
		end := d
		if k+1 < len(s.segs) && s.segs[k+1].start < d {
			end = s.segs[k+1].start
		}
		u := (end - seg.start).Seconds()
		total = seg.cum + seg.rate*u + seg.slope*u*u/2
	}
	return total
}

// Rate returns the arrival rate at offset t, in messages per second (0 for
// the closed loop).
func (s Schedule) Rate(t time.Duration) float64 {
	var r float64
	for _, seg := range s.segs {
		if t < seg.start {
			break
		}
		r = seg.rate + seg.slope*(t-seg.start).Seconds()
	}
	return r
}

// ParseSteps parses a step list such as "100@0s,300@10s,50@20s": RATE@OFFSET
// items, rates as in [faults.ParseRate], offsets as Go durations, in
// strictly increasing order of offset.
func ParseSteps(v string) ([]Step, error) {
	var steps []Step
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		rate, at, ok := strings.Cut(item, "@")
		if !ok {
			return nil, fmt.Errorf("step %q is not RATE@OFFSET", item)
		}
		r, err := faults.ParseRate(rate)
		if err != nil {
			return nil, fmt.Errorf("step %q: %w", item, err)
		}
		d, err := time.ParseDuration(strings.TrimSpace(at))
		if err != nil || d < 0 {
			return nil, fmt.Errorf("step %q: offset %q is not a duration of at least 0s", item, at)
		}
		if n := len(steps); n > 0 && d <= steps[n-1].At {
			return nil, fmt.Errorf("step %q: offsets must increase", item)
		}
		steps = append(steps, Step{Rate: r, At: d})
	}
	return steps, nil
}
