package loadsurge

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"time"
)

// worker sends messages over at most one SMTP session at a time. It drives
// the protocol itself: commands are appended to a buffer and sent with one
// write (the message body with them, by one writev), and replies are read
// through a buffered reader, so that a round trip costs one write and,
// usually, one read.
//
// When the server's EHLO reply advertises PIPELINING (RFC 2920), a
// transaction takes two round trips, and one on a busy session:
//
//	MAIL FROM, RCPT TO, DATA        → three replies, read in order
//	body, ".", and then either the next message's MAIL FROM, RCPT TO and
//	DATA, or QUIT at the end of the session
//	                                → the reply to the end of data, then
//	                                  those of the commands after it
//
// RFC 2920 allows the body to start a group, and MAIL and RCPT to be in
// the middle of one. Each message is judged by its own replies: the first
// that refuses gives its outcome (a refused RCPT also makes DATA fail, and
// that second refusal is not counted). Without PIPELINING every command
// waits for its reply, as before.
//
// A worker is used by its own goroutine only.
type worker struct {
	r          *Run
	conn       net.Conn    // nil between sessions
	unwatch    func() bool // stops closing conn when the run is aborted
	pipelining bool        // the session's server advertised PIPELINING
	quitSent   bool        // QUIT went with the last message's body
	sent       int         // transactions begun on this session
	// rd reads the session's replies; it is reused from session to
	// session, as are the buffers below.
	rd   *bufio.Reader
	out  []byte      // commands not yet sent
	held net.Buffers // a message to send before out, without its final CRLF
	iov  net.Buffers // held and out, for one writev
	wv   net.Buffers // iov as the writev consumes it
	txns [2]txn      // the message under way and the next one
}

// txn is one message's transaction. The worker's two are reused, with
// their head buffers.
type txn struct {
	seq     int64
	due     time.Time     // scheduled (open loop) or taken (closed loop)
	lag     time.Duration // -1 in the closed loop
	msg     message
	head    []byte // the buffer of msg.head
	pending bool   // its MAIL, RCPT and DATA are sent and their replies unread
}

// numEnvelopeCmds is the number of commands before a message body: MAIL,
// RCPT and DATA (see appendCmd and envelopeReply).
const numEnvelopeCmds = 3

// envelopeReply returns the name of envelope command i and the reply it
// expects (any 2xx for 250, any 3xx for 354).
func envelopeReply(i int) (name string, want int) {
	switch i {
	case 0:
		return "MAIL", 250
	case 1:
		return "RCPT", 250
	}
	return "DATA", 354
}

// loop takes messages until the run ends, then ends its session.
func (w *worker) loop() {
	defer w.hangUp(true)
	w.rd = bufio.NewReaderSize(nil, 4096)
	cur, next := &w.txns[0], &w.txns[1]
	for w.take(cur, true) {
		for w.transact(cur, next) {
			cur, next = next, cur
		}
	}
}

// take makes the next message due into t (see driver.take).
func (w *worker) take(t *txn, wait bool) bool {
	r := w.r
	seq, due, lag, ok := r.take(wait)
	if !ok {
		return false
	}
	t.seq, t.due, t.lag, t.pending = seq, due, lag, false
	t.msg = r.comp.compose(seq, time.Now(), t.head)
	t.head = t.msg.head[:0]
	return true
}

// finish books t's outcome.
func (w *worker) finish(t *txn, o Outcome) { w.finishAs(t, o, false) }

// finishAs books t's outcome; afterData says that t's end of DATA was
// sent, which makes a cut message one the server may have accepted.
func (w *worker) finishAs(t *txn, o Outcome, afterData bool) {
	w.r.finishAs(t.seq, int(o), time.Since(t.due), t.lag, afterData && o == Cut)
}

// transact runs t's transaction, opening a session if needed, and books its
// outcome. It reports whether it took the next message into next, whose
// commands then followed t's body on the wire: the caller must transact
// next before taking another.
func (w *worker) transact(t, next *txn) bool {
	r := w.r
	if w.conn == nil {
		if t.pending {
			// The session broke before the replies to t's commands came
			// (its body was never sent): start t again on a new session,
			// unless the run is ending. At the hard end it was under way
			// (its commands were sent), so it is cut; otherwise it is
			// unsent.
			t.pending = false
			if r.dropping() {
				o := Unsent
				if r.ctx.Err() != nil {
					o = Cut
				}
				w.finish(t, o)
				return false
			}
		}
		if err := w.connect(); err != nil {
			w.finish(t, w.classify(err))
			return false
		}
	}
	if broken, err := w.envelope(t); err != nil {
		w.finish(t, w.classify(err))
		w.afterRefusal(broken)
		return false
	}

	// DATA got 354. The message never needs dot-stuffing (see compose), so
	// it goes as it is, straight from the composer's buffers, followed by
	// the terminating dot and, when pipelining, by QUIT or the next
	// message's commands.
	quit := w.sent >= r.cfg.PerSession
	w.held = t.msg.appendParts(w.held[:0])
	w.out = append(w.out, "\r\n.\r\n"...)
	took := false
	switch {
	case !w.pipelining:
	case quit:
		w.out = append(w.out, "QUIT\r\n"...)
		w.quitSent = true
	case w.take(next, false):
		w.appendEnvelope(next)
		took = true
	}
	w.setDeadline()
	err := w.flush()
	afterData := err == nil
	if err == nil {
		err = w.reply("end of data", 250)
	}
	w.finishAs(t, w.classify(err), afterData)
	switch {
	case err != nil && sessionBroken(err):
		w.hangUp(false) // next, if taken, starts again on a new session
	case quit:
		w.hangUp(true)
	}
	return took
}

