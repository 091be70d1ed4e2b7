package htmlreport

import (
	"fmt"
	"html"
	"math"
	"strconv"
	"strings"
	"time"
)

// Chart geometry, in SVG user units.
const (
	chartW       = 760
	chartH       = 220
	padL, padR   = 70, 16
	padT, padB   = 14, 30
	maxDots      = 600 // above this many samples a series is a line alone
	ganttRowH    = 26
	ganttLabelsW = 170
)

// svg writes SVG markup. Element and attribute names are constants of this
// package; every attribute value and every text passes through
// html.EscapeString, so nothing from a journal can open markup.
type svg struct{ b strings.Builder }

// open writes <name attrs...>; attrs alternate names and values.
func (s *svg) open(name string, attrs ...string) {
	s.b.WriteByte('<')
	s.b.WriteString(name)
	for i := 0; i+1 < len(attrs); i += 2 {
		s.b.WriteByte(' ')
		s.b.WriteString(attrs[i])
		s.b.WriteString(`="`)
		s.b.WriteString(html.EscapeString(attrs[i+1]))
		s.b.WriteByte('"')
	}
	s.b.WriteByte('>')
}

func (s *svg) close(name string) { s.b.WriteString("</" + name + ">") }

// el writes an element with no children.
func (s *svg) el(name string, attrs ...string) {
	s.open(name, attrs...)
	s.close(name)
}

// text writes an element holding text (and a tooltip when title is set).
func (s *svg) text(name, text string, attrs ...string) {
	s.open(name, attrs...)
	s.b.WriteString(html.EscapeString(text))
	s.close(name)
}

// titled writes an element whose tooltip is title.
func (s *svg) titled(name, title string, attrs ...string) {
	s.open(name, attrs...)
	s.text("title", title)
	s.close(name)
}

func (s *svg) String() string { return s.b.String() }

