package probes_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/experiments/probes"
	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/internal/testnet"
)

func TestIMAPLoginLatency(t *testing.T) {
	t.Parallel()
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
	t.Parallel()
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

	target.Endpoints["imap"] = testnet.FreeAddr(t)
	p = newProbe(t, probes.IMAPLoginKind(), target, faults.Params{"measure": "success"})
	s = measure(p, waitFor)
	require.False(t, s.Failed)
	require.Equal(t, 0.0, s.Value)
	require.Contains(t, s.Err, "connect")
}

func TestIMAPLoginUsesTheTargetUsersLogin(t *testing.T) {
	t.Parallel()
	tester := testerUser()
	// tester logs in by a short name, as on a real server; the in-memory
	// server knows no user by the address.
	srv := startLazyIMAP(t, false, false, tester)
	target := faults.Target{Endpoints: map[string]string{"imap": srv.addr},
		Users: []faults.User{tester, {Address: "other@realstack.test"}}}
	for _, tt := range []struct {
		name   string
		params faults.Params
		ok     bool
		as     string
	}{
		{"the first user by default", faults.Params{}, true, "tester"},
		{"a user named by log-in name gets its password", faults.Params{"user": "tester"}, true, "tester"},
		{"a password given wins", faults.Params{"user": "tester", "password": "wrong"}, false, "tester"},
		{"the log-in name is used as written", faults.Params{"user": "tester@realstack.test"}, false, "tester@realstack.test"},
		{"an unknown user gets the default password", faults.Params{"user": "nobody"}, false, "nobody"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := newProbe(t, probes.IMAPLoginKind(), target, tt.params)
			s := measure(p, waitFor)
			if tt.ok {
				requireOK(t, s)
				return
			}
			require.True(t, s.Failed)
			require.Contains(t, s.Err, "as "+tt.as+":")
		})
	}
}
