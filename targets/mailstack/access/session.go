package access

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// byeNoSite is the refusal a client gets when no site can take it.
const byeNoSite = "* BYE no mailbox site available, try again later\r\n"

// session is one client connection through the balancer. site, up and cut
// are guarded by Tier.mu.
type session struct {
	client net.Conn
	site   *siteState
	up     net.Conn    // the connection to the site, once dialled
	cut    bool        // closed by a drain: do not place again
	since  time.Time   // when the client connected
	spoke  atomic.Bool // the client has sent something
	// greeted is when the site's greeting went to the client (unix
	// nanoseconds; 0 before): a client owes nothing before it.
	greeted atomic.Int64
}

// accept runs the balancer's accept loop until the listener is closed.
func (t *Tier) accept(ln net.Listener) {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors or similar: back off a little.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t.log.Warn("balancer accept", "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-t.ctx.Done():
				return
			}
			continue
		}
		delay = 0
		s := &session{client: c, since: time.Now()}
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			_ = c.Close()
			return
		}
		var victim *session
		if len(t.sessions) >= t.cfg.MaxConnections {
			if victim = t.silentLocked(s.since); victim == nil {
				t.mu.Unlock()
				// Counted before the client can read its answer.
				t.m.connRefused.WithLabelValues(ListenerBalancer).Inc()
				refuseConn(c)
				continue
			}
			// The evicted session leaves the count now, and its site
			// connection is closed with it, so that it does not hold a
			// place at the site while its goroutine winds down.
			delete(t.sessions, victim)
			victim.cut = true
			if victim.up != nil {
				_ = victim.up.Close()
			}
		}
		t.sessions[s] = struct{}{}
		t.wg.Add(1)
		t.mu.Unlock()
		go func() {
			defer t.wg.Done()
			t.handle(s)
			_ = c.Close()
			t.mu.Lock()
			delete(t.sessions, s)
			t.mu.Unlock()
		}()
		if victim != nil {
			t.m.connEvicted.WithLabelValues(ListenerBalancer).Inc()
			t.log.Debug("silent session evicted at the connection cap")
			refuseConn(victim.client)
		}
	}
}

// silentLocked returns the session that was greeted longest ago and has
// sent nothing since, if that was at least SilentAfter before now; nil
// otherwise. A session still being placed, or waiting for a slow site's
// greeting, is never picked. Called with t.mu held.
func (t *Tier) silentLocked(now time.Time) *session {
	var pick *session
	var pickAt int64
	for s := range t.sessions {
		at := s.greeted.Load()
		if at == 0 || s.spoke.Load() || now.Sub(time.Unix(0, at)) < SilentAfter {
			continue
		}
		if pick == nil || at < pickAt {
			pick, pickAt = s, at
		}
	}
	return pick
}

// handle places a session, connects it to its site and relays its bytes
// until either side ends.
func (t *Tier) handle(s *session) {
	var tried []*siteState
	for {
		st, reason := t.place(s, tried)
		if st == nil {
			if reason != "" {
				t.refuse(s, reason)
			}
			return
		}
		up, r, greeting, fail := t.open(s, st)
		if fail == "" && t.commit(s, st) {
			t.relay(s, st, up, r, greeting)
			return
		}
		if up != nil {
			_ = up.Close()
		}
		t.release(s, fail)
		t.mu.Lock()
		stop := s.cut || t.closed
		t.mu.Unlock()
		if stop {
			return
		}
		tried = append(tried, st)
	}
}

