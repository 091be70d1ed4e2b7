// Package sinktest runs an in-process SMTP sink on loopback for tests and
// benchmarks of load generators, in the manner of net/http/httptest: it
// accepts every message (unless told to refuse some) and records the
// X-Mailchaos-Id of each.
package sinktest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// headerID is the header load generators put on every message.
const headerID = "X-Mailchaos-Id"

// Options change what a Sink does. The zero value accepts and records
// every message.
type Options struct {
	// Rcpt, if set, is called for each RCPT TO; an error (an
	// *smtp.SMTPError) refuses the recipient.
	Rcpt func(to string) error
	// Data, if set, is called with each message once read; an error (an
	// *smtp.SMTPError) refuses it, and the sink does not record it.
	Data func(msg []byte) error
	// Keep keeps every accepted message's bytes (see Messages).
	Keep bool
	// Discard reads and counts messages without recording anything, for
	// benchmarks.
	Discard bool
}

// Message is one message the sink accepted.
type Message struct {
	// ID is the X-Mailchaos-Id header's value ("" if none).
	ID string
	// Size is the message's length in bytes, as received after DATA.
	Size int
	// Raw is the message, if Options.Keep is set.
	Raw []byte
}

// Sink is an SMTP server on 127.0.0.1 that accepts mail.
type Sink struct {
	// Addr is the sink's host:port.
	Addr string

	opts  Options
	srv   *smtp.Server
	ln    net.Listener
	serve chan error
	conns sync.WaitGroup // connections not yet closed
	count atomic.Int64

	mu   sync.Mutex
	msgs []Message
}

// Start starts a sink on 127.0.0.1:0 and closes it when the test ends.
func Start(tb testing.TB, opts Options) *Sink {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("sinktest: listen: %v", err)
	}
	s := &Sink{Addr: ln.Addr().String(), opts: opts, serve: make(chan error, 1)}
	s.ln = &trackingListener{Listener: ln, conns: &s.conns}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &session{s: s}, nil }))
	s.srv.Domain = "sink.test"
	s.srv.MaxMessageBytes = 128 << 20
	s.srv.ErrorLog = log.New(io.Discard, "", 0)
	go func() { s.serve <- s.srv.Serve(s.ln) }()
	tb.Cleanup(s.Close)
	return s
}

// Close stops the sink, closes every connection and waits (up to 10s) for
// their goroutines. It is safe to call twice.
func (s *Sink) Close() {
	if err := s.srv.Close(); errors.Is(err, smtp.ErrServerClosed) {
		return
	}
	<-s.serve // no more accepts, so no more conns.Add
	done := make(chan struct{})
	go func() {
		s.conns.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
}

// Count returns how many messages the sink accepted.
func (s *Sink) Count() int64 { return s.count.Load() }

// Messages returns the messages accepted so far, in order of arrival.
func (s *Sink) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// IDs returns how many times each X-Mailchaos-Id was accepted.
func (s *Sink) IDs() map[string]int {
	ids := map[string]int{}
	for _, m := range s.Messages() {
		ids[m.ID]++
	}
	return ids
}

// WaitCount waits until the sink has accepted at least n messages, or
// until ctx ends; it reports whether it got there.
func (s *Sink) WaitCount(ctx context.Context, n int64) bool {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for s.Count() < n {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}

// session is one SMTP session of the sink.
type session struct {
	s *Sink
}

func (ss *session) Reset()                               {}
func (ss *session) Logout() error                        { return nil }
func (ss *session) Mail(string, *smtp.MailOptions) error { return nil }
func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if ss.s.opts.Rcpt != nil {
		return ss.s.opts.Rcpt(to)
	}
	return nil
}

func (ss *session) Data(r io.Reader) error {
	s := ss.s
	if s.opts.Discard {
		if _, err := io.Copy(io.Discard, r); err != nil {
			return err
		}
		s.count.Add(1)
		return nil
	}
	msg, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if s.opts.Data != nil {
		if err := s.opts.Data(msg); err != nil {
			return err
		}
	}
	m := Message{ID: header(msg, headerID), Size: len(msg)}
	if s.opts.Keep {
		m.Raw = msg
	}
	s.mu.Lock()
	s.msgs = append(s.msgs, m)
	s.mu.Unlock()
	s.count.Add(1)
	return nil
}

// header returns the value of the first header field name in msg's head.
func header(msg []byte, name string) string {
	head, _, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
	for _, line := range bytes.Split(head, []byte("\r\n")) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if ok && bytes.EqualFold(bytes.TrimSpace(k), []byte(name)) {
			return string(bytes.TrimSpace(v))
		}
	}
	return ""
}

// trackingListener counts connections until they are closed, so that
// Close can wait for the server's connection goroutines to finish.
type trackingListener struct {
	net.Listener
	conns *sync.WaitGroup
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.conns.Add(1)
	return &trackedConn{Conn: c, done: l.conns.Done}, nil
}

// trackedConn calls done once, on its first Close.
type trackedConn struct {
	net.Conn
	once sync.Once
	done func()
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.done)
	return err
}

// Silent accepts TCP connections on loopback and never writes a byte: a
// server that hangs. It returns the address and a function that counts the
// connections accepted so far. Everything is closed when the test ends.
func Silent(tb testing.TB) (addr string, conns func() int) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("sinktest: listen: %v", err)
	}
	var mu sync.Mutex
	var accepted []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			accepted = append(accepted, c)
			mu.Unlock()
		}
	}()
	tb.Cleanup(func() {
		_ = ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range accepted {
			_ = c.Close()
		}
	})
	return ln.Addr().String(), func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(accepted)
	}
}
