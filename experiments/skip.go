package experiments

import (
	"encoding/json"

	"github.com/mailchaos/mailchaos/experiments/journal"
	"github.com/mailchaos/mailchaos/internal/exitcode"
)

// Skip records in the journal an experiment that was never run, because
// a signal came before its turn: a run-start and an interrupted verdict
// with reason, so that every report of the journal says what the exit
// code says. It returns the run's result.
func Skip(j *journal.Writer, e *Experiment, runID, file, reason string) Result {
	res := Result{Status: journal.StatusInterrupted, Message: reason}
	if j == nil {
		return res
	}
	start := journal.Event{Type: journal.TypeRunStart, Run: runID, Title: e.Title, File: file}
	start.Experiment, _ = json.Marshal(redacted(e))
	_ = j.Write(start)
	_ = j.Write(journal.Event{Type: journal.TypeVerdict, Run: runID, Status: res.Status, Message: reason,
		ExitCode: int(exitcode.Of(Outcome(res)))})
	return res
}
