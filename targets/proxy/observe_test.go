package proxy_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/grayfailure"
)

// observation is what a client check sees.
type observation string

const (
	seesOK      observation = "ok"
	seesSilence observation = "silence" // nothing at all until the check's timeout: no data, no FIN, no RST
	seesTrickle observation = "trickle" // some bytes, then the check's timeout
	seesReset   observation = "reset"   // connection reset by peer
	seesClosed  observation = "closed"  // orderly close (FIN)
	seesRefused observation = "refused" // the TCP connect failed
)

// checkTimeout is the timeout of the simulated health checks.
const checkTimeout = 500 * time.Millisecond

func classify(n int, err error) observation {
	switch {
	case err == nil:
		return seesOK
	case errors.Is(err, os.ErrDeadlineExceeded) && n > 0:
		return seesTrickle
	case errors.Is(err, os.ErrDeadlineExceeded):
		return seesSilence
	case errors.Is(err, syscall.ECONNRESET):
		return seesReset
	case errors.Is(err, io.EOF):
		return seesClosed
	}
	return observation(err.Error())
}

// readLine reads one line with the check timeout and says what it saw.
func readLine(c net.Conn, r *bufio.Reader) observation {
	_ = c.SetReadDeadline(time.Now().Add(checkTimeout))
	line, err := r.ReadString('\n')
	return classify(len(line), err)
}

// dial connects to addr. A connection reset before Go reads the connect's
// result (the proxy accepted, then reset at once: it happens under load)
// still means the TCP handshake succeeded; it is reported as such, with the
// reset for the next check.
func dial(addr string) (net.Conn, observation) {
	c, err := net.DialTimeout("tcp", addr, checkTimeout)
	switch {
	case err == nil:
		return c, seesOK
	case errors.Is(err, syscall.ECONNRESET):
		return nil, seesReset
	}
	return nil, seesRefused
}

// observe runs the three checks a balancer or monitor might use against
// addr: a TCP connect, a protocol greeting, and a full transaction (greeting,
// request, reply).
func observe(addr string) (connect, greeting, transaction observation) {
	c, o := dial(addr)
	if o == seesRefused {
		return seesRefused, seesRefused, seesRefused
	}
	if c != nil {
		_ = c.Close()
	}
	if c, o = dial(addr); c == nil {
		greeting = o
	} else {
		greeting = readLine(c, bufio.NewReader(c))
		_ = c.Close()
	}
	if c, o = dial(addr); c == nil {
		return seesOK, greeting, o
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if g := readLine(c, r); g != seesOK {
		return seesOK, greeting, g
	}
	if _, err := io.WriteString(c, "NOOP\r\n"); err != nil {
		return seesOK, greeting, classify(0, err)
	}
	return seesOK, greeting, readLine(c, r)
}

// TestGrayModeObservations establishes, for each gray-failure mode, what a
// TCP connect check, a greeting check and a full transaction see. The table
// is the one in docs/faults.md.
func TestGrayModeObservations(t *testing.T) {
	for _, tt := range []struct {
		params                         faults.Params
		connect, greeting, transaction observation
	}{
		{faults.Params{"mode": "blackhole"}, seesOK, seesSilence, seesSilence},
		{faults.Params{"mode": "stall-after"}, seesOK, seesOK, seesSilence},
		{faults.Params{"mode": "stall-after", "after": "0"}, seesOK, seesSilence, seesSilence},
		{faults.Params{"mode": "slow-drip", "rate": "10"}, seesOK, seesTrickle, seesTrickle},
		{faults.Params{"mode": "half-open"}, seesOK, seesOK, seesSilence},
		{faults.Params{"mode": "half-open", "direction": "downstream"}, seesOK, seesSilence, seesSilence},
		{faults.Params{"mode": "reset"}, seesOK, seesReset, seesReset},
		{nil, seesOK, seesOK, seesOK},
	} {
		name := "no fault"
		if tt.params != nil {
			name = tt.params["mode"]
			if d := tt.params["direction"]; d != "" {
				name += "/" + d
			}
			if a := tt.params["after"]; a != "" {
				name += "/" + a
			}
		}
		t.Run(name, func(t *testing.T) {
			g := startGreeter(t)
			e := startEnv(t, "smtp", g.Addr)
			if tt.params != nil {
				e.inject(t, grayfailure.New(), tt.params, "smtp")
			}
			c, gr, tr := observe(e.listen)
			require.Equal(t, []observation{tt.connect, tt.greeting, tt.transaction}, []observation{c, gr, tr})
		})
	}
}
