package clamd

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// waitLong bounds every wait in the tests. It is far above anything a
// healthy run needs, even on a busy 2-core machine.
const waitLong = 20 * time.Second

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// listen returns a listener on a free loopback port.
func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	return ln
}

// running is a Server being served by start.
type running struct {
	addr string
	done chan struct{} // closed when Serve returns
	err  error         // Serve's result, valid once done is closed
}

// wait waits for Serve to return and returns its result.
func (r *running) wait(t testing.TB) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(waitLong):
		t.Fatal("Serve did not return")
		return nil
	}
}

// start serves s on a loopback listener. At cleanup it closes s and checks
// that Serve returned nil.
func start(t testing.TB, s *Server) *running {
	t.Helper()
	ln := listen(t)
	r := &running{addr: ln.Addr().String(), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = s.Serve(ln)
	}()
	t.Cleanup(func() {
		require.NoError(t, s.Close())
		require.NoError(t, r.wait(t))
	})
	return r
}

// dial connects to addr with a generous deadline for the whole exchange.
func dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, waitLong)
	require.NoError(t, err)
	require.NoError(t, c.SetDeadline(time.Now().Add(waitLong)))
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// exchange sends req on a new connection and returns everything the server
// sends until it closes the connection.
func exchangeRaw(t testing.TB, addr string, req []byte) []byte {
	t.Helper()
	c := dial(t, addr)
	_, err := c.Write(req)
	require.NoError(t, err)
	got, err := io.ReadAll(c)
	require.NoError(t, err, "server must close the connection after replying")
	return got
}

// readN reads exactly n bytes from c.
func readN(t testing.TB, c net.Conn, n int) string {
	t.Helper()
	buf := make([]byte, n)
	_, err := io.ReadFull(c, buf)
	require.NoError(t, err)
	return string(buf)
}

// requireClosed checks that the server closed c without sending anything
// more.
func requireClosed(t testing.TB, c net.Conn) {
	t.Helper()
	rest, err := io.ReadAll(c)
	require.NoError(t, err)
	require.Empty(t, string(rest))
}

// chunks encodes payload as INSTREAM chunks of at most size bytes, followed
// by the zero-length terminator.
func chunks(payload []byte, size int) []byte {
	var b bytes.Buffer
	for len(payload) > 0 {
		n := min(size, len(payload))
		_ = binary.Write(&b, binary.BigEndian, uint32(n))
		b.Write(payload[:n])
		payload = payload[n:]
	}
	b.Write([]byte{0, 0, 0, 0})
	return b.Bytes()
}

// instream builds a complete INSTREAM request in the given form ('z' or 'n').
func instream(form byte, payload []byte) []byte {
	term := "\x00"
	if form == 'n' {
		term = "\n"
	}
	return append([]byte(string(form)+"INSTREAM"+term), chunks(payload, 1000)...)
}

// plainMessage returns a clean text/plain message of exactly size bytes.
func plainMessage(size int) []byte {
	var b bytes.Buffer
	b.WriteString("From: alice@example.test\r\nTo: bob@example.test\r\nSubject: weekly report\r\n" +
		"Message-ID: <1@example.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n" +
		"Content-Transfer-Encoding: 7bit\r\n\r\n")
	line := "The quick brown fox jumps over the lazy dog, according to the committee.\r\n"
	for b.Len() < size {
		b.WriteString(line)
	}
	return b.Bytes()[:size]
}

// wrap76 breaks s into CRLF-terminated lines of 76 characters.
func wrap76(s string) string {
	var b strings.Builder
	for len(s) > 76 {
		b.WriteString(s[:76] + "\r\n")
		s = s[76:]
	}
	b.WriteString(s + "\r\n")
	return b.String()
}

// withAttachment returns a multipart/mixed message carrying content as a
// base64 attachment.
func withAttachment(content []byte) []byte {
	return []byte("From: alice@example.test\r\nTo: bob@example.test\r\nSubject: invoice\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n" +
		"preamble\r\n--b1\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n" +
		"--b1\r\nContent-Type: application/octet-stream; name=\"invoice.com\"\r\n" +
		"Content-Disposition: attachment; filename=\"invoice.com\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n" +
		wrap76(base64.StdEncoding.EncodeToString(content)) +
		"--b1--\r\nepilogue\r\n")
}

// qpEncodeAll quoted-printable-encodes every byte of s as =XX, with a soft
// line break every 20 bytes, so none of s survives in the encoding.
func qpEncodeAll(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(&b, "=%02X", s[i])
		if i%20 == 19 {
			b.WriteString("=\r\n")
		}
	}
	return b.String()
}

// qpMessage returns a single-part quoted-printable message whose decoded
// body contains content.
func qpMessage(content string) []byte {
	return []byte("From: alice@example.test\r\nSubject: qp\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
		"Hello,=\r\n the file: " + qpEncodeAll(content) + "\r\nBye\r\n")
}

// newReader returns a bufio.Reader over s.
func newReader(s string) *bufio.Reader {
	return bufio.NewReader(strings.NewReader(s))
}
