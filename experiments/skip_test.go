package experiments_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/experiments"
	"github.com/mailchaos/mailchaos/experiments/journal"
	"github.com/mailchaos/mailchaos/experiments/report"
)

// TestSkipSaysInterrupted: an experiment a signal kept from running is in
// the journal as interrupted, and the summary says so with exit code 3.
func TestSkipSaysInterrupted(t *testing.T) {
	cat := builtinCatalog(t)
	e, err := experiments.Parse(context.Background(), "later.yaml", []byte(`
version: 1
title: the one after
steady-state:
  - name: queue
    probe: metric
    params: { metric: mailstack_queue_messages }
    tolerance: { max: 10 }
method:
  - fault: av-latency
    for: 1s
recovery: { within: 1s }
`), cat)
	require.NoError(t, err)
	var buf bytes.Buffer
	res := experiments.Skip(journal.NewWriter(&buf, "x"), e, "run-2", "later.yaml", "interrupted by a signal before it ran")
	require.Equal(t, journal.StatusInterrupted, res.Status)
	evs, err := journal.Read(&buf)
	require.NoError(t, err)
	sum := report.Summarize(evs)
	require.Equal(t, report.StatusInterrupted, sum.Status)
	require.Equal(t, 3, sum.ExitCode)
	require.Len(t, sum.Runs, 1)
	require.Equal(t, "the one after", sum.Runs[0].Title)
	require.Equal(t, "later.yaml", sum.Runs[0].File)
}
