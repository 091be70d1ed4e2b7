package clamd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"
)

// Server-side tuning that is not configurable.
const (
	// lingerTimeout bounds how long a connection refused with a size-limit
	// error is drained, so the client reads the reply instead of a reset.
	lingerTimeout = time.Second
	// lingerMax bounds how many bytes such a connection may drain.
	lingerMax = 64 << 20
	// maxPooledBuffer is the largest stream buffer kept for reuse.
	maxPooledBuffer = 1 << 20
	// maxAcceptBackoff caps the pause after a temporary Accept error.
	maxAcceptBackoff = time.Second
)

// Server is the bundled clamd-compatible scanning engine. It answers PING,
// VERSION, INSTREAM and IDSESSION/END like clamd(8) and scans streams with a
// [Matcher].
//
// The exported fields configure the server and must not be changed once
// Serve has been called. The zero Server is ready to use. A Server is safe for
// concurrent use: Serve may be called for several listeners, and Close and
// Shutdown from any goroutine.
type Server struct {
	// Matcher scans INSTREAM payloads. Nil means
	// NewMatcher(DefaultSignatures()).
	Matcher *Matcher
	// Version is the VERSION reply. Empty means [DefaultVersion].
	Version string
	// Delay is a test knob: each INSTREAM scan waits this long before
	// replying, as an overloaded engine would. Close interrupts the wait;
	// Shutdown lets it finish.
	Delay time.Duration
	// DelayMatch restricts Delay to payloads containing it. Nil or empty
	// delays every scan.
	DelayMatch []byte
	// StreamMaxLength is the largest INSTREAM payload accepted. A stream
	// that would exceed it is answered with "INSTREAM size limit exceeded.
	// ERROR" and the connection is closed, without reading or buffering the
	// excess; the refusal comes as soon as a chunk header announces it. A
	// connection's buffer stays below twice this size. Zero means
	// [DefaultStreamMaxLength].
	StreamMaxLength int64
	// IdleTimeout closes a connection that sends nothing (and a client that
	// reads no reply) for this long. Zero means [DefaultIdleTimeout];
	// negative disables the timeout.
	IdleTimeout time.Duration
	// ErrorLog receives accept errors and unexpected connection errors. Nil
	// discards them.
	ErrorLog *slog.Logger

	matcherOnce sync.Once
	matcher     *Matcher // resolved Matcher, set by matcherOnce

	mu        sync.Mutex
	listeners map[*net.Listener]struct{}
	conns     map[*conn]struct{}
	closing   bool          // Close or Shutdown was called: accept nothing new
	done      chan struct{} // closed by Close: interrupts Delay and backoffs
	wg        sync.WaitGroup

	buffers sync.Pool // *bytes.Buffer for INSTREAM payloads
}

// conn is one accepted connection.
type conn struct {
	nc net.Conn
	// active is guarded by Server.mu. A connection is idle while it waits
	// for a command and active while it runs one; Shutdown closes idle
	// connections at once and waits for active ones.
	active bool
}

// Serve accepts connections on ln and serves each in its own goroutine, which
// the Server tracks until the connection ends. It blocks until ln fails or the
// Server is closed, and returns nil after Close or Shutdown (also when they
// were called before Serve, in which case ln is closed at once). Otherwise it
// returns the Accept error. Serve takes ownership of ln and closes it.
func (s *Server) Serve(ln net.Listener) error {
	l := &ln
	if !s.trackListener(l) {
		_ = ln.Close()
		return nil
	}
	defer s.untrackListener(l)

	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isClosing() {
				return nil
			}
			var temp interface{ Temporary() bool }
			if errors.As(err, &temp) && temp.Temporary() {
				backoff = min(max(2*backoff, 5*time.Millisecond), maxAcceptBackoff)
				s.logger().Error("clamd: accept failed, retrying", "err", err, "backoff", backoff)
				if !s.sleep(backoff) {
					return nil
				}
				continue
			}
			return fmt.Errorf("clamd: accept on %s: %w", ln.Addr(), err)
		}
		backoff = 0
		c := &conn{nc: nc}
		if !s.trackConn(c) {
			_ = nc.Close()
			return nil
		}
		go s.serveConn(c)
	}
}

// Close stops the Server at once: it closes every listener and connection and
// interrupts Delay waits. It returns after every connection goroutine has
// exited, which does not depend on clients. Close is idempotent, may be called
// before Serve, and always returns nil.
func (s *Server) Close() error {
	s.mu.Lock()
	s.initLocked()
	s.closing = true
	select {
	case <-s.done:
	default:
		close(s.done)
	}
	for l := range s.listeners {
		_ = (*l).Close()
	}
	for c := range s.conns {
		_ = c.nc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// Shutdown stops the Server gracefully: it closes the listeners and idle
// connections, waits for connections running a command (an INSTREAM upload,
// scan or Delay included) to finish it, then closes everything. Inside an
// IDSESSION, the session ends after the running command. If ctx ends first,
// Shutdown closes everything at once, as Close does, and returns ctx's error
// wrapped. It blocks until all connection goroutines have exited.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.initLocked()
	s.closing = true
	for l := range s.listeners {
		_ = (*l).Close()
	}
	for c := range s.conns {
		if !c.active {
			_ = c.nc.Close()
		}
	}
	s.mu.Unlock()

	// No connection is tracked (wg.Add) once closing is set, so this Wait
	// cannot race with an Add. The goroutine always ends: either the
	// connections finish, or Close below makes them.
	finished := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
		return s.Close()
	case <-ctx.Done():
		_ = s.Close()
		<-finished
		return fmt.Errorf("clamd: shutdown: %w", ctx.Err())
	}
}

