package experiments

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

func (r *runner) progress(format string, args ...any) {
	if r.opts.Progress == nil {
		return
	}
	r.outMu.Lock()
	defer r.outMu.Unlock()
	if r.opts.Live != nil {
		fmt.Fprint(r.opts.Live, "\r\033[K") // clear the status line first
	}
	fmt.Fprintf(r.opts.Progress, "%s %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// live redraws the status line until the returned function is called.
func (r *runner) live() (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				r.outMu.Lock()
				fmt.Fprint(r.opts.Live, "\r\033[K")
				r.outMu.Unlock()
				return
			case <-t.C:
				line := r.statusLine()
				r.outMu.Lock()
				fmt.Fprint(r.opts.Live, "\r\033[K"+line)
				r.outMu.Unlock()
			}
		}
	}()
	return func() { close(done); <-finished }
}

// statusLine is the live status: phase, elapsed/planned, the latest value
// of each SLI, and the faults active.
func (r *runner) statusLine() string {
	r.mu.Lock()
	phase := r.phaseName
	var active []string
	for _, a := range r.active {
		active = append(active, a.handle.Fault)
	}
	r.mu.Unlock()
	sort.Strings(active)
	var b strings.Builder
	fmt.Fprintf(&b, "[%s] %s/%s", phase, time.Since(r.started).Round(100*time.Millisecond),
		r.exp.plannedDuration().Round(time.Second))
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
