package clamd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestServerCommandForms(t *testing.T) {
	rs := start(t, &Server{})
	custom := start(t, &Server{Version: "ClamAV 0.103.12/27000/Thu Jan  1 00:00:00 2025"})
	eicarFound := "stream: Win.Test.EICAR_HDB-1 FOUND"

	tests := []struct {
		name string
		addr string
		req  string
		want string
	}{
		{"zPING", rs.addr, "zPING\x00", "PONG\x00"},
		{"nPING", rs.addr, "nPING\n", "PONG\n"},
		{"nPING CRLF", rs.addr, "nPING\r\n", "PONG\n"},
		{"legacy PING", rs.addr, "PING\n", "PONG\n"},
		{"zVERSION", rs.addr, "zVERSION\x00", DefaultVersion + "\x00"},
		{"nVERSION", rs.addr, "nVERSION\n", DefaultVersion + "\n"},
		{"legacy VERSION", rs.addr, "VERSION\r\n", DefaultVersion + "\n"},
		{"custom VERSION", custom.addr, "zVERSION\x00", "ClamAV 0.103.12/27000/Thu Jan  1 00:00:00 2025\x00"},
		{"zINSTREAM EICAR", rs.addr, string(instream('z', []byte(EICAR))), eicarFound + "\x00"},
		{"nINSTREAM EICAR", rs.addr, string(instream('n', []byte(EICAR))), eicarFound + "\n"},
		{"zINSTREAM base64 attachment", rs.addr, string(instream('z', withAttachment([]byte(EICAR)))), eicarFound + "\x00"},
		{"nINSTREAM quoted-printable", rs.addr, string(instream('n', qpMessage(EICAR))), eicarFound + "\n"},
		{"zINSTREAM clean", rs.addr, string(instream('z', plainMessage(4096))), "stream: OK\x00"},
		{"nINSTREAM clean", rs.addr, string(instream('n', plainMessage(4096))), "stream: OK\n"},
		{"zINSTREAM empty", rs.addr, "zINSTREAM\x00\x00\x00\x00\x00", "stream: OK\x00"},
		{"zINSTREAM one-byte chunks", rs.addr, "zINSTREAM\x00" + string(chunks([]byte(EICAR), 1)), eicarFound + "\x00"},
		// Like clamd, INSTREAM and IDSESSION need a z or n prefix.
		{"legacy INSTREAM", rs.addr, "INSTREAM\n" + string(chunks([]byte(EICAR), 100)), "UNKNOWN COMMAND\n"},
		{"legacy IDSESSION", rs.addr, "IDSESSION\n", "UNKNOWN COMMAND\n"},
		{"zUNKNOWN", rs.addr, "zSCANX /etc/passwd\x00", "UNKNOWN COMMAND\x00"},
		{"nUNKNOWN", rs.addr, "nFOO\n", "UNKNOWN COMMAND\n"},
		{"legacy unknown", rs.addr, "HELLO\n", "UNKNOWN COMMAND\n"},
		{"trailing garbage", rs.addr, "zPING now\x00", "UNKNOWN COMMAND\x00"},
		{"lower case", rs.addr, "zping\x00", "UNKNOWN COMMAND\x00"},
		{"empty z command", rs.addr, "z\x00", "UNKNOWN COMMAND\x00"},
		{"END outside a session", rs.addr, "zEND\x00", "UNKNOWN COMMAND\x00"},
		{"command too long", rs.addr, "z" + strings.Repeat("A", 2*maxCommandLen), "UNKNOWN COMMAND\x00"},
		// Only the first command counts: the connection closes after it.
		{"one command per connection", rs.addr, "zPING\x00zPING\x00", "PONG\x00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, string(exchangeRaw(t, tt.addr, []byte(tt.req))))
		})
	}
}

func TestServerLegacyCommandAtEOF(t *testing.T) {
	// A legacy command may be one packet without a newline.
	rs := start(t, &Server{})
	c := dial(t, rs.addr)
	_, err := c.Write([]byte("PING"))
	require.NoError(t, err)
	require.NoError(t, c.(*net.TCPConn).CloseWrite())
	got, err := io.ReadAll(c)
	require.NoError(t, err)
	require.Equal(t, "PONG\n", string(got))
}

