package htmlreport

import (
	"fmt"
	"html/template"
	"math"
	"strconv"
	"strings"
	"time"
)

// loadView is the part of the Load section about one load-surge step.
type loadView struct {
	Step    int
	Label   string
	Charts  []chartView
	Dropped int
}

// windowLine is one series of a load chart: a value per window, nil where
// the window has none (no latency when nothing was accepted).
type windowLine struct {
	name, class string
	at          []time.Time
	v           []*float64
}

// rateUnit, shareUnit are the units of the load's rates and shares.
const (
	rateUnit  = " msg/s"
	shareUnit = "%"
)

// loadViews draws, for each load-surge step that journaled windows, its
// offered and accepted rates, its latency percentiles and, when any is
// not zero, its failure shares.
func loadViews(r *run) []loadView {
	var out []loadView
	for _, l := range r.loads {
		if len(l.windows) == 0 {
			continue
		}
		label := fmt.Sprintf("method[%d]", l.step)
		if l.step >= 0 && l.step < len(r.steps) {
			label = stepLabel(r.steps[l.step])
		}
		v := loadView{Step: l.step, Label: label, Dropped: l.dropped}
		key := func(kind string) string { return fmt.Sprintf("method[%d] %s", l.step, kind) }
		pick := func(name, class string, get func(loadWindow) *float64) windowLine {
			ln := windowLine{name: name, class: class}
			for _, w := range l.windows {
				ln.at = append(ln.at, w.at)
				ln.v = append(ln.v, get(w))
			}
			return ln
		}
		val := func(x float64) *float64 { return &x }

		rates := []windowLine{
			pick("offered", "s0", func(w loadWindow) *float64 { return val(w.OfferedRate) }),
			// Dashed, so that offered shows under it where they are equal.
			pick("accepted", "s1 dash", func(w loadWindow) *float64 { return val(w.AcceptedRate) }),
		}
		v.Charts = append(v.Charts, chartView{Key: key("rate"), Name: "offered and accepted rate",
			Caption: fmt.Sprintf("messages per second, %d windows of about %s", len(l.windows), secs(seconds(meanSeconds(l.windows)))),
			SVG:     lineChart(r, label+": offered and accepted rate", rateUnit, rates, "")})

		lats := []windowLine{
			pick("p50", "s0", func(w loadWindow) *float64 { return w.P50 }),
			pick("p99", "s1", func(w loadWindow) *float64 { return w.P99 }),
		}
		cap := "of the messages accepted in each window, from their scheduled time"
		if n := gaps(lats[1]); n > 0 {
			cap += fmt.Sprintf("; %d windows accepted nothing (marked on the axis)", n)
		}
		v.Charts = append(v.Charts, chartView{Key: key("latency"), Name: "latency p50 and p99", Caption: cap,
			SVG: lineChart(r, label+": latency p50 and p99", "s", lats, "nothing accepted")})

		var shares []windowLine
		var peaks []string
		for _, sh := range []struct {
			name string
			get  func(loadWindow) float64
		}{
			{"tempfail", func(w loadWindow) float64 { return w.Tempfail }},
			{"rejected", func(w loadWindow) float64 { return w.Rejected }},
			{"conn-error", func(w loadWindow) float64 { return w.ConnError }},
			{"timeout", func(w loadWindow) float64 { return w.Timeout }},
			{"cut", func(w loadWindow) float64 { return w.Cut }},
			{"unsent", func(w loadWindow) float64 { return w.Unsent }},
		} {
			ln := pick(sh.name, fmt.Sprintf("s%d", len(shares)), func(w loadWindow) *float64 { return val(100 * sh.get(w)) })
			peak, at := 0.0, time.Time{}
			for i, p := range ln.v {
				if *p > peak {
					peak, at = *p, ln.at[i]
				}
			}
			if peak > 0 {
				shares = append(shares, ln)
				peaks = append(peaks, fmt.Sprintf("%s peaked at %s at +%s", sh.name, value(peak, shareUnit), secs(at.Sub(r.start))))
			}
		}
		if len(shares) > 0 {
			v.Charts = append(v.Charts, chartView{Key: key("failures"), Name: "failures",
				Caption: "share of the messages settled in each window; " + strings.Join(peaks, ", "),
				SVG:     lineChart(r, label+": failures", shareUnit, shares, "")})
		}
		out = append(out, v)
	}
	return out
}

// meanSeconds is the windows' mean length in seconds.
func meanSeconds(ws []loadWindow) float64 {
	var sum float64
	for _, w := range ws {
		sum += w.Seconds
	}
	return sum / float64(len(ws))
}

// gaps counts the windows of ln without a value.
func gaps(ln windowLine) int {
	n := 0
	for _, v := range ln.v {
		if v == nil {
			n++
		}
	}
	return n
}

// lineChart draws windowed series of a run over its time axis, with the
// fault windows shaded as on the SLI charts: each series a line broken
// where a window has no value, a point at the end of each window, and,
// when gap is set, a mark on the axis (titled gap) for each window in
// which the first series has no value.
func lineChart(r *run, title, unit string, lines []windowLine, gap string) template.HTML {
	var s svg
	ax := newTimeAxis(r, padL, chartW-padR)
	hi, n := 0.0, 0
	for _, ln := range lines {
		n = max(n, len(ln.v))
		for _, v := range ln.v {
			if v != nil {
				hi = math.Max(hi, *v)
			}
		}
	}
	if hi <= 0 {
		hi = 1
	}
	hi *= 1.08
	y := scale{0, hi, chartH - padB, padT}
	top, bottom := y.p1, y.p0
	s.open("svg", "class", "chart load", "viewBox", fmt.Sprintf("0 0 %d %d", chartW, chartH), "role", "img",
		"data-windows", strconv.Itoa(n))
	s.text("title", title)
	drawFaults(&s, r, ax, top, bottom)
	drawAxes(&s, ax, y, unit)
	for i, ln := range lines {
		// The key, top right.
		kx := ax.x.p1 - float64(len(lines)-i)*90
		s.el("line", "class", "line "+ln.class, "x1", f(kx), "x2", f(kx+14), "y1", f(top+6), "y2", f(top+6))
		s.text("text", ln.name, "class", "lbl", "x", f(kx+18), "y", f(top+10))
		var seg []string
		flush := func() {
			if len(seg) > 1 {
				s.titled("polyline", ln.name, "class", "line "+ln.class, "data-series", ln.name, "points", strings.Join(seg, " "))
			}
			seg = nil
		}
		for j, v := range ln.v {
			x := ax.px(ln.at[j])
			at := "+" + secs(ln.at[j].Sub(r.start))
			if v == nil {
				flush()
				if gap != "" && i == 0 {
					s.titled("path", at+": "+gap, "class", "gap",
						"d", fmt.Sprintf("M%s %sl4 -8l4 8z", f(x-4), f(bottom-1)))
				}
				continue
			}
			seg = append(seg, f(x)+","+f(y.at(*v)))
			s.titled("circle", fmt.Sprintf("%s %s %s", ln.name, at, value(*v, unit)),
				"class", "pt "+ln.class, "data-series", ln.name, "cx", f(x), "cy", f(y.at(*v)), "r", "2.2")
		}
		flush()
	}
	s.close("svg")
	return template.HTML(s.String()) //nolint:gosec // svg escapes everything it writes
}
