package mailstack_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/targets/mailstack"
)

// panicRecorder is a slog handler that keeps the log lines reporting a
// recovered panic in the stack's SMTP backend (go-smtp recovers it, logs
// "panic serving ..." with the goroutine's stack and answers 421).
type panicRecorder struct {
	mu     *sync.Mutex
	panics *[]string
}

func newPanicRecorder() panicRecorder {
	return panicRecorder{mu: &sync.Mutex{}, panics: new([]string)}
}

func (p panicRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (p panicRecorder) WithAttrs([]slog.Attr) slog.Handler       { return p }
func (p panicRecorder) WithGroup(string) slog.Handler            { return p }
func (p panicRecorder) Handle(_ context.Context, r slog.Record) error {
	// Only panics with the stack's own code on the stack count: go-smtp
	// v0.25.1 itself panics (and recovers) when a client hangs up in the
	// middle of a BDAT chunk, as its chunk goroutine then calls Data on the
	// session Close has just cleared.
	if strings.Contains(r.Message, "panic serving") && strings.Contains(r.Message, "mailchaos/targets/mailstack") {
		p.mu.Lock()
		*p.panics = append(*p.panics, r.Message)
		p.mu.Unlock()
	}
	return nil
}

func (p panicRecorder) take() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := *p.panics
	*p.panics = nil
	return out
}

// sessionDeadline is how long one fuzz input may keep its session open
// once the client has sent everything and closed its side.
const sessionDeadline = 10 * time.Second

// FuzzSMTPSession feeds arbitrary bytes to the stack's SMTP server over a
// loopback connection, closes the client's side, and checks that the
// server ends the session within sessionDeadline, that no handler
// panicked, and that the server still greets new clients.
func FuzzSMTPSession(f *testing.F) {
	const txn = "EHLO fuzz\r\nMAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\n"
	for _, seed := range []string{
		"",
		"QUIT\r\n",
		// Pipelined transaction, then another on the same session.
		txn + "DATA\r\nSubject: x\r\n\r\nbody\r\n.\r\n" + txn + "DATA\r\n\r\n.\r\nQUIT\r\n",
		// DATA without its terminator; dot-stuffing; bare LF.
		txn + "DATA\r\nSubject: x\r\n\r\n..dot\r\nno end",
		"EHLO a\nMAIL FROM:<>\nRCPT TO:<bob@example.test>\nDATA\n.\n",
		// Huge lines: command, address, header.
		"EHLO " + strings.Repeat("h", 100_000) + "\r\n",
		"EHLO x\r\nMAIL FROM:<" + strings.Repeat("a", 5000) + "@example.test>\r\n",
		txn + "DATA\r\nX-Long: " + strings.Repeat("v", 70_000) + "\r\n\r\n.\r\n",
		// BDAT (CHUNKING is offered): a good chunk, a short one, a huge size.
		txn + "BDAT 5 LAST\r\nhello",
		txn + "BDAT 100\r\nshort",
		txn + "BDAT 99999999999999999999 LAST\r\n",
		txn + "BDAT 3\r\nabcBDAT 0 LAST\r\n",
		txn + "BDAT -1\r\n",
		// NULs and other bytes.
		"EHLO \x00\x00\r\nMAIL FROM:<\x00>\r\n",
		txn + "DATA\r\n\x00\x00\xff\xfe\r\n.\r\n",
		"\xff\xfe\xfd\r\n\r\n\r\n",
		// AUTH with bad base64, an unknown mechanism, a cancelled exchange.
		"EHLO x\r\nAUTH PLAIN !!!\r\nAUTH CRAM-MD5\r\nAUTH PLAIN\r\n*\r\n",
		"EHLO x\r\nAUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABwYXNzd29yZA==\r\n" + "MAIL FROM:<alice@example.test> SIZE=999999999999 BODY=BINARYMIME\r\n",
		"RSET\r\nNOOP\r\nVRFY bob\r\nHELP\r\nSTARTTLS\r\nRCPT TO:<bob@example.test>\r\n",
	} {
		f.Add([]byte(seed))
	}
	rec := newPanicRecorder()
	cfg := testConfig(f, mailstack.ProfileRemediated)
	s, err := mailstack.New(cfg, mailstack.Options{Logger: slog.New(rec)})
	require.NoError(f, err)
	require.NoError(f, s.Start(context.Background()))
	f.Cleanup(func() { _ = s.Close() })
	addr := s.Endpoint("smtp")

	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := net.DialTimeout("tcp", addr, sessionDeadline)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer c.Close()
		// Read all along, so the server never blocks on a reply the test
		// does not read.
		read := make(chan error, 1)
		go func() {
			_, err := io.Copy(io.Discard, c)
			read <- err
		}()
		_ = c.SetDeadline(time.Now().Add(sessionDeadline))
		// A write error means the server closed first, which is fine.
		if _, err := c.Write(in); err == nil {
			_ = c.(*net.TCPConn).CloseWrite()
		}
		if err := <-read; errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("the server kept the session open %s after the client finished", sessionDeadline)
		}
		if p := rec.take(); len(p) > 0 {
			t.Fatalf("the SMTP server recovered a panic: %s", p[0])
		}
		g, err := net.DialTimeout("tcp", addr, sessionDeadline)
		if err != nil {
			t.Fatalf("the server stopped accepting: %v", err)
		}
		defer g.Close()
		_ = g.SetReadDeadline(time.Now().Add(sessionDeadline))
		buf := make([]byte, 4)
		if _, err := io.ReadFull(g, buf); err != nil || string(buf) != "220 " {
			t.Fatalf("the server no longer greets: %q, %v", buf, err)
		}
	})
}