func TestServerIDSession(t *testing.T) {
	rs := start(t, &Server{})

	t.Run("z form", func(t *testing.T) {
		c := dial(t, rs.addr)
		step := func(req, want string) {
			t.Helper()
			_, err := c.Write([]byte(req))
			require.NoError(t, err)
			require.Equal(t, want, readN(t, c, len(want)))
		}
		step("zIDSESSION\x00zPING\x00", "1: PONG\x00")
		step("zVERSION\x00", "2: "+DefaultVersion+"\x00")
		step(string(instream('z', withAttachment([]byte(EICAR)))), "3: stream: Win.Test.EICAR_HDB-1 FOUND\x00")
		step(string(instream('z', plainMessage(4096))), "4: stream: OK\x00")
		// Each reply uses the delimiter of its own command.
		step("nPING\n", "5: PONG\n")
		_, err := c.Write([]byte("zEND\x00"))
		require.NoError(t, err)
		requireClosed(t, c)
	})

	t.Run("n form", func(t *testing.T) {
		got := exchangeRaw(t, rs.addr, []byte("nIDSESSION\nnPING\n"+string(instream('n', []byte(EICAR)))+"nEND\n"))
		require.Equal(t, "1: PONG\n2: stream: Win.Test.EICAR_HDB-1 FOUND\n", string(got))
	})

	t.Run("invalid command ends the session", func(t *testing.T) {
		got := exchangeRaw(t, rs.addr, []byte("zIDSESSION\x00zPING\x00zIDSESSION\x00zPING\x00"))
		require.Equal(t, "1: PONG\x002: Command invalid inside IDSESSION. ERROR\x00", string(got))
		got = exchangeRaw(t, rs.addr, []byte("zIDSESSION\x00zFOO\x00"))
		require.Equal(t, "1: Command invalid inside IDSESSION. ERROR\x00", string(got))
	})

	t.Run("legacy command inside a session", func(t *testing.T) {
		got := exchangeRaw(t, rs.addr, []byte("nIDSESSION\nPING\n"))
		require.Equal(t, `1: Only nCMDS\n and zCMDS\0 are accepted inside IDSESSION. ERROR`+"\n", string(got))
	})

	t.Run("client closing ends the session", func(t *testing.T) {
		c := dial(t, rs.addr)
		_, err := c.Write([]byte("zIDSESSION\x00zPING\x00"))
		require.NoError(t, err)
		require.Equal(t, "1: PONG\x00", readN(t, c, len("1: PONG\x00")))
		require.NoError(t, c.(*net.TCPConn).CloseWrite())
		requireClosed(t, c)
	})
}

func TestServerSizeLimit(t *testing.T) {
	const limit = 1024
	s := &Server{StreamMaxLength: limit}
	rs := start(t, s)
	const want = "INSTREAM size limit exceeded. ERROR"

	t.Run("refused on the chunk header, before its data", func(t *testing.T) {
		// Only the header is sent: the reply must not wait for the data.
		require.Equal(t, want+"\x00", string(exchangeRaw(t, rs.addr, []byte("zINSTREAM\x00\x00\x00\x08\x00"))))
		require.Equal(t, want+"\n", string(exchangeRaw(t, rs.addr, []byte("nINSTREAM\n\xff\xff\xff\xff"))))
	})

	t.Run("cumulative", func(t *testing.T) {
		req := append([]byte("zINSTREAM\x00"), chunks(bytes.Repeat([]byte("x"), limit+1), 400)...)
		require.Equal(t, want+"\x00", string(exchangeRaw(t, rs.addr, req)))
	})

	t.Run("exactly at the limit is fine", func(t *testing.T) {
		req := append([]byte("zINSTREAM\x00"), chunks(bytes.Repeat([]byte("x"), limit), 400)...)
		require.Equal(t, "stream: OK\x00", string(exchangeRaw(t, rs.addr, req)))
	})

	t.Run("inside a session", func(t *testing.T) {
		req := append([]byte("zIDSESSION\x00zPING\x00zINSTREAM\x00"), chunks(bytes.Repeat([]byte("x"), 2*limit), limit)...)
		require.Equal(t, "1: PONG\x002: "+want+"\x00", string(exchangeRaw(t, rs.addr, req)))
	})

	t.Run("client", func(t *testing.T) {
		for _, size := range []int{limit + 1, 8 << 20} {
			c := &Client{Addr: rs.addr, ChunkSize: 512}
			ctx, cancel := context.WithTimeout(context.Background(), waitLong)
			_, err := c.Scan(ctx, bytes.Repeat([]byte("x"), size))
			cancel()
			var re *ReplyError
			require.ErrorAs(t, err, &re, "size %d", size)
			require.Equal(t, want, re.Reply)
			require.True(t, re.SizeLimitExceeded())
			require.ErrorContains(t, err, "clamd "+rs.addr+": scan:")
		}
	})
}

