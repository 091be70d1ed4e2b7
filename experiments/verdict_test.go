package experiments_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/experiments"
	"github.com/mailchaos/mailchaos/experiments/journal"
	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/internal/exitcode"
)

func TestOutcome(t *testing.T) {
	completed := experiments.Result{Status: journal.StatusCompleted}
	failed := experiments.Result{Status: journal.StatusFailed, Deviated: true}
	aborted := experiments.Result{Status: journal.StatusAborted, Message: "safety: max-duration"}
	interrupted := experiments.Result{Status: journal.StatusInterrupted, Message: "interrupted by a signal"}
	rollback := experiments.Result{Status: journal.StatusAborted, RollbackFailed: true,
		Err: &faults.RollbackError{Handle: faults.Handle{ID: "s0", Fault: "gray-failure"}, Err: errors.New("refused")}}
	for _, tt := range []struct {
		name    string
		results []experiments.Result
		code    exitcode.Code
		msg     string
	}{
		{"none", nil, exitcode.OK, ""},
		{"completed", []experiments.Result{completed, completed}, exitcode.OK, ""},
		{"failed", []experiments.Result{completed, failed}, exitcode.Failed, "the system under test failed: see the summary"},
		{"aborted over failed", []experiments.Result{failed, aborted, interrupted}, exitcode.Aborted,
			"the run did not complete (aborted, interrupted): see the summary"},
		{"rollback over all", []experiments.Result{aborted, rollback, failed}, exitcode.RollbackFailed,
			"fault s0 (gray-failure) may still be in place: removing it failed: refused"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := experiments.Outcome(tt.results...)
			require.Equal(t, tt.code, exitcode.Of(err), "%v", err)
			if tt.msg == "" {
				require.NoError(t, err)
				return
			}
			require.EqualError(t, err, tt.msg)
		})
	}
}

// TestVerdictRecordsTheExitCode runs one experiment to each outcome and
// reads the exit code its verdict recorded.
func TestVerdictRecordsTheExitCode(t *testing.T) {
	for _, tt := range []struct {
		name    string
		slow    time.Duration // the target's latency before the run
		recover string        // how long the target takes to recover
		status  string
		code    exitcode.Code
	}{
		{"completed", 0, "0s", journal.StatusCompleted, exitcode.OK},
		{"failed", 0, "1500ms", journal.StatusFailed, exitcode.Failed},
		{"aborted", 400 * time.Millisecond, "0s", journal.StatusAborted, exitcode.Aborted},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := newLab(t)
			l.srv.delay.Store(int64(tt.slow))
			e := l.experiment(t, banner+"baseline: 200ms\nrecovery: { within: 1s, hold: 100ms }\n"+
				"method: [{ fault: synthetic, at: 0s, for: 200ms, params: { recover-after: "+tt.recover+" } }]\n")
			res, evs := l.run(t, context.Background(), e)
			require.Equal(t, tt.status, res.Status, res.Message)
			require.Equal(t, int(tt.code), evs[len(evs)-1].ExitCode)
		})
	}
}
