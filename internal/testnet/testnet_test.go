package testnet_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mailchaos/mailchaos/clamd"
	"github.com/mailchaos/mailchaos/internal/testnet"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const waitFor = 10 * time.Second

// echo greets and echoes lines until the client or the server closes.
func echo(_ context.Context, c net.Conn) {
	_, _ = io.WriteString(c, "220 hi\r\n")
	r := bufio.NewReader(c)
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if _, err := io.WriteString(c, l); err != nil {
			return
		}
	}
}

func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, waitFor)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	require.NoError(t, c.SetDeadline(time.Now().Add(waitFor)))
	return c, bufio.NewReader(c)
}

func line(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	l, err := r.ReadString('\n')
	require.NoError(t, err)
	return l
}

func TestServeRunsTheHandlerAndCloseEndsEveryConnection(t *testing.T) {
	t.Parallel()
	s := testnet.Serve(t, echo)
	c, r := dial(t, s.Addr)
	require.Equal(t, "220 hi\r\n", line(t, r))
	_, err := io.WriteString(c, "NOOP\r\n")
	require.NoError(t, err)
	require.Equal(t, "NOOP\r\n", line(t, r))
	require.EqualValues(t, 1, s.Accepted())

	s.Close()
	_, err = r.ReadString('\n')
	require.ErrorIs(t, err, io.EOF, "the server closed the connection")
	_, err = net.DialTimeout("tcp", s.Addr, waitFor)
	require.ErrorIs(t, err, syscall.ECONNREFUSED)
	s.Close() // twice is fine
}

func TestHoldSaysNothingUntilClosed(t *testing.T) {
	t.Parallel()
	s := testnet.Serve(t, testnet.Hold)
	c, r := dial(t, s.Addr)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(100*time.Millisecond)))
	_, err := r.ReadString('\n')
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(waitFor)))
	s.CloseConns()
	_, err = r.ReadString('\n')
	require.ErrorIs(t, err, io.EOF)
}

func TestForwardCarriesBothWaysAndCanBeCut(t *testing.T) {
	t.Parallel()
	up := testnet.Serve(t, echo)
	link := testnet.Forward(t, up.Addr)
	c, r := dial(t, link.Addr)
	require.Equal(t, "220 hi\r\n", line(t, r))
	_, err := io.WriteString(c, "HELO x\r\n")
	require.NoError(t, err)
	require.Equal(t, "HELO x\r\n", line(t, r))

	link.CloseConns()
	_, err = r.ReadString('\n')
	require.ErrorIs(t, err, io.EOF, "the cut connection is closed")
	require.Eventually(t, func() bool { return up.Accepted() == 1 }, waitFor, time.Millisecond)

	// The link stays: a new connection goes through.
	_, r = dial(t, link.Addr)
	require.Equal(t, "220 hi\r\n", line(t, r))
	require.EqualValues(t, 2, link.Accepted())

	// Nothing upstream: the connection is closed at once.
	dead := testnet.Forward(t, testnet.FreeAddr(t))
	_, r = dial(t, dead.Addr)
	_, err = r.ReadString('\n')
	require.ErrorIs(t, err, io.EOF)
}

func TestRunServesUntilTheTestEnds(t *testing.T) {
	t.Parallel()
	var addr string
	t.Run("serve", func(t *testing.T) {
		addr = testnet.Run(t, &clamd.Server{})
		require.NoError(t, (&clamd.Client{Addr: addr}).Ping(context.Background()))
	})
	_, err := net.DialTimeout("tcp", addr, waitFor)
	require.True(t, errors.Is(err, syscall.ECONNREFUSED), "closed with its test: %v", err)
}

func TestFreeAddrRefuses(t *testing.T) {
	t.Parallel()
	_, err := net.DialTimeout("tcp", testnet.FreeAddr(t), waitFor)
	require.ErrorIs(t, err, syscall.ECONNREFUSED)
}