func TestServerIdleTimeout(t *testing.T) {
	rs := start(t, &Server{IdleTimeout: 50 * time.Millisecond})

	// A connection that sends nothing is closed.
	requireClosed(t, dial(t, rs.addr))

	// So is one that stalls inside a command or a stream.
	for _, partial := range []string{"zPI", "zINSTREAM\x00\x00\x00\x00\x10abc"} {
		c := dial(t, rs.addr)
		_, err := c.Write([]byte(partial))
		require.NoError(t, err)
		requireClosed(t, c)
	}

	// And an idle session.
	c := dial(t, rs.addr)
	_, err := c.Write([]byte("zIDSESSION\x00zPING\x00"))
	require.NoError(t, err)
	require.Equal(t, "1: PONG\x00", readN(t, c, len("1: PONG\x00")))
	requireClosed(t, c)
}

func TestServerDelayMatch(t *testing.T) {
	const delay = 200 * time.Millisecond
	rs := start(t, &Server{Delay: delay, DelayMatch: []byte("SLOW-PATH")})
	c := &Client{Addr: rs.addr}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()

	begin := time.Now()
	res, err := c.Scan(ctx, []byte("Subject: x\r\n\r\nSLOW-PATH "+EICAR))
	require.NoError(t, err)
	require.GreaterOrEqual(t, time.Since(begin), delay, "a matching payload waits for Delay")
	require.Equal(t, Result{Infected: true, Signature: EICARSignature}, res)

	// With a Delay no test could sit out, a non-matching scan completing at
	// all shows it was not delayed, and a matching one timing out shows the
	// delay applies.
	slow := &Server{Delay: time.Hour, DelayMatch: []byte("SLOW-PATH")}
	srs := start(t, slow)
	sc := &Client{Addr: srs.addr}
	res, err = sc.Scan(ctx, plainMessage(4096))
	require.NoError(t, err)
	require.Equal(t, Result{}, res)
	res, err = sc.Scan(ctx, []byte(EICAR))
	require.NoError(t, err)
	require.True(t, res.Infected)

	short, cancelShort := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancelShort()
	_, err = sc.Scan(short, []byte("SLOW-PATH"))
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestServerDelayEveryScan(t *testing.T) {
	const delay = 100 * time.Millisecond
	rs := start(t, &Server{Delay: delay})
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	begin := time.Now()
	_, err := (&Client{Addr: rs.addr}).Scan(ctx, plainMessage(100))
	require.NoError(t, err)
	require.GreaterOrEqual(t, time.Since(begin), delay)

	// PING and VERSION are never delayed.
	require.NoError(t, (&Client{Addr: rs.addr}).Ping(ctx))
}

// scanAsync runs a scan in the background and returns its result channel.
func scanAsync(ctx context.Context, c *Client, payload []byte) <-chan error {
	errc := make(chan error, 1)
	go func() {
		_, err := c.Scan(ctx, payload)
		errc <- err
	}()
	return errc
}

// waitErr waits for a result from errc.
func waitErr(t *testing.T, errc <-chan error) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(waitLong):
		t.Fatal("timed out")
		return nil
	}
}

