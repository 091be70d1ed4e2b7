package report

import (
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/mailchaos/mailchaos/experiments/journal"
)

// Terminal writes a plain-text summary of each run to w: its title, its
// status with the exit code, a table of the SLIs (tolerance, baseline,
// worst value while faults were active, time to recover, recovery bound,
// verdict), the failed assertions, the faults injected and removed, and
// the invariants. A fault that may still be in place (a removal failed, or
// a crashed run never removed it) is reported loudly with its toxics. A
// run without a verdict is shown as far as it goes, with per-SLI sample
// counts instead of the SLI table. With several runs, a last line counts
// them by outcome.
//
// Values are formatted by unit: seconds as durations (850ms, 1.2s),
// ratios as percentages. All journal text is reduced to single lines
// without control characters. Terminal returns the first write error.
func Terminal(w io.Writer, runs ...[]journal.Event) error {
	return TerminalWith(w, TerminalOptions{}, runs...)
}

// TerminalOptions change how [TerminalWith] writes.
type TerminalOptions struct {
	// Color marks status words and failed verdicts with ANSI colours
	// (green PASS, red FAIL, ROLLBACK FAILED, ERROR, yellow ABORTED,
	// INTERRUPTED, DID NOT FINISH). Only for a terminal that wants them:
	// the caller decides (NO_COLOR, TERM=dumb, not a terminal).
	Color bool
}

// TerminalWith is [Terminal] with options.
func TerminalWith(w io.Writer, opts TerminalOptions, runs ...[]journal.Event) error {
	ew := &errWriter{w: w}
	rs := splitAll(runs)
	for i, r := range rs {
		if i > 0 {
			ew.printf("\n")
		}
		r.terminal(ew, opts)
	}
	if len(rs) > 1 {
		ew.printf("\n%s\n", tally(rs))
	}
	return ew.err
}

func (r *run) terminal(w *errWriter, opts TerminalOptions) {
	paint := func(s string) string {
		if opts.Color {
			return colored(s)
		}
		return s
	}
	w.printf("%s\n", clean(r.name()))
	var about []string
	if r.file != "" {
		about = append(about, "file "+clean(r.file))
	}
	if r.id != "" {
		about = append(about, "run "+clean(r.id))
	}
	if !r.started.IsZero() {
		about = append(about, "started "+stamp(r.started))
	}
	if len(about) > 0 {
		w.printf("  %s\n", strings.Join(about, ", "))
	}
	if t := targetEndpoints(r.target); t != "" {
		w.printf("  target %s\n", t)
	}
	badge := paint(r.badge())
	if l := r.leftover(); l != "" {
		badge += ", " + paint(l)
	}
	w.printf("  %s: %s\n", badge, r.statusLine())
	for _, l := range r.reasonLines() {
		w.printf("  %s\n", l)
	}

	if rows := r.table(); rows != nil {
		w.printf("\n")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for i, row := range append([]sliRow{tableHeader()}, rows...) {
			if i > 0 {
				// The last column: its colour codes shift no other.
				row.verdict = paint(row.verdict)
			}
			_, _ = io.WriteString(tw, "  "+strings.Join(row.cells(), "\t")+"\n")
		}
		_ = tw.Flush() // a write error is kept by w
		if rec := r.facts().Recovery; rec != nil && rec.From != "" {
			from := rec.From
			w.printf("  time to recover counted from the planned end of %s\n", clean(from))
		}
	} else if rows := r.sampleRows(); rows != nil {
		w.printf("\n")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, row := range rows {
			_, _ = io.WriteString(tw, "  "+strings.Join(row, "\t")+"\n")
		}
		_ = tw.Flush()
	}

	if lines := r.failedSamples(); len(lines) > 0 {
		w.printf("\n  Failed samples:\n")
		for _, l := range lines {
			w.printf("    %s\n", l)
		}
	}
	if failed := r.failedAssertions(); len(failed) > 0 {
		w.printf("\n  Failed assertions:\n")
		for _, a := range failed {
			w.printf("    %s\n", assertionLine(a))
		}
	}
	if len(r.faults) > 0 {
		w.printf("\n  Faults:\n")
		for _, e := range r.faults {
			w.printf("    %s\n", r.faultLine(e))
		}
	}
	if len(r.outstanding) > 0 {
		w.printf("\n  !! %s: these faults may still be in place until they expire:\n", r.leftoverWord())
		for _, o := range r.outstanding {
			w.printf("  !!   %s\n", outstandingLine(o))
		}
		w.printf("  !! %s\n", recoverHint)
	}
	if inv := r.invariants(); len(inv) > 0 {
		w.printf("\n  Invariants:\n")
		for _, a := range inv {
			w.printf("    %-4s %s\n", resultWord(a), assertionLine(a))
		}
	}
}

// ANSI colours.
const (
	ansiRed    = "\x1b[1;31m"
	ansiGreen  = "\x1b[1;32m"
	ansiYellow = "\x1b[1;33m"
	ansiReset  = "\x1b[0m"
)

// colored is a status word or verdict in its colour; other text as is.
func colored(s string) string {
	switch s {
	case StatusPass, "pass":
		return ansiGreen + s + ansiReset
	case StatusFail, StatusRollbackFailed, StatusError, badgeNotRemoved:
		return ansiRed + s + ansiReset
	case StatusAborted, StatusInterrupted, StatusUnfinished:
		return ansiYellow + s + ansiReset
	}
	return s
}

// reasonLines say why the run stopped or failed, once: the verdict's
// reason with the offset of the abort that carried it, its error when
// that adds to the reason, and any other abort.
func (r *run) reasonLines() []string {
	s := r.facts()
	var lines []string
	why := s.Reason
	for _, a := range r.aborts {
		msg := clean(joinNonEmpty(": ", a.Message, a.Err))
		if msg == why || (why != "" && strings.Contains(why, msg)) {
			why += " (at " + r.offset(a.T) + ")"
			continue
		}
		lines = append(lines, "abort at "+r.offset(a.T)+": "+msg)
	}
	if why != "" {
		lines = append([]string{why}, lines...)
	}
	if s.Error != "" {
		lines = append(lines, "error: "+s.Error)
	}
	return lines
}

// sampleRows are a run without a verdict's sample counts, a header first:
// SLI, samples, failed probes, last value (in the SLI's unit when the
// journal names it). nil without samples.
func (r *run) sampleRows() [][]string {
	if len(r.samples) == 0 {
		return nil
	}
	rows := [][]string{{"SLI", "samples", "failed probes", "last value"}}
	for _, s := range r.samples {
		last := "failed"
		if s.lastOK {
			last = value(s.last, r.info(s.name).Unit)
		}
		rows = append(rows, []string{clean(s.name), strconv.Itoa(s.count), strconv.Itoa(s.failed), last})
	}
	return rows
}

// resultWord is pass, FAIL or skip.
func resultWord(a assertion) string {
	switch {
	case a.skipped():
		return "skip"
	case a.passed():
		return "pass"
	}
	return "FAIL"
}

// joinNonEmpty joins the non-empty parts with sep.
func joinNonEmpty(sep string, parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, sep)
}
