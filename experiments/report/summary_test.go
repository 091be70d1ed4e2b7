package report

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/experiments/journal"
)

// summarySchema compiles docs/summary.schema.json.
func summarySchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	sch, err := c.Compile("../../docs/summary.schema.json")
	require.NoError(t, err)
	return sch
}

// TestSummaryMatchesItsSchema validates the summary of every testdata
// journal (real runs of each exit path, old-format journals, a crashed
// run, several runs at once) against the published JSON Schema.
func TestSummaryMatchesItsSchema(t *testing.T) {
	sch := summarySchema(t)
	for name, runs := range goldenCases(t) {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			require.NoError(t, JSON(&buf, runs...))
			inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(buf.Bytes()))
			require.NoError(t, err)
			require.NoError(t, sch.Validate(inst), buf.String())
		})
	}
}

// TestSchemaRejects: the validator does reject what breaks the schema,
// so the test above can fail.
func TestSchemaRejects(t *testing.T) {
	sch := summarySchema(t)
	var buf bytes.Buffer
	require.NoError(t, JSON(&buf, readJournal(t, "exit-fail")))
	var doc map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &doc))
	for _, bad := range []func(map[string]any){
		func(d map[string]any) { d["schema"] = "mailchaos.summary/v0" },
		func(d map[string]any) { d["status"] = "pass" },
		func(d map[string]any) {
			d["runs"].([]any)[0].(map[string]any)["slis"].([]any)[0].(map[string]any)["samples"] = -1
		},
		func(d map[string]any) { delete(d["runs"].([]any)[0].(map[string]any), "recovery") },
	} {
		var d map[string]any
		require.NoError(t, json.Unmarshal(buf.Bytes(), &d))
		bad(d)
		b, err := json.Marshal(d)
		require.NoError(t, err)
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		require.NoError(t, err)
		require.Error(t, sch.Validate(inst))
	}
}

// TestSummaryFacts: the figures of each exit path, as a pipeline reads
// them.
func TestSummaryFacts(t *testing.T) {
	sum := Summarize(readJournal(t, "exit-fail"))
	require.Equal(t, StatusFail, sum.Status)
	require.Equal(t, 1, sum.ExitCode)
	s := sum.Runs[0].SLIs[0]
	require.NotNil(t, s.Baseline.Value)
	require.True(t, s.Worst.OutOfTolerance, "a worst value beyond tolerance is marked")
	require.False(t, s.Recovery.Recovered)
	require.Nil(t, s.Recovery.TimeToRecover, "not recovered is null, not 0")
	require.NotNil(t, s.Recovery.OutFor)
	require.Contains(t, s.Recovery.Text, "not recovered (")
	f := sum.Runs[0].Faults[0]
	require.NotNil(t, f.PlannedStart)
	require.NotNil(t, f.Injected)
	require.NotNil(t, f.Removed)
	require.False(t, f.Injected.Before(*f.PlannedStart))

	sum = Summarize(readJournal(t, "exit-aborted-baseline"))
	require.Equal(t, StatusAborted, sum.Status)
	require.Nil(t, sum.Runs[0].Recovery, "the recovery was never judged")
	require.False(t, sum.Runs[0].SLIs[0].Baseline.Passed)

	sum = Summarize(readJournal(t, "truncated"))
	require.Equal(t, StatusUnfinished, sum.Status)
	require.Nil(t, sum.Runs[0].ExitCode)
	require.Equal(t, 3, sum.ExitCode, "an unfinished run counts as one that did not complete")

	// A crashed run of this version: its samples read in their unit.
	var buf bytes.Buffer
	require.NoError(t, Terminal(&buf, readJournal(t, "exit-crashed")))
	require.Regexp(t, `(?m)^  banner +\d+ +\d+ +\d+(\.\d+)?(µs|ms|s)$`, buf.String())

	// Several runs: the gravest exit code wins.
	sum = Summarize(readJournal(t, "exit-pass"), readJournal(t, "exit-rollback-failed"), readJournal(t, "exit-fail"))
	require.Equal(t, 4, sum.ExitCode)
	require.Equal(t, StatusRollbackFailed, sum.Status)
}

// TestWorstAllFailed: every window failing reads "all N failed", not 0s.
func TestWorstAllFailed(t *testing.T) {
	evs := readJournal(t, "exit-fail")
	for i := range evs {
		if s := evs[i].Summary; s != nil {
			s.SLIs[0].WorstMeasured, s.SLIs[0].Worst = false, 0
			s.SLIs[0].Failures = s.SLIs[0].Evaluations
		}
	}
	sum := Summarize(evs)
	w := sum.Runs[0].SLIs[0].Worst
	require.True(t, w.AllFailed)
	require.Nil(t, w.Value)
	var buf bytes.Buffer
	require.NoError(t, Terminal(&buf, evs))
	require.Contains(t, buf.String(), "all "+itoa(w.Evaluations)+" failed")
	require.NotContains(t, buf.String(), " 0s (")
	_ = journal.SummaryVersion
}

// TestTerminalColor: colours only when asked, on the status words, and the
// table keeps its alignment.
func TestTerminalColor(t *testing.T) {
	evs := readJournal(t, "exit-fail")
	var plain, color bytes.Buffer
	require.NoError(t, Terminal(&plain, evs))
	require.NoError(t, TerminalWith(&color, TerminalOptions{Color: true}, evs))
	require.NotContains(t, plain.String(), "\x1b")
	require.Contains(t, color.String(), ansiRed+"FAIL"+ansiReset)
	require.Equal(t, plain.String(), stripANSI(color.String()))
}

// stripANSI removes CSI sequences.
func stripANSI(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == 0x1b && i+1 < len(s) && s[i+1] == '[' {
			j := i + 2
			for j < len(s) && (s[j] < 0x40 || s[j] > 0x7e) {
				j++
			}
			i = j
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// TestDocumentedExampleIsValid: the example in docs/experiments.md
// matches the schema.
func TestDocumentedExampleIsValid(t *testing.T) {
	doc, err := os.ReadFile("../../docs/experiments.md")
	require.NoError(t, err)
	_, rest, ok := strings.Cut(string(doc), "### The JSON summary")
	require.True(t, ok)
	_, rest, ok = strings.Cut(rest, "```json\n")
	require.True(t, ok)
	example, _, ok := strings.Cut(rest, "```")
	require.True(t, ok)
	inst, err := jsonschema.UnmarshalJSON(strings.NewReader(example))
	require.NoError(t, err)
	require.NoError(t, summarySchema(t).Validate(inst))
}
