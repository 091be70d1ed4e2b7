package experiments

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"
)

var (
	_ View = (*LineView)(nil)
	_ View = (*TerminalView)(nil)
	_ View = noView{}
)

// clearLine takes a terminal's cursor back to the start of its line and
// clears the line (ANSI).
const clearLine = "\r\033[K"

// LineView shows a run as progress lines, each after the time of day: what
// a run shows when its output is not a terminal. It shows no status line.
// It is safe for concurrent use.
type LineView struct {
	mu sync.Mutex // one line at a time
	w  io.Writer
}

// NewLineView returns a LineView that writes to w.
func NewLineView(w io.Writer) *LineView { return &LineView{w: w} }

// Line writes text on a line of its own after the time of day.
func (v *LineView) Line(text string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	writeLine(v.w, text)
}

// Live shows nothing: a LineView writes lines only. stop returns at once.
func (v *LineView) Live(func() string) (stop func()) { return func() {} }

// TerminalView shows a run on a terminal: the progress lines of a
// [LineView] and, below them while Live runs, a status line redrawn four
// times a second. It is safe for concurrent use.
type TerminalView struct {
	mu sync.Mutex // orders progress lines and redraws of the status line
	w  io.Writer
}

// NewTerminalView returns a TerminalView that draws on w, a terminal.
func NewTerminalView(w io.Writer) *TerminalView { return &TerminalView{w: w} }

// Line clears the status line and writes text in its place, after the
// time of day; the next redraw puts the status line back below it.
func (v *TerminalView) Line(text string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	fmt.Fprint(v.w, clearLine)
	writeLine(v.w, text)
}

// Live redraws the status line with status() four times a second, in a
// goroutine of its own, until stop is called. stop clears the status line
// and returns once the goroutine has ended; call it once.
func (v *TerminalView) Live(status func() string) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				v.draw("")
				return
			case <-t.C:
				v.draw(status())
			}
		}
	}()
	return func() { close(done); <-finished }
}

// draw replaces the status line with line.
func (v *TerminalView) draw(line string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	fmt.Fprint(v.w, clearLine+line)
}

// writeLine writes one progress line: the time of day, then text.
func writeLine(w io.Writer, text string) {
	fmt.Fprintf(w, "%s %s\n", time.Now().Format("15:04:05.000"), text)
}

// noView shows nothing: a run's view when Options.View is nil.
type noView struct{}

func (noView) Line(string)               {}
func (noView) Live(func() string) func() { return func() {} }

// progress shows one line on the run's view.
func (r *runner) progress(format string, args ...any) {
	r.opts.View.Line(fmt.Sprintf(format, args...))
}

// statusLine is the live status: phase, elapsed/planned, the latest value
// of each SLI, and the faults active.
func (r *runner) statusLine() string {
	r.mu.Lock()
	phase := r.phaseName
	r.mu.Unlock()
	var active []string
	for _, p := range r.lifecycle.InPlace() {
		active = append(active, p.Handle.Fault)
	}
	sort.Strings(active)
	var b strings.Builder
	fmt.Fprintf(&b, "[%s] %s/%s", phase, time.Since(r.started).Round(100*time.Millisecond),
		r.planned.Round(time.Second))
	for _, s := range r.slis {
		last, ok := s.series.last()
		if !ok {
			continue
		}
		v := "failed"
		if !last.failed {
			v = fmt.Sprintf("%.4g", last.value)
			if r.unit(s) == "s" {
				v = time.Duration(last.value * float64(time.Second)).Round(time.Millisecond).String()
			}
		}
		fmt.Fprintf(&b, "  %s=%s", s.spec.Name, v)
	}
	if len(active) > 0 {
		fmt.Fprintf(&b, "  faults: %s", strings.Join(active, ", "))
	}
	return b.String()
}
