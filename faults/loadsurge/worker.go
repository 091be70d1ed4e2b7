package loadsurge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/emersion/go-smtp"
)

// worker sends messages over at most one SMTP session at a time. It is
// used by its own goroutine only.
type worker struct {
	r       *Run
	c       *smtp.Client // nil between sessions
	conn    *heldConn
	unwatch func() bool // stops closing conn when the run is aborted
	sent    int         // transactions begun on this session
	buf     []byte      // message heads, reused
}

// loop takes messages until the run ends, then ends its session.
func (w *worker) loop() {
	defer w.r.exit()
	defer w.hangUp(true)
	r := w.r
	if !r.closed {
		for seq := range r.queue {
			if r.dropping() {
				r.record(seq, Unsent, -1, -1)
				continue
			}
			at, _ := r.cfg.Schedule.At(seq)
			w.send(seq, r.start.Add(at), true)
		}
		return
	}
	for !r.dropping() {
		select {
		case <-r.ended:
			return
		default:
		}
		seq := r.next.Add(1) - 1
		if r.cfg.Count > 0 && seq >= r.cfg.Count {
			r.endScheduling()
			return
		}
		r.scheduled.Add(1)
		w.send(seq, time.Now(), false)
	}
}

// send runs the transaction of message seq, due at due, and books its
// outcome. Lag is measured in the open loop only.
func (w *worker) send(seq int64, due time.Time, open bool) {
	r := w.r
	r.inFlight.Add(1)
	defer r.inFlight.Add(-1)
	begin := time.Now()
	lag := time.Duration(-1)
	if open {
		lag = max(0, begin.Sub(due))
	}
	msg := r.comp.compose(seq, begin, w.buf)
	w.buf = msg.head[:0]
	err := w.transact(&msg)
	r.record(seq, w.classify(err), time.Since(due), lag)
	w.afterTransaction(err)
}

// transact sends m over the worker's session, opening one if needed.
func (w *worker) transact(m *message) error {
	if w.c == nil {
		if err := w.connect(); err != nil {
			return err
		}
	}
	w.sent++
	if err := w.c.Mail(w.r.cfg.From, nil); err != nil {
		return fmt.Errorf("MAIL: %w", err)
	}
	if err := w.c.Rcpt(m.rcpt, nil); err != nil {
		return fmt.Errorf("RCPT: %w", err)
	}
	wc, err := w.c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	// go-smtp sets no deadline while the body is written; a server that
	// stops reading must not hold the worker for ever.
	_ = w.conn.SetDeadline(time.Now().Add(w.r.cfg.Timeout))
	// The message never needs dot-stuffing (see compose), so it bypasses
	// go-smtp's byte-by-byte DATA writer: the connection holds it until
	// the writer's Close sends the final CRLF and the terminating dot, and
	// writes all of it at once.
	w.conn.hold(m)
	if err := wc.Close(); err != nil {
		return fmt.Errorf("end of DATA: %w", err)
	}
	return nil
}

// connect opens a session: TCP, greeting, EHLO. The connection is closed
// as soon as the run is aborted.
func (w *worker) connect() error {
	r := w.r
	d := net.Dialer{Timeout: r.cfg.Timeout}
	nc, err := d.DialContext(r.ctx, "tcp", r.cfg.Addr)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	conn := &heldConn{Conn: nc}
	c := smtp.NewClient(conn)
	c.CommandTimeout = r.cfg.Timeout
	c.SubmissionTimeout = r.cfg.Timeout
	w.c, w.conn, w.sent = c, conn, 0
	w.unwatch = context.AfterFunc(r.ctx, func() { _ = conn.Close() })
	if err := c.Hello(r.cfg.Helo); err != nil {
		return fmt.Errorf("greeting or EHLO: %w", err)
	}
	return nil
}

// afterTransaction keeps the session for the next message, resets it after
// a refusal, or ends it: after PerSession messages, or when it is broken.
func (w *worker) afterTransaction(err error) {
	if w.c == nil {
		return
	}
	var se *smtp.SMTPError
	switch {
	case err == nil:
	case errors.As(err, &se) && se.Code != 421:
		// The server refused but the session stands: RSET, which also
		// proves it stands (a failed greeting or EHLO fails again here).
		if w.c.Reset() != nil {
			w.hangUp(false)
			return
		}
	default:
		w.hangUp(false)
		return
	}
	if w.sent >= w.r.cfg.PerSession {
		w.hangUp(true)
	}
}

// hangUp ends the session, with QUIT if polite and the run is not aborted.
func (w *worker) hangUp(polite bool) {
	if w.c == nil {
		return
	}
	if polite && w.r.ctx.Err() == nil {
		_ = w.c.Quit()
	}
	_ = w.c.Close()
	w.unwatch()
	w.c, w.conn, w.unwatch = nil, nil, nil
}

// classify maps a transaction's error to its outcome.
func (w *worker) classify(err error) Outcome {
	if err == nil {
		return Accepted
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		switch se.Code / 100 {
		case 4:
			return Tempfail
		case 5:
			return Rejected
		}
		return ConnError
	}
	if w.r.ctx.Err() != nil {
		return Timeout // the run was aborted while waiting
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return Timeout
	}
	return ConnError
}

// heldConn is a worker's connection as go-smtp sees it. It can hold a
// message back until go-smtp next writes (the end-of-data terminator), then
// send both with one writev, straight from the composer's buffers.
type heldConn struct {
	net.Conn
	held net.Buffers // parts of the held message
	out  net.Buffers // reused for each writev
}

// hold holds m, without its final CRLF, for the next Write.
func (c *heldConn) hold(m *message) { c.held = m.appendParts(c.held[:0]) }

// Write writes p, after the held message if there is one.
func (c *heldConn) Write(p []byte) (int, error) {
	if len(c.held) == 0 {
		return c.Conn.Write(p)
	}
	c.out = append(append(c.out[:0], c.held...), p)
	c.held = c.held[:0]
	bufs := c.out // WriteTo consumes its receiver
	if _, err := bufs.WriteTo(c.Conn); err != nil {
		return 0, err
	}
	return len(p), nil
}