// envelope sends t's MAIL, RCPT and DATA, unless they went with the
// previous message's body, and reads their replies. err is the first
// failure; broken reports that the session cannot go on: it failed, the
// server is closing it, or DATA was accepted after a refusal.
func (w *worker) envelope(t *txn) (broken bool, err error) {
	if !w.pipelining {
		w.sent++
		for i := range numEnvelopeCmds {
			w.appendCmd(i, t)
			w.setDeadline()
			if err := w.flush(); err != nil {
				return true, err
			}
			if err := w.reply(envelopeReply(i)); err != nil {
				return sessionBroken(err), err
			}
		}
		return false, nil
	}
	if !t.pending {
		w.appendEnvelope(t)
		w.setDeadline()
		if err := w.flush(); err != nil {
			return true, err
		}
	} else {
		w.setDeadline() // the commands went with the previous body
	}
	t.pending = false
	var first error
	for i := range numEnvelopeCmds {
		err := w.reply(envelopeReply(i))
		switch {
		case err == nil:
			if i == numEnvelopeCmds-1 && first != nil {
				// A server that accepts DATA with no valid recipient
				// now waits for a body: hang up without sending one.
				return true, first
			}
		case first == nil:
			first = err
		}
		if err != nil && sessionBroken(err) {
			return true, first // no more replies will come (or make sense)
		}
	}
	return false, first
}

// appendEnvelope queues t's MAIL, RCPT and DATA (pipelining only).
func (w *worker) appendEnvelope(t *txn) {
	w.sent++
	for i := range numEnvelopeCmds {
		w.appendCmd(i, t)
	}
	t.pending = true
}

// appendCmd queues envelope command i of t.
func (w *worker) appendCmd(i int, t *txn) {
	switch i {
	case 0:
		w.out = append(w.out, "MAIL FROM:<"...)
		w.out = append(w.out, w.r.cfg.From...)
		w.out = append(w.out, ">\r\n"...)
	case 1:
		w.out = append(w.out, "RCPT TO:<"...)
		w.out = append(w.out, t.msg.rcpt...)
		w.out = append(w.out, ">\r\n"...)
	default:
		w.out = append(w.out, "DATA\r\n"...)
	}
}

// afterRefusal keeps the session after a refused envelope, with RSET, or
// ends it: when it is broken, RSET fails, or after PerSession messages.
func (w *worker) afterRefusal(broken bool) {
	if broken {
		w.hangUp(false)
		return
	}
	w.out = append(w.out, "RSET\r\n"...)
	w.setDeadline()
	err := w.flush()
	if err == nil {
		err = w.reply("RSET", 250)
	}
	switch {
	case err != nil:
		w.hangUp(false)
	case w.sent >= w.r.cfg.PerSession:
		w.hangUp(true)
	}
}

// connect opens a session: TCP, greeting, EHLO (HELO if the server does
// not know EHLO). The connection is closed as soon as the run is aborted.
func (w *worker) connect() error {
	r := w.r
	d := net.Dialer{Timeout: r.cfg.Timeout, KeepAlive: -1}
	nc, err := d.DialContext(r.ctx, "tcp", r.cfg.Addr)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	w.conn, w.sent, w.pipelining, w.quitSent = nc, 0, false, false
	w.unwatch = context.AfterFunc(r.ctx, func() { _ = nc.Close() })
	w.rd.Reset(nc)
	w.setDeadline()
	// A new session's first replies are the slowest: the server has to
	// accept the connection and set the session up. Letting the other
	// workers run first (here and before the EHLO reply) means the reply
	// has usually come when this one reads, rather than the read parking
	// the goroutine in the network poller to be woken again. With one
	// message per session that gave a fifth more messages per second on
	// two cores shared with the server (compare-smtp-source.sh), and made
	// no difference to longer sessions.
	runtime.Gosched()
	err = w.reply("greeting", 220)
	if err == nil {
		err = w.hello()
	}
	if err != nil {
		w.hangUp(!sessionBroken(err)) // QUIT after a refusal, as RFC 5321 asks
		return err
	}
	return nil
}

