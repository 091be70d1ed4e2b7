package cli

import (
	"fmt"
	"io"

	"github.com/mailchaos/mailchaos/experiments"
	"github.com/mailchaos/mailchaos/experiments/journal"
	"github.com/mailchaos/mailchaos/experiments/report"
	"github.com/mailchaos/mailchaos/internal/safefile"
)

// summaryJSONFlag writes the machine-readable summary.
const summaryJSONFlag = "summary-json"

// wantsColor reports whether out gets colours: a terminal, NO_COLOR unset
// or empty (no-color.org), TERM not dumb.
func wantsColor(st *state, out io.Writer) bool {
	return isTerminal(out) && st.env.Getenv("NO_COLOR") == "" && !dumbTerminal(st)
}

// dumbTerminal reports whether TERM says the terminal cannot move the
// cursor or show colours.
func dumbTerminal(st *state) bool { return st.env.Getenv("TERM") == "dumb" }

// terminalOptions are the options of the terminal summary on stdout.
func terminalOptions(st *state, out io.Writer) report.TerminalOptions {
	return report.TerminalOptions{Color: wantsColor(st, out)}
}

// runView is how a run shows on out: nothing with --quiet; a live status
// line below the progress lines on a terminal that can redraw a line (not
// TERM=dumb); else the progress lines alone.
func runView(st *state, out io.Writer, quiet bool) experiments.View {
	switch {
	case quiet:
		return nil
	case isTerminal(out) && !dumbTerminal(st):
		return experiments.NewTerminalView(out)
	}
	return experiments.NewLineView(out)
}

// writeSummaryJSON writes the summary of the journal at jpath to path, as
// `run --summary-json` and `report --json FILE` do; "-" is stdout.
func writeSummaryJSON(st *state, jpath, path string) error {
	if path == "" {
		return nil
	}
	events, err := journal.ReadFile(jpath)
	if err != nil {
		return err
	}
	b, err := report.MarshalSummary(report.Summarize(report.Split(events)...))
	if err != nil {
		return err
	}
	if path == "-" {
		_, err = st.env.Stdout.Write(b)
		return err
	}
	if err := safefile.Write(path, b, 0o644, safefile.Replace); err != nil {
		return fmt.Errorf("summary json: %w", err)
	}
	return nil
}
