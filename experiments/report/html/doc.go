// Package htmlreport renders experiment runs from their journals as one
// self-contained HTML page to look at and share, and serves the same page
// live while a run goes ([Live]).
//
// The page draws, for each run: every SLI over time with the fault windows
// shaded (the plan outlined), the tolerance band, the baseline, the
// recovery clock's start, its bound and the measured time to recover, and
// failed samples marked; per load-surge step, from the windows the run
// journals (journal.TypeLoad), its offered and accepted rates, its latency
// percentiles (gaps where nothing was accepted) and its failure shares,
// or, in journals without windows, the load SLIs; the faults' timeline, planned
// against actual onset. Its status word, reason, verdict table and
// assertion sentences are the run's summary (report.Summarize), the one
// every other report reads, so the page never contradicts them.
//
// Charts are inline SVG written here, so the report has no script at all,
// fetches nothing, and reads the same in any browser or with scripting
// off. Everything from the journal is escaped (html/template for the
// markup; the SVG writer escapes every attribute and text), and a strict
// Content-Security-Policy allows only the page's own style (and, live, its
// own script) by hash.
package htmlreport
