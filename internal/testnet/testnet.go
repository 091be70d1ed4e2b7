// Package testnet runs TCP servers on loopback for tests, in the manner of
// net/http/httptest: a server listens on a free 127.0.0.1 port, owns its
// accept loop and the goroutine serving each connection, and stops them all
// when the test ends (t.Cleanup), so that no goroutine outlives the test.
//
// It is for tests only. plugins/sdk/sdktest, which plugin authors import,
// cannot use it (it is internal) and keeps its own loop.
package testnet

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// A Handler serves one connection. ctx ends when the server closes. The
// server closes c when the handler returns, and at [Server.Close] and
// [Server.CloseConns], so a handler blocked reading or writing c returns
// then; a handler that blocks on anything else must also watch ctx.
type Handler func(ctx context.Context, c net.Conn)

// Hold is a Handler that says nothing and keeps the connection open until
// the server closes it: a server behind a black hole.
func Hold(ctx context.Context, _ net.Conn) { <-ctx.Done() }

// Server is a TCP server on a free loopback port. Its methods are safe for
// concurrent use.
type Server struct {
	// Addr is the address it listens on, 127.0.0.1:PORT.
	Addr string

	ln       net.Listener
	handle   Handler
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup // the accept loop and every handler
	accepted atomic.Int64
	once     sync.Once

	mu    sync.Mutex
	conns map[net.Conn]struct{} // open connections; nil once closed
}

// Serve starts a server that runs h, in a goroutine of its own, on every
// connection it accepts. It is closed when t ends.
func Serve(t testing.TB, h Handler) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testnet: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{Addr: ln.Addr().String(), ln: ln, handle: h, ctx: ctx, cancel: cancel, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.Close)
	return s
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.accepted.Add(1)
		s.mu.Lock()
		if s.conns == nil {
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer s.drop(c)
			s.handle(s.ctx, c)
		}()
	}
}

// drop closes c and forgets it.
func (s *Server) drop(c net.Conn) {
	_ = c.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
}

// Accepted returns how many connections the server has accepted so far.
func (s *Server) Accepted() int64 { return s.accepted.Load() }

// CloseConns closes every open connection and goes on accepting new ones:
// for a forwarder, the link's connections are cut but the link stays.
func (s *Server) CloseConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		_ = c.Close()
	}
}

// Close stops accepting (new connections are refused), closes every open
// connection, ends the handlers' ctx and waits for the accept loop and
// every handler to return. It is safe to call more than once; it runs when
// the test ends.
func (s *Server) Close() {
	s.once.Do(func() {
		s.cancel()
		_ = s.ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			_ = c.Close()
		}
		s.conns = nil
		s.mu.Unlock()
		s.wg.Wait()
	})
}

// Forward starts a server that forwards every connection to upstream, both
// ways, like a network link in front of it: what either side closes, the
// link closes on the other. A connection whose upstream cannot be reached
// is closed at once. CloseConns cuts the link's connections; Close breaks
// the link.
func Forward(t testing.TB, upstream string) *Server {
	t.Helper()
	return Serve(t, func(ctx context.Context, down net.Conn) {
		var d net.Dialer
		up, err := d.DialContext(ctx, "tcp", upstream)
		if err != nil {
			return
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = io.Copy(up, down)
			_ = up.Close()
			_ = down.Close()
		}()
		_, _ = io.Copy(down, up)
		_ = down.Close()
		_ = up.Close()
		<-done
	})
}

// ServeCloser is a server that serves a listener until it is closed, such
// as a go-smtp, go-imap or clamd server.
type ServeCloser interface {
	Serve(net.Listener) error
	Close() error
}

// Run serves srv on a free loopback port until t ends and returns the
// address. When t ends it closes srv and waits for Serve to return. What
// Close and Serve return then is not checked: servers report their own
// closing in different ways (nil, net.ErrClosed, ErrServerClosed).
func Run(t testing.TB, srv ServeCloser) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testnet: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return ln.Addr().String()
}

// FreeAddr returns a loopback address nothing listens on: a port the kernel
// has just handed out and that is closed again. Connecting to it is
// refused, and a server may listen on it (unless another process takes the
// port first, which on loopback during a test is rare enough).
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testnet: %v", err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		t.Fatalf("testnet: %v", err)
	}
	return addr
}