// waitActive waits until s runs n commands.
func waitActive(t *testing.T, s *Server, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return s.activeConns() == n }, waitLong, time.Millisecond)
}

func TestServerCloseInterruptsDelay(t *testing.T) {
	s := &Server{Delay: time.Hour}
	rs := start(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	errc := scanAsync(ctx, &Client{Addr: rs.addr}, []byte(EICAR))
	waitActive(t, s, 1)

	require.NoError(t, s.Close())
	require.NoError(t, rs.wait(t), "Serve returns nil after Close")
	err := waitErr(t, errc)
	require.Error(t, err)
	require.NotErrorIs(t, err, context.DeadlineExceeded, "the scan was cut by Close, not by its deadline")
	require.NoError(t, s.Close(), "Close is idempotent")
}

func TestServerShutdownWaitsForInFlight(t *testing.T) {
	s := &Server{Delay: 200 * time.Millisecond}
	rs := start(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()

	idle := dial(t, rs.addr)
	resc := make(chan Result, 1)
	errc := make(chan error, 1)
	go func() {
		res, err := (&Client{Addr: rs.addr}).Scan(ctx, []byte(EICAR))
		resc <- res
		errc <- err
	}()
	waitActive(t, s, 1)
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.conns) == 2 // the idle connection is tracked too
	}, waitLong, time.Millisecond)

	shutdownErr := make(chan error, 1)
	go func() { shutdownErr <- s.Shutdown(ctx) }()

	// The idle connection is closed at once...
	requireClosed(t, idle)
	// ...while the running scan completes normally.
	require.NoError(t, waitErr(t, errc))
	require.Equal(t, Result{Infected: true, Signature: EICARSignature}, <-resc)
	require.NoError(t, waitErr(t, shutdownErr))
	require.NoError(t, rs.wait(t))

	// Nothing is served any more.
	require.NoError(t, s.Shutdown(ctx))
	require.NoError(t, s.Serve(listen(t)))
}