// f formats a coordinate.
func f(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// scale maps a domain onto a pixel range.
type scale struct{ d0, d1, p0, p1 float64 }

func (sc scale) at(v float64) float64 {
	if sc.d1 == sc.d0 {
		return sc.p0
	}
	return sc.p0 + (v-sc.d0)/(sc.d1-sc.d0)*(sc.p1-sc.p0)
}

// ticks returns about n round values covering [lo, hi].
func ticks(lo, hi float64, n int) []float64 {
	if hi <= lo || n < 1 {
		return []float64{lo}
	}
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var out []float64
	for v := math.Ceil(lo/step) * step; v <= hi+step*1e-9; v += step {
		out = append(out, v)
	}
	return out
}

// timeAxis is the horizontal axis shared by a run's charts: seconds since
// the run started.
type timeAxis struct {
	start time.Time
	span  float64 // seconds
	x     scale
}

func newTimeAxis(r *run, left, right float64) timeAxis {
	span := r.axisEnd().Sub(r.start).Seconds()
	if span < 1 {
		span = 1
	}
	return timeAxis{start: r.start, span: span, x: scale{0, span, left, right}}
}

// px is t's horizontal position, clamped to the axis.
func (a timeAxis) px(t time.Time) float64 {
	v := t.Sub(a.start).Seconds()
	return a.x.at(math.Max(0, math.Min(a.span, v)))
}

// drawXAxis writes the time ticks along y.
func (a timeAxis) drawXAxis(s *svg, y float64) {
	s.el("line", "class", "axis", "x1", f(a.x.p0), "x2", f(a.x.p1), "y1", f(y), "y2", f(y))
	for _, v := range ticks(0, a.span, 8) {
		x := a.x.at(v)
		s.el("line", "class", "tick", "x1", f(x), "x2", f(x), "y1", f(y), "y2", f(y+4))
		s.text("text", "+"+strconv.FormatFloat(v, 'f', -1, 64)+"s", "class", "tl", "x", f(x), "y", f(y+16), "text-anchor", "middle")
	}
}

// drawAxes writes the value grid of y, labelled in unit, and the time
// axis along its bottom.
func drawAxes(s *svg, ax timeAxis, y scale, unit string) {
	for _, v := range ticks(y.d0, y.d1, 4) {
		yy := y.at(v)
		s.el("line", "class", "grid", "x1", f(ax.x.p0), "x2", f(ax.x.p1), "y1", f(yy), "y2", f(yy))
		s.text("text", value(v, unit), "class", "tl", "x", f(ax.x.p0-6), "y", f(yy+4), "text-anchor", "end")
	}
	ax.drawXAxis(s, y.p0)
}

// series is one line on a chart.
type series struct {
	s     *sli
	class string // s0, s1, ...: its colour
}

// sliChart draws one or more SLIs of a run over time: fault windows
// (actual, with the plan outlined), the tolerance band, the baseline, the
// recovery clock's start, its bound and the measured time to recover, and
// every sample, failed ones marked on the axis. Reference lines are drawn
// for the first series (the one the chart is about).
func sliChart(r *run, title string, ss []series) string {
	var s svg
	ax := newTimeAxis(r, padL, chartW-padR)
	main := ss[0].s
	unit := main.unit
	// The value axis covers the samples, the tolerance and the baseline.
	lo, hi := math.Inf(1), math.Inf(-1)
	see := func(v float64) { lo, hi = math.Min(lo, v), math.Max(hi, v) }
	see(0)
	n, failed := 0, 0
	for _, se := range ss {
		for _, e := range se.s.samples {
			n++
			if e.Failed {
				failed++
				continue
			}
			see(e.Value)
		}
	}
	tlo, thi := main.tol.bounds()
	if tlo != nil {
		see(*tlo)
	}
	if thi != nil {
		see(*thi)
	}
	if b, ok := main.baseline(); ok {
		see(b)
	}
	if hi <= lo {
		hi = lo + 1
	}
	hi += (hi - lo) * 0.08
	y := scale{lo, hi, chartH - padB, padT}
	names := make([]string, len(ss))
	for i, se := range ss {
		names[i] = se.s.name
	}
	s.open("svg", "class", "chart", "viewBox", fmt.Sprintf("0 0 %d %d", chartW, chartH), "role", "img",
		"data-sli", strings.Join(names, " "), "data-samples", strconv.Itoa(n), "data-failed", strconv.Itoa(failed))
	s.text("title", title)
	top, bottom := y.p1, y.p0
	drawFaults(&s, r, ax, top, bottom)
	// The tolerance band: where a value is within tolerance.
	if tlo != nil || thi != nil {
		b0, b1 := lo, hi
		if tlo != nil {
			b0 = *tlo
		}
		if thi != nil {
			b1 = *thi
		}
		s.titled("rect", "within tolerance: "+tolText(main.tol, unit), "class", "band", "x", f(ax.x.p0), "y", f(y.at(b1)),
			"width", f(ax.x.p1-ax.x.p0), "height", f(math.Max(0, y.at(b0)-y.at(b1))))
		for _, v := range []*float64{tlo, thi} {
			if v != nil {
				yy := y.at(*v)
				s.titled("line", "tolerance "+value(*v, unit), "class", "tol", "x1", f(ax.x.p0), "x2", f(ax.x.p1), "y1", f(yy), "y2", f(yy))
			}
		}
	}
	if b, ok := main.baseline(); ok {
		yy := y.at(b)
		s.titled("line", "baseline "+main.res.Baseline.Text, "class", "baseline", "x1", f(ax.x.p0), "x2", f(ax.x.p1), "y1", f(yy), "y2", f(yy))
	}
	drawRecovery(&s, r, main, ax, top, bottom)
	// Axes.
	drawAxes(&s, ax, y, unit)
	// The samples.
	for _, se := range ss {
		var pts []string
		for _, e := range se.s.samples {
			if !e.Failed {
				pts = append(pts, f(ax.px(e.At))+","+f(y.at(e.Value)))
			}
		}
		if len(pts) > 0 {
			s.titled("polyline", se.s.name, "class", "line "+se.class, "points", strings.Join(pts, " "))
		}
		dots := len(se.s.samples) <= maxDots
		for _, e := range se.s.samples {
			x := ax.px(e.At)
			if e.Failed {
				msg := "failed"
				if e.Err != "" {
					msg += ": " + e.Err
				}
				yy := bottom - 6
				s.titled("path", fmt.Sprintf("%s +%s %s", se.s.name, secs(e.At.Sub(r.start)), msg), "class", "fail",
					"d", fmt.Sprintf("M%s %sl8 8m0 -8l-8 8", f(x-4), f(yy-4)))
				continue
			}
			if dots {
				s.titled("circle", fmt.Sprintf("%s +%s %s", se.s.name, secs(e.At.Sub(r.start)), value(e.Value, unit)),
					"class", "pt "+se.class, "cx", f(x), "cy", f(y.at(e.Value)), "r", "2.2")
			}
		}
	}
	s.close("svg")
	return s.String()
}

// drawFaults shades, between top and bottom, the time each fault of r was
// in place and outlines its planned window.
func drawFaults(s *svg, r *run, ax timeAxis, top, bottom float64) {
	// Fault windows: the plan outlined, what happened shaded.
	for _, st := range r.steps {
		if st.planned && !r.methodStart.IsZero() {
			x0, x1 := ax.px(r.methodStart.Add(st.at)), ax.px(r.methodStart.Add(st.at+st.dur))
			s.titled("rect", fmt.Sprintf("%s planned: +%s for %s", stepLabel(st), secs(r.methodStart.Add(st.at).Sub(r.start)), secs(st.dur)),
				"class", "planned", "x", f(x0), "y", f(top), "width", f(x1-x0), "height", f(bottom-top))
		}
		if !st.injected.IsZero() {
			end := st.removed
			if end.IsZero() {
				end = r.end
			}
			x0, x1 := ax.px(st.injected), ax.px(end)
			s.titled("rect", fmt.Sprintf("%s in place: +%s to +%s", stepLabel(st), secs(st.injected.Sub(r.start)), secs(end.Sub(r.start))),
				"class", "fault", "x", f(x0), "y", f(top), "width", f(math.Max(1, x1-x0)), "height", f(bottom-top))
		}
	}
}

// drawRecovery marks the recovery clock's start, its bound and the
// measured time to recover of sl.
func drawRecovery(s *svg, r *run, sl *sli, ax timeAxis, top, bottom float64) {
	rs, ok := r.recoveryStart()
	if !ok || rs.After(r.end) {
		return
	}
	x := ax.px(rs)
	s.titled("line", "recovery clock starts", "class", "rstart", "x1", f(x), "x2", f(x), "y1", f(top), "y2", f(bottom))
	if w := r.spec.Recovery.Within; w > 0 {
		xb := ax.px(rs.Add(w))
		s.titled("line", "recovery bound: within "+secs(w), "class", "rbound", "x1", f(xb), "x2", f(xb), "y1", f(top), "y2", f(bottom))
		s.text("text", "bound "+secs(w), "class", "lbl", "x", f(xb-3), "y", f(top+10), "text-anchor", "end")
	}
	if sl.res == nil || sl.res.Recovery == nil {
		return
	}
	rec := sl.res.Recovery
	if !rec.Recovered || rec.TimeToRecover == nil {
		s.text("text", rec.Text, "class", "lbl bad", "x", f(x+4), "y", f(top+22))
		return
	}
	xt := ax.px(rs.Add(seconds(*rec.TimeToRecover)))
	s.titled("line", "recovered after "+rec.Text, "class", "ttr", "x1", f(xt), "x2", f(xt), "y1", f(top), "y2", f(bottom))
	s.text("text", "recovered "+rec.Text, "class", "lbl ok", "x", f(xt+4), "y", f(top+22))
}

// gantt draws the method's steps: the planned window outlined, the time
// each fault was in place filled, and the phases along the top.
func gantt(r *run) string {
	var s svg
	h := padT + 16 + ganttRowH*len(r.steps) + padB
	ax := newTimeAxis(r, ganttLabelsW, chartW-padR)
	s.open("svg", "class", "gantt", "viewBox", fmt.Sprintf("0 0 %d %d", chartW, h), "role", "img", "data-steps", strconv.Itoa(len(r.steps)))
	s.text("title", "faults: planned and actual")
	for _, p := range r.phases {
		x := ax.px(p.t)
		s.el("line", "class", "phase", "x1", f(x), "x2", f(x), "y1", f(padT), "y2", f(float64(h-padB)))
		s.text("text", p.name, "class", "tl", "x", f(x+3), "y", f(padT+8))
	}
	for i, st := range r.steps {
		y := float64(padT + 16 + i*ganttRowH)
		s.text("text", stepLabel(st), "class", "tl", "x", f(ganttLabelsW-8), "y", f(y+ganttRowH/2+4), "text-anchor", "end")
		if st.planned && !r.methodStart.IsZero() {
			x0, x1 := ax.px(r.methodStart.Add(st.at)), ax.px(r.methodStart.Add(st.at+st.dur))
			s.titled("rect", "planned", "class", "gplan", "x", f(x0), "y", f(y+2), "width", f(x1-x0), "height", f(ganttRowH-4))
		}
		if !st.injected.IsZero() {
			end := st.removed
			if end.IsZero() {
				end = r.end
			}
			x0, x1 := ax.px(st.injected), ax.px(end)
			cls := "gact"
			if st.err != "" {
				cls += " bad"
			}
			s.titled("rect", fmt.Sprintf("in place +%s to +%s", secs(st.injected.Sub(r.start)), secs(end.Sub(r.start))),
				"class", cls, "x", f(x0), "y", f(y+7), "width", f(math.Max(1, x1-x0)), "height", f(ganttRowH-14))
		}
	}
	ax.drawXAxis(&s, float64(h-padB))
	s.close("svg")
	return s.String()
}

// stepLabel names a step: method[i] fault (name).
func stepLabel(st *step) string {
	l := fmt.Sprintf("method[%d] %s", st.index, st.fault)
	if st.name != "" {
		l += " (" + st.name + ")"
	}
	return l
}