// hello sends EHLO, falling back to HELO, and notes PIPELINING.
func (w *worker) hello() error {
	pipelining := false
	w.out = append(append(append(w.out, "EHLO "...), w.r.cfg.Helo...), "\r\n"...)
	w.setDeadline()
	err := w.flush()
	if err == nil {
		runtime.Gosched() // see connect
		err = w.replyExt("EHLO", 250, func(ext []byte) {
			kw, _, _ := bytes.Cut(ext, []byte(" "))
			pipelining = pipelining || bytes.EqualFold(kw, []byte("PIPELINING"))
		})
	}
	if re := (*replyError)(nil); errors.As(err, &re) && (re.code == 500 || re.code == 502) {
		w.out = append(append(append(w.out, "HELO "...), w.r.cfg.Helo...), "\r\n"...)
		w.setDeadline()
		if err = w.flush(); err == nil {
			err = w.reply("HELO", 250)
		}
	}
	w.pipelining = err == nil && pipelining
	return err
}

// hangUp ends the session, with QUIT if polite and the run is not aborted.
func (w *worker) hangUp(polite bool) {
	if w.conn == nil {
		return
	}
	if polite && w.r.ctx.Err() == nil {
		w.setDeadline()
		var err error
		if !w.quitSent {
			w.out = append(w.out[:0], "QUIT\r\n"...)
			err = w.flush()
		}
		if err == nil {
			_ = w.reply("QUIT", 221)
		}
	}
	_ = w.conn.Close()
	w.unwatch()
	w.conn, w.unwatch = nil, nil
	w.out, w.held = w.out[:0], w.held[:0]
}

// setDeadline bounds the next exchange (one write and the replies to it)
// by the timeout.
func (w *worker) setDeadline() { _ = w.conn.SetDeadline(time.Now().Add(w.r.cfg.Timeout)) }

// flush sends the held message, if any, and the queued commands: one write,
// or one writev straight from the message's buffers.
func (w *worker) flush() error {
	var err error
	if len(w.held) == 0 {
		_, err = w.conn.Write(w.out)
	} else {
		w.iov = append(append(w.iov[:0], w.held...), w.out)
		w.wv = w.iov // WriteTo consumes its receiver
		_, err = w.wv.WriteTo(w.conn)
		w.held = w.held[:0]
	}
	w.out = w.out[:0]
	return err
}

// reply reads the reply to cmd, every line of it. Unless its code is in the
// class of want (2xx for 250, 3xx for 354), the error is a *replyError.
func (w *worker) reply(cmd string, want int) error { return w.replyExt(cmd, want, nil) }

// replyExt is reply, giving ext the text of each line after the first (the
// EHLO keywords).
func (w *worker) replyExt(cmd string, want int, ext func(text []byte)) error {
	code := 0
	var text string
	for {
		line, err := w.rd.ReadSlice('\n')
		long := errors.Is(err, bufio.ErrBufferFull)
		if err != nil && !long {
			return fmt.Errorf("%s: %w", cmd, err)
		}
		c, more, ok := parseReplyLine(line)
		if !ok || code != 0 && c != code {
			return fmt.Errorf("%s: malformed reply %q", cmd, line)
		}
		first := code == 0
		code = c
		t := bytes.TrimRight(line[min(4, len(line)):], "\r\n")
		switch {
		case first && c/100 != want/100:
			text = string(t)
		case !first && ext != nil && c/100 == want/100:
			ext(t)
		}
		for long { // skip the rest of a line longer than the buffer
			_, err = w.rd.ReadSlice('\n')
			long = errors.Is(err, bufio.ErrBufferFull)
			if err != nil && !long {
				return fmt.Errorf("%s: %w", cmd, err)
			}
		}
		if !more {
			break
		}
	}
	if code/100 != want/100 {
		return &replyError{cmd: cmd, code: code, text: text}
	}
	return nil
}

// parseReplyLine parses the code of a reply line, "250-..." (more lines
// follow) or "250 ..." (the last line).
func parseReplyLine(line []byte) (code int, more, ok bool) {
	if len(line) < 4 {
		return 0, false, false
	}
	for _, c := range line[:3] {
		if c < '0' || c > '9' {
			return 0, false, false
		}
		code = code*10 + int(c-'0')
	}
	switch line[3] {
	case '-':
		return code, true, true
	case ' ', '\r', '\n':
		return code, false, true
	}
	return 0, false, false
}

// replyError is a reply other than the one its command expects: a refusal
// (4xx, 5xx) or, rarely, nonsense.
type replyError struct {
	cmd  string
	code int
	text string // of the first line
}

func (e *replyError) Error() string {
	return e.cmd + ": " + strconv.Itoa(e.code) + " " + e.text
}

// sessionBroken reports whether a transaction's error leaves its session
// unusable: the connection failed or timed out, the reply made no sense,
// or the server is closing the session (421).
func sessionBroken(err error) bool {
	var re *replyError
	if !errors.As(err, &re) {
		return true
	}
	return re.code == 421 || re.code/100 != 4 && re.code/100 != 5
}

// classify maps a transaction's error to its outcome.
func (w *worker) classify(err error) Outcome {
	if err == nil {
		return Accepted
	}
	var re *replyError
	if errors.As(err, &re) {
		switch re.code / 100 {
		case 4:
			return Tempfail
		case 5:
			return Rejected
		}
		return ConnError
	}
	if w.r.ctx.Err() != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		return Cut // the run's hard end closed the connection under it
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return Timeout
	}
	return ConnError
}