func TestServerShutdownContextExpires(t *testing.T) {
	s := &Server{Delay: time.Hour}
	rs := start(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	errc := scanAsync(ctx, &Client{Addr: rs.addr}, []byte(EICAR))
	waitActive(t, s, 1)

	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	require.ErrorIs(t, s.Shutdown(short), context.DeadlineExceeded)
	require.Error(t, waitErr(t, errc))
	require.NoError(t, rs.wait(t))
}

func TestServerShutdownInsideSession(t *testing.T) {
	s := &Server{Delay: 100 * time.Millisecond}
	rs := start(t, s)
	c := dial(t, rs.addr)
	_, err := c.Write(append([]byte("zIDSESSION\x00"), instream('z', []byte(EICAR))...))
	require.NoError(t, err)
	waitActive(t, s, 1)

	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	shutdownErr := make(chan error, 1)
	go func() { shutdownErr <- s.Shutdown(ctx) }()
	// The running command gets its reply, then the session ends.
	got, err := io.ReadAll(c)
	require.NoError(t, err)
	require.Equal(t, "1: stream: Win.Test.EICAR_HDB-1 FOUND\x00", string(got))
	require.NoError(t, waitErr(t, shutdownErr))
}

func TestServerCloseBeforeServe(t *testing.T) {
	s := &Server{}
	require.NoError(t, s.Close())
	require.NoError(t, s.Close())
	ln := listen(t)
	require.NoError(t, s.Serve(ln))
	_, err := ln.Accept()
	require.ErrorIs(t, err, net.ErrClosed, "Serve closes the listener")

	require.NoError(t, (&Server{}).Shutdown(context.Background()))
}

func TestServerSeveralListeners(t *testing.T) {
	s := &Server{}
	a, b := start(t, s), start(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	require.NoError(t, (&Client{Addr: a.addr}).Ping(ctx))
	require.NoError(t, (&Client{Addr: b.addr}).Ping(ctx))
	require.NoError(t, s.Close())
	require.NoError(t, a.wait(t))
	require.NoError(t, b.wait(t))
}

// failingListener fails Accept with its errors, then with net.ErrClosed.
type failingListener struct {
	mu   sync.Mutex
	errs []error
}

func (l *failingListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) == 0 {
		return nil, net.ErrClosed
	}
	err := l.errs[0]
	l.errs = l.errs[1:]
	return nil, err
}
func (l *failingListener) Close() error   { return nil }
func (l *failingListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// tempError is a temporary Accept error, such as EMFILE.
type tempError struct{}

func (tempError) Error() string   { return "too many open files" }
func (tempError) Temporary() bool { return true }
func (tempError) Timeout() bool   { return false }

func TestServerAcceptErrors(t *testing.T) {
	var logs bytes.Buffer
	s := &Server{ErrorLog: slog.New(slog.NewTextHandler(&logs, nil))}
	fatal := errors.New("listener broke")
	err := s.Serve(&failingListener{errs: []error{tempError{}, tempError{}, fatal}})
	require.ErrorIs(t, err, fatal, "temporary errors are retried, others returned")
	require.ErrorContains(t, err, "clamd: accept on 127.0.0.1:0")
	require.Contains(t, logs.String(), "too many open files")
}

func TestServerConcurrentScans(t *testing.T) {
	rs := start(t, &Server{})
	c := &Client{Addr: rs.addr, ChunkSize: 1000}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	payloads := [][]byte{withAttachment([]byte(EICAR)), plainMessage(4096), qpMessage(EICAR), plainMessage(100 << 10)}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 10 {
				k := (g + i) % len(payloads)
				res, err := c.Scan(ctx, payloads[k])
				if err != nil {
					t.Errorf("scan %d/%d: %v", g, i, err)
					return
				}
				if res.Infected != (k%2 == 0) {
					t.Errorf("payload %d: %+v", k, res)
				}
			}
		})
	}
	wg.Wait()
}

func TestServerLogsUnexpectedErrors(t *testing.T) {
	var mu sync.Mutex
	var logs bytes.Buffer
	s := &Server{ErrorLog: slog.New(slog.NewTextHandler(&lockedWriter{mu: &mu, w: &logs}, nil))}
	rs := start(t, s)
	// A command that is too long is worth a log line; a client hanging up
	// is routine and is not logged.
	exchangeRaw(t, rs.addr, []byte("z"+strings.Repeat("A", 2*maxCommandLen)))
	c := dial(t, rs.addr)
	_, err := c.Write([]byte("zINSTREAM\x00\x00\x00\x00\x10ab"))
	require.NoError(t, err)
	require.NoError(t, c.Close())
	require.NoError(t, s.Close())
	require.NoError(t, rs.wait(t))
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, 1, strings.Count(logs.String(), "connection failed"), logs.String())
	require.Contains(t, logs.String(), "command too long")
}

// lockedWriter serializes writes to w.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestReadRequest(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want request
		err  error
	}{
		{"zPING\x00", request{form: 'z', name: "PING"}, nil},
		{"zPI\nNG\x00", request{form: 'z', name: "PI\nNG"}, nil},
		{"nVERSION\r\n", request{form: 'n', name: "VERSION"}, nil},
		{"PING\r\n", request{name: "PING"}, nil},
		{"PING", request{name: "PING"}, nil},
		{"", request{}, io.EOF},
		{"zPING", request{form: 'z'}, io.ErrUnexpectedEOF},
		{"n", request{form: 'n'}, io.ErrUnexpectedEOF},
		{"z" + strings.Repeat("x", maxCommandLen+1), request{form: 'z'}, errCommandTooLong},
	} {
		t.Run(fmt.Sprintf("%.20q", tt.in), func(t *testing.T) {
			got, err := readRequest(newReader(tt.in))
			if tt.err != nil {
				require.ErrorIs(t, err, tt.err)
				require.Equal(t, tt.want.form, got.form)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}