// open connects to st and, with outlier ejection on, reads the site's
// greeting within the slow bound. It returns the connection, the reader
// to relay the site's bytes from, the greeting read (nil when not read),
// or the kind of failure.
func (t *Tier) open(s *session, st *siteState) (net.Conn, io.Reader, []byte, string) {
	t.mu.Lock()
	dial := st.dial
	t.mu.Unlock()
	d := net.Dialer{Timeout: t.cfg.ConnectTimeout}
	up, err := d.DialContext(t.ctx, "tcp", dial)
	if err != nil {
		return nil, nil, nil, FailConnect
	}
	t.mu.Lock()
	if s.cut || t.closed {
		t.mu.Unlock()
		_ = up.Close()
		return nil, nil, nil, ""
	}
	s.up = up
	t.mu.Unlock()
	if !t.cfg.Passive.Enabled {
		return up, up, nil, ""
	}
	_ = up.SetReadDeadline(time.Now().Add(t.cfg.Passive.Slow))
	br := bufio.NewReader(up)
	line, err := br.ReadSlice('\n')
	_ = up.SetReadDeadline(time.Time{})
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return up, nil, nil, FailGreetingTimeout
	case err != nil:
		return up, nil, nil, FailGreetingError
	case bytes.HasPrefix(bytes.ToUpper(line), []byte("* BYE")):
		return up, nil, nil, FailGreetingBye
	}
	return up, br, bytes.Clone(line), ""
}

// commit confirms s on st once its site connection is ready; false when st
// began draining (or the tier closed) in the meantime.
func (t *Tier) commit(s *session, st *siteState) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return !st.draining && !s.cut && !t.closed
}

// refuse tells the client no site can take it and counts the refusal.
func (t *Tier) refuse(s *session, reason string) {
	t.m.refused.WithLabelValues(reason).Inc()
	t.log.Warn("session refused", "reason", reason)
	_ = s.client.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = io.WriteString(s.client, byeNoSite)
}

// relay copies bytes both ways between the client and its site until
// either side ends, then releases the session. With outlier ejection on,
// it watches the reply to the client's first command: a reply within the
// slow bound counts as a successful session; none within the bound, or
// the site ending the connection first, counts as a failure.
func (t *Tier) relay(s *session, st *siteState, up net.Conn, fromSite io.Reader, greeting []byte) {
	fail := ""
	defer func() { t.release(s, fail) }()
	if greeting != nil {
		if _, err := s.client.Write(greeting); err != nil {
			return
		}
	}
	s.greeted.Store(time.Now().UnixNano())
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			_ = s.client.Close()
			_ = up.Close()
		})
	}
	cmdSent := make(chan struct{}) // closed before the client's first bytes go to the site
	replied := make(chan struct{}) // closed when the site sends after that
	clientDone := make(chan struct{})
	siteDone := make(chan struct{})
	go func() {
		defer close(clientDone)
		defer closeBoth()
		first := true
		_ = pump(up, s.client, func() {
			if first {
				first = false
				s.spoke.Store(true)
				close(cmdSent)
			}
		})
	}()
	go func() {
		defer close(siteDone)
		defer closeBoth()
		answered := false
		_ = pump(s.client, fromSite, func() {
			if answered {
				return
			}
			select {
			case <-cmdSent:
				answered = true
				close(replied)
			default:
			}
		})
	}()

	if t.cfg.Passive.Enabled {
		sent, cDone, sDone := cmdSent, clientDone, siteDone
		var timer *time.Timer
		var expired <-chan time.Time
	watch:
		for {
			select {
			case <-sent:
				sent = nil
				timer = time.NewTimer(t.cfg.Passive.Slow)
				expired = timer.C
			case <-replied:
				t.succeeded(st)
				break watch
			case <-expired:
				t.failed(st, FailReplyTimeout)
				break watch
			case <-sDone:
				// The site ended first: a failure if a command was
				// waiting for its reply (a reply that came just before
				// the end is not).
				select {
				case <-replied:
					t.succeeded(st)
				default:
					if sent == nil {
						fail = FailReplyError
					}
				}
				break watch
			case <-cDone:
				break watch // the client left: no verdict on the site
			}
		}
		if timer != nil {
			timer.Stop()
		}
	}
	<-clientDone
	<-siteDone
}

// pump copies src to dst, calling before ahead of writing each chunk, and
// returns when either side fails (nil at EOF).
func pump(dst io.Writer, src io.Reader, before func()) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			before()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}
