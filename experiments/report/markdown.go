package report

import (
	"io"
	"strconv"
	"strings"

	"github.com/mailchaos/mailchaos/experiments/journal"
)

// Markdown writes the runs as GitHub-flavoured Markdown, fit for a CI step
// summary ($GITHUB_STEP_SUMMARY): per run a level-2 heading with the title
// and a bold badge (**PASS**, **FAIL**, **ABORTED**, **INTERRUPTED**,
// **DID NOT FINISH**, plus **ROLLBACK FAILED** when a fault may still be in
// place, or **FAULTS NOT REMOVED** for a crashed run), the status line, the SLI table of [Terminal], the failed
// assertions and the faults that may still be in place as lists, the
// invariants, and the fault events folded in a <details> block. With
// several runs, a first line counts them by badge. Journal text is escaped
// so that it cannot break the table or add markup. Markdown returns the
// first write error.
func Markdown(w io.Writer, runs ...[]journal.Event) error {
	ew := &errWriter{w: w}
	rs := splitAll(runs)
	if len(rs) > 1 {
		ew.printf("%s\n\n", tally(rs))
	}
	for i, r := range rs {
		if i > 0 {
			ew.printf("\n")
		}
		r.markdown(ew)
	}
	return ew.err
}

// tally is "4 runs: 1 PASS, 2 FAIL, 1 ABORTED", badges in order of first
// appearance.
func tally(rs []*run) string {
	var order []string
	count := map[string]int{}
	for _, r := range rs {
		b := r.badge()
		if count[b] == 0 {
			order = append(order, b)
		}
		count[b]++
	}
	parts := make([]string, len(order))
	for i, b := range order {
		parts[i] = strconv.Itoa(count[b]) + " " + b
	}
	return strconv.Itoa(len(rs)) + " runs: " + strings.Join(parts, ", ")
}

func (r *run) markdown(w *errWriter) {
	w.printf("## %s **%s**", mdText(r.name()), r.badge())
	if l := r.leftover(); l != "" {
		w.printf(" **%s**", l)
	}
	w.printf("\n\n")

	var about []string
	if r.file != "" {
		about = append(about, mdCode(r.file))
	}
	if r.id != "" {
		about = append(about, "run "+mdCode(r.id))
	}
	about = append(about, mdText(r.statusLine()))
	w.printf("%s\n", strings.Join(about, " · "))
	for _, l := range r.reasonLines() {
		w.printf("\n> %s\n", mdText(l))
	}

	if rows := r.table(); rows != nil {
		w.printf("\n")
		mdRow(w, tableHeader().cells())
		mdRow(w, []string{"---", "---", "---:", "---:", "---:", "---:", "---"})
		for _, row := range rows {
			cells := row.cells()
			for i, c := range cells {
				cells[i] = mdText(c)
			}
			if row.verdict != "pass" && row.verdict != "-" {
				cells[6] = "**" + cells[6] + "**"
			}
			if row.name == "overall" {
				cells[0] = "*overall*"
			}
			mdRow(w, cells)
		}
		if rec := r.facts().Recovery; rec != nil && rec.From != "" {
			from := rec.From
			w.printf("\nTime to recover is counted from the planned end of %s.\n", mdText(from))
		}
	} else if rows := r.sampleRows(); rows != nil {
		w.printf("\n")
		mdRow(w, rows[0])
		mdRow(w, []string{"---", "---:", "---:", "---:"})
		for _, row := range rows[1:] {
			for i, c := range row {
				row[i] = mdText(c)
			}
			mdRow(w, row)
		}
	}

	if lines := r.failedSamples(); len(lines) > 0 {
		w.printf("\n**Failed samples**\n\n")
		for _, l := range lines {
			w.printf("- %s\n", mdText(l))
		}
	}
	if failed := r.failedAssertions(); len(failed) > 0 {
		w.printf("\n**Failed assertions**\n\n")
		for _, a := range failed {
			w.printf("- %s\n", mdAssertion(a))
		}
	}
	if len(r.outstanding) > 0 {
		w.printf("\n**%s**: these faults may still be in place until they expire:\n\n", r.leftoverWord())
		for _, o := range r.outstanding {
			w.printf("- %s\n", mdText(outstandingLine(o)))
		}
		w.printf("\nRun %s on this journal to remove them.\n", mdCode("mailchaos recover"))
	}
	if inv := r.invariants(); len(inv) > 0 {
		w.printf("\n**Invariants**\n\n")
		for _, a := range inv {
			word := resultWord(a)
			if word == "FAIL" {
				word = "**FAIL**"
			}
			w.printf("- %s %s\n", word, mdAssertion(a))
		}
	}
	if len(r.faults) > 0 {
		w.printf("\n<details><summary>Faults: %s</summary>\n\n", r.faultCounts())
		for _, e := range r.faults {
			w.printf("- %s\n", mdText(r.faultLine(e)))
		}
		w.printf("\n</details>\n")
	}
}

// faultCounts is "2 injected, 1 removed, 1 removal failed".
func (r *run) faultCounts() string {
	var injected, removed, failed int
	for _, e := range r.faults {
		switch {
		case e.Type == journal.TypeInject:
			injected++
		case e.Err != "":
			failed++
		default:
			removed++
		}
	}
	s := strconv.Itoa(injected) + " injected, " + strconv.Itoa(removed) + " removed"
	if failed > 0 {
		s += ", " + strconv.Itoa(failed) + " removal failed"
	}
	return s
}

// mdAssertion is an assertion's sentence.
func mdAssertion(a assertion) string { return mdText(sentence(a)) }

// mdRow writes one table row of already escaped cells.
func mdRow(w *errWriter, cells []string) {
	w.printf("| %s |\n", strings.Join(cells, " | "))
}

// mdText makes journal text one line of inert Markdown: control
// characters go (see clean) and every character that could start markup,
// including the table's "|", is backslash-escaped.
func mdText(s string) string {
	s = clean(s)
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune("\\`*_[]<>|#&~!", c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// mdCode puts journal text in a code span, fenced with more backticks
// than it holds. It is not for table cells (a "|" would end the cell).
func mdCode(s string) string {
	s = clean(s)
	if s == "" {
		return "(none)"
	}
	longest, run := 0, 0
	for _, c := range s {
		if c == '`' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	fence := strings.Repeat("`", longest+1)
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		s = " " + s + " "
	}
	return fence + s + fence
}