// initLocked allocates the Server's state on first use. s.mu must be held.
func (s *Server) initLocked() {
	if s.done == nil {
		s.done = make(chan struct{})
		s.listeners = make(map[*net.Listener]struct{})
		s.conns = make(map[*conn]struct{})
	}
}

// doneChan returns the channel that Close closes.
func (s *Server) doneChan() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.initLocked()
	return s.done
}

// isClosing reports whether Close or Shutdown has been called.
func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// trackListener registers l, or reports false if the Server is closing.
func (s *Server) trackListener(l *net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.initLocked()
	if s.closing {
		return false
	}
	s.listeners[l] = struct{}{}
	return true
}

// untrackListener closes l and forgets it.
func (s *Server) untrackListener(l *net.Listener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = (*l).Close()
	delete(s.listeners, l)
}

// trackConn registers c and counts its goroutine, or reports false if the
// Server is closing.
func (s *Server) trackConn(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.initLocked()
	if s.closing {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

// untrackConn forgets c.
func (s *Server) untrackConn(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
}

// setActive marks c as running a command (active) or waiting for one. It
// reports false when the Server is closing, in which case c must not start
// or wait for another command.
func (s *Server) setActive(c *conn, active bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	c.active = active
	return true
}

// activeConns returns how many connections are running a command.
func (s *Server) activeConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for c := range s.conns {
		if c.active {
			n++
		}
	}
	return n
}

// sleep waits for d and reports true, or reports false as soon as Close is
// called.
func (s *Server) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.doneChan():
		return false
	}
}

// logger returns ErrorLog or a discarding logger.
func (s *Server) logger() *slog.Logger {
	if s.ErrorLog != nil {
		return s.ErrorLog
	}
	return slog.New(slog.DiscardHandler)
}

// getMatcher returns Matcher or the default one, built once per Server.
func (s *Server) getMatcher() *Matcher {
	if s.Matcher != nil {
		return s.Matcher
	}
	s.matcherOnce.Do(func() { s.matcher = NewMatcher(DefaultSignatures()) })
	return s.matcher
}

// version returns the VERSION reply.
func (s *Server) version() string {
	if s.Version != "" {
		return s.Version
	}
	return DefaultVersion
}

// streamMaxLength returns the effective StreamMaxLength.
func (s *Server) streamMaxLength() int64 {
	if s.StreamMaxLength > 0 {
		return s.StreamMaxLength
	}
	return DefaultStreamMaxLength
}

// idleTimeout returns the effective IdleTimeout; 0 means none.
func (s *Server) idleTimeout() time.Duration {
	switch {
	case s.IdleTimeout < 0:
		return 0
	case s.IdleTimeout == 0:
		return DefaultIdleTimeout
	}
	return s.IdleTimeout
}

// serveConn runs one connection until it ends, then closes it.
func (s *Server) serveConn(c *conn) {
	defer s.wg.Done()
	defer s.untrackConn(c)
	defer func() { _ = c.nc.Close() }()

	dc := deadlineConn{nc: c.nc, timeout: s.idleTimeout()}
	r := bufio.NewReaderSize(dc, 4<<10)
	linger, err := s.handle(c, r, dc)
	if err != nil && !routineConnError(err) {
		s.logger().Warn("clamd: connection failed", "remote", c.nc.RemoteAddr(), "err", err)
	}
	// Closing a socket with unread input resets the connection, which can
	// destroy the reply before the client reads it.
	if linger || (err == nil && r.Buffered() > 0) {
		lingerClose(c.nc, r)
	}
}

// routineConnError reports whether err is an expected way for a connection
// to end: the client went away, timed out, or the server is closing.
func routineConnError(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.Is(err, errServerClosed)
}

// lingerClose half-closes nc and drains what the client still sends, for a
// bounded time and size, so that a client still uploading reads the reply
// already sent instead of a connection reset.
func lingerClose(nc net.Conn, r io.Reader) {
	if cw, ok := nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = nc.SetReadDeadline(time.Now().Add(lingerTimeout))
	_, _ = io.CopyN(io.Discard, rawReader{r}, lingerMax)
}

// rawReader hides a reader's other methods (such as WriteTo) so that
// io.CopyN reads it plainly.
type rawReader struct{ r io.Reader }

// Read implements io.Reader.
func (r rawReader) Read(p []byte) (int, error) { return r.r.Read(p) }

