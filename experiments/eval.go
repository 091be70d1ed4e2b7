package experiments

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// point is one sample of an SLI.
type point struct {
	at     time.Time
	value  float64
	failed bool
	err    string // why a failed sample failed
}

// series holds an SLI's samples in time order, and the start times of the
// samples still being measured. Safe for concurrent use.
type series struct {
	mu      sync.Mutex
	points  []point
	pending map[uint64]time.Time
	seq     uint64
}

// begin notes a sample started at t and returns its ticket for finish.
func (s *series) begin(t time.Time) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending == nil {
		s.pending = map[uint64]time.Time{}
	}
	s.seq++
	s.pending[s.seq] = t
	return s.seq
}

// finish notes that a sample is no longer in flight.
func (s *series) finish(id uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.pending, id)
}

// oldestPending is the start of the oldest sample in flight.
func (s *series) oldestPending() (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var oldest time.Time
	for _, t := range s.pending {
		if oldest.IsZero() || t.Before(oldest) {
			oldest = t
		}
	}
	return oldest, !oldest.IsZero()
}

// add inserts a sample in time order (samples of slow probes arrive late)
// and reports whether it starts a streak of failures: it failed, and the
// sample before it (if any) did not.
func (s *series) add(p point) (streak bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := sort.Search(len(s.points), func(i int) bool { return s.points[i].at.After(p.at) })
	streak = p.failed && (i == 0 || !s.points[i-1].failed)
	s.points = append(s.points, point{})
	copy(s.points[i+1:], s.points[i:])
	s.points[i] = p
	return streak
}

// last returns the latest sample.
func (s *series) last() (point, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.points) == 0 {
		return point{}, false
	}
	return s.points[len(s.points)-1], true
}

// snapshot returns a copy of the samples.
func (s *series) snapshot() []point {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]point(nil), s.points...)
}

// evaluation is the tolerance checked at one moment.
type evaluation struct {
	at     time.Time
	stat   float64
	failed bool // the window holds a failed sample
	ok     bool // within tolerance
}

// evaluate checks tol at every sample time in [from, to]: the statistic of
// the samples in the window (at-over, at] (or the sample alone when over is
// 0). A window with a failed sample is out of tolerance.
func evaluate(pts []point, tol Tolerance, from, to time.Time) []evaluation {
	var out []evaluation
	lo := 0
	for i, p := range pts {
		if p.at.Before(from) || p.at.After(to) {
			continue
		}
		start := i
		if tol.Over > 0 {
			for lo < i && !pts[lo].at.After(p.at.Add(-tol.Over)) {
				lo++
			}
			start = lo
		}
		out = append(out, tol.check(p.at, pts[start:i+1]))
	}
	return out
}

// check evaluates one window.
func (tol Tolerance) check(at time.Time, window []point) evaluation {
	ev := evaluation{at: at}
	vals := make([]float64, 0, len(window))
	for _, p := range window {
		if p.failed {
			ev.failed = true
			continue
		}
		vals = append(vals, p.value)
	}
	if len(vals) > 0 {
		ev.stat = statistic(tol.Stat, vals)
	}
	ev.ok = !ev.failed && len(vals) > 0 && tol.within(ev.stat)
	return ev
}

// within reports whether v is inside the tolerance's bounds.
func (tol Tolerance) within(v float64) bool {
	if math.IsNaN(v) {
		return false
	}
	if tol.Max != nil && v > float64(*tol.Max) {
		return false
	}
	if tol.Min != nil && v < float64(*tol.Min) {
		return false
	}
	if len(tol.Range) == 2 && (v < float64(tol.Range[0]) || v > float64(tol.Range[1])) {
		return false
	}
	return true
}

// worse reports whether a is further out of tolerance than b (for "worst
// during faults"): larger when the tolerance has an upper bound, smaller
// when it only has a lower one.
func (tol Tolerance) worse(a, b float64) bool {
	if tol.Max == nil && len(tol.Range) == 0 && tol.Min != nil {
		return a < b
	}
	return a > b
}

// String writes the tolerance the way a user reads it.
func (tol Tolerance) String() string { return tol.format("") }

// format writes the tolerance with its values in unit: seconds as
// durations, ratios as percentages.
func (tol Tolerance) format(unit string) string {
	v := func(q Quantity) string {
		switch unit {
		case "s":
			return time.Duration(float64(q) * float64(time.Second)).String()
		case "ratio":
			return fmt.Sprintf("%g%%", float64(q)*100)
		}
		if strings.HasPrefix(unit, "/") {
			return fmt.Sprintf("%g%s", float64(q), unit) // a rate: 15/s
		}
		return fmt.Sprintf("%g", float64(q))
	}
	var s string
	switch {
	case len(tol.Range) == 2:
		s = v(tol.Range[0]) + ".." + v(tol.Range[1])
	case tol.Max != nil && tol.Min != nil:
		s = v(*tol.Min) + ".." + v(*tol.Max)
	case tol.Max != nil:
		s = "<= " + v(*tol.Max)
	case tol.Min != nil:
		s = ">= " + v(*tol.Min)
	}
	if tol.Over > 0 {
		s = fmt.Sprintf("%s of %s over %s", tol.Stat, s, tol.Over)
	}
	return s
}

// statistic computes a named statistic of vals (not empty).
func statistic(name string, vals []float64) float64 {
	switch name {
	case "min":
		return slices.Min(vals)
	case "mean":
		var sum float64
		for _, v := range vals {
			sum += v
		}
		return sum / float64(len(vals))
	case "last":
		return vals[len(vals)-1]
	case "p50", "p90", "p95", "p99", "p999":
		q := map[string]float64{"p50": .5, "p90": .9, "p95": .95, "p99": .99, "p999": .999}[name]
		return percentile(vals, q)
	}
	return slices.Max(vals)
}

// percentile is the nearest-rank percentile.
func percentile(vals []float64, q float64) float64 {
	s := append([]float64(nil), vals...)
	sort.Float64s(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// timeToRecover is the time from removed to the first evaluation from
// which the SLI stays within tolerance for hold, judged on the samples taken
// before end (the caller passes the start of the oldest sample still in
// flight, so a late, slow sample cannot be skipped over). ok is false when
// there is no such moment yet: a hold needs a sample at or past its end.
func timeToRecover(pts []point, tol Tolerance, removed, end time.Time, hold time.Duration) (time.Duration, bool) {
	var before []point
	for _, p := range pts {
		if p.at.Before(end) {
			before = append(before, p)
		}
	}
	evs := evaluate(before, tol, removed, end)
	for i, ev := range evs {
		if !ev.ok {
			continue
		}
		good, covered := true, false
		for _, later := range evs[i:] {
			if !later.ok {
				good = false
				break
			}
			if later.at.Sub(ev.at) >= hold {
				covered = true
				break
			}
		}
		if good && covered {
			return ev.at.Sub(removed), true
		}
		if good {
			return 0, false // in tolerance so far, but the hold is not over yet
		}
	}
	return 0, false
}
