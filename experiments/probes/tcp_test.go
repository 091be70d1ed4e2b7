package probes_test

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/experiments/probes"
	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/internal/testnet"
)

func TestTCPConnect(t *testing.T) {
	t.Parallel()
	_, target := startStack(t, testConfig(t))
	p := newProbe(t, probes.TCPKind(), target, faults.Params{"endpoint": "smtp"})
	s := measure(p, waitFor)
	requireOK(t, s)
	require.Greater(t, s.Value, 0.0)

	p = newProbe(t, probes.TCPKind(), target, faults.Params{"endpoint": testnet.FreeAddr(t)})
	s = measure(p, waitFor)
	require.True(t, s.Failed)
	require.Contains(t, s.Err, "connect to 127.0.0.1:")
}

func TestBanner(t *testing.T) {
	t.Parallel()
	_, target := startStack(t, testConfig(t))
	for _, tt := range []struct{ endpoint, expect string }{{"smtp", "220"}, {"imap", "* OK"}, {"smtp", ""}} {
		p := newProbe(t, probes.BannerKind(), target, faults.Params{"endpoint": tt.endpoint, "expect": tt.expect})
		s := measure(p, waitFor)
		requireOK(t, s)
		require.Greater(t, s.Value, 0.0)
	}

	p := newProbe(t, probes.BannerKind(), target, faults.Params{"endpoint": "smtp", "expect": "* OK"})
	s := measure(p, waitFor)
	require.True(t, s.Failed)
	require.Contains(t, s.Err, `does not start with "* OK"`)

	p = newProbe(t, probes.BannerKind(), target, faults.Params{"endpoint": testnet.FreeAddr(t), "expect": "220"})
	s = measure(p, waitFor)
	require.True(t, s.Failed)
	require.Contains(t, s.Err, "connect to")
}

func TestBannerSilentServerTimesOut(t *testing.T) {
	t.Parallel()
	// The kernel completes the handshake for the listener's backlog, but
	// nothing ever writes.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	p := newProbe(t, probes.BannerKind(), faults.Target{}, faults.Params{"endpoint": ln.Addr().String()})
	s := measure(p, 200*time.Millisecond)
	require.True(t, s.Failed)
	require.Contains(t, s.Err, "read banner")
	require.Contains(t, s.Err, "deadline exceeded")
}
