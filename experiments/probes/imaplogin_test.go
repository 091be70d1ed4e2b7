package probes_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/experiments/probes"
	"github.com/mailchaos/mailchaos/faults"
)

func TestIMAPLoginLatency(t *testing.T) {
	_, target := startStack(t, testConfig(t))
	p := newProbe(t, probes.IMAPLoginKind(), target, faults.Params{})
	require.Equal(t, "s", p.(probes.Uniter).Unit())
	s := measure(p, waitFor)
	requireOK(t, s)
	require.Greater(t, s.Value, 0.0)
	require.Less(t, s.Value, waitFor.Seconds())

	p = newProbe(t, probes.IMAPLoginKind(), target, faults.Params{"user": "bob@example.test", "password": "wrong"})
	s = measure(p, waitFor)
	require.True(t, s.Failed, "a failed log-in is a failed latency sample")
	require.Contains(t, s.Err, "log in to")
	require.Contains(t, s.Err, "as bob@example.test")

	p = newProbe(t, probes.IMAPLoginKind(), target, faults.Params{"mailbox": "Nonexistent"})
	s = measure(p, waitFor)
	require.True(t, s.Failed)
	require.Contains(t, s.Err, "select Nonexistent")
}

func TestIMAPLoginSuccess(t *testing.T) {
	_, target := startStack(t, testConfig(t))
	p := newProbe(t, probes.IMAPLoginKind(), target, faults.Params{"measure": "success"})
	require.Equal(t, "ratio", p.(probes.Uniter).Unit())
	s := measure(p, waitFor)
	requireOK(t, s)
	require.Equal(t, 1.0, s.Value)
	require.Empty(t, s.Err)

	p = newProbe(t, probes.IMAPLoginKind(), target, faults.Params{"measure": "success", "password": "wrong"})
	s = measure(p, waitFor)
	require.False(t, s.Failed, "with measure success a failed log-in is a value, not a failed sample")
	require.Equal(t, 0.0, s.Value)
	require.Contains(t, s.Err, "log in to", "Err still says why")

	target.Endpoints["imap"] = closedAddr(t)
	p = newProbe(t, probes.IMAPLoginKind(), target, faults.Params{"measure": "success"})
	s = measure(p, waitFor)
	require.False(t, s.Failed)
	require.Equal(t, 0.0, s.Value)
	require.Contains(t, s.Err, "connect")
}