// deadlineConn pushes the connection's deadline forward before every read
// and write, which implements the idle timeout.
type deadlineConn struct {
	nc      net.Conn
	timeout time.Duration // 0: no timeout
}

// Read implements io.Reader.
func (d deadlineConn) Read(p []byte) (int, error) {
	if d.timeout > 0 {
		if err := d.nc.SetReadDeadline(time.Now().Add(d.timeout)); err != nil {
			return 0, err
		}
	}
	return d.nc.Read(p)
}

// Write implements io.Writer.
func (d deadlineConn) Write(p []byte) (int, error) {
	if d.timeout > 0 {
		if err := d.nc.SetWriteDeadline(time.Now().Add(d.timeout)); err != nil {
			return 0, err
		}
	}
	return d.nc.Write(p)
}

// handle runs the protocol on one connection: one command, or an IDSESSION
// of several. It reports whether the connection should be closed with
// lingerClose (after refusing input it did not read: an oversized stream or
// command) and the error that ended it, if any. It does not close anything itself, so it can be driven by any reader
// and writer.
func (s *Server) handle(c *conn, r *bufio.Reader, w io.Writer) (linger bool, err error) {
	session := false
	id := 0 // request number inside IDSESSION; 0 outside
	reply := func(q request, msg string) error {
		var buf [128]byte
		if _, err := w.Write(appendReply(buf[:0], id, msg, q.term())); err != nil {
			return fmt.Errorf("write reply: %w", err)
		}
		return nil
	}
	for {
		q, err := readRequest(r)
		if errors.Is(err, errCommandTooLong) {
			if session {
				id++
			}
			if werr := reply(q, replyUnknown); werr != nil {
				return false, errors.Join(err, werr)
			}
			return true, err
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return false, nil
			}
			return false, fmt.Errorf("read command: %w", err)
		}
		if !s.setActive(c, true) {
			return false, errServerClosed
		}
		if session {
			id++
			if q.form == 0 {
				return false, reply(q, replyOldStyleInSes)
			}
			switch q.name {
			case cmdPing:
				err = reply(q, replyPong)
			case cmdVersion:
				err = reply(q, s.version())
			case cmdInstream:
				var msg string
				msg, linger, err = s.instream(r)
				if err == nil {
					err = reply(q, msg)
				}
				if linger {
					return true, err
				}
			case cmdEnd:
				return false, nil
			default:
				return false, reply(q, replyInvalidInSes)
			}
			if err != nil {
				return false, err
			}
			if !s.setActive(c, false) {
				return false, nil
			}
			continue
		}
		switch {
		case q.name == cmdPing:
			return false, reply(q, replyPong)
		case q.name == cmdVersion:
			return false, reply(q, s.version())
		case q.name == cmdInstream && q.form != 0:
			msg, linger, err := s.instream(r)
			if err != nil {
				return false, err
			}
			return linger, reply(q, msg)
		case q.name == cmdIDSession && q.form != 0:
			session = true
			if !s.setActive(c, false) {
				return false, nil
			}
		default:
			// Includes END outside a session and the commands clamd
			// refuses in the legacy form (INSTREAM, IDSESSION).
			return false, reply(q, replyUnknown)
		}
	}
}

// instream reads an INSTREAM payload from r and scans it. It returns the
// reply, or the size-limit reply with linger set when the stream would exceed
// StreamMaxLength; in that case the rest of the stream is not read. A
// returned error means the client went away (or Close interrupted a Delay)
// and no reply should be sent.
func (s *Server) instream(r *bufio.Reader) (reply string, linger bool, err error) {
	buf := s.getBuffer()
	defer s.putBuffer(buf)

	limit := s.streamMaxLength()
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return "", false, fmt.Errorf("instream: read chunk length: %w", err)
		}
		n := int64(binary.BigEndian.Uint32(hdr[:]))
		if n == 0 {
			break
		}
		if int64(buf.Len())+n > limit {
			return replySizeLimit, true, nil
		}
		if _, err := io.CopyN(buf, r, n); err != nil {
			return "", false, fmt.Errorf("instream: read chunk: %w", err)
		}
	}
	payload := buf.Bytes()
	if s.Delay > 0 && (len(s.DelayMatch) == 0 || bytes.Contains(payload, s.DelayMatch)) {
		if !s.sleep(s.Delay) {
			return "", false, errServerClosed
		}
	}
	if name, found := s.getMatcher().Match(payload); found {
		return "stream: " + name + " FOUND", false, nil
	}
	return replyOK, false, nil
}

// getBuffer returns an empty buffer for a payload.
func (s *Server) getBuffer() *bytes.Buffer {
	if b, ok := s.buffers.Get().(*bytes.Buffer); ok {
		return b
	}
	return new(bytes.Buffer)
}

// putBuffer recycles b unless it grew large.
func (s *Server) putBuffer(b *bytes.Buffer) {
	if b.Cap() > maxPooledBuffer {
		return
	}
	b.Reset()
	s.buffers.Put(b)
}
