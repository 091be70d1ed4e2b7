package mailstack

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Reasons of SMTP rejections, the values of the reason label of
// mailstack_rejected_total.
const (
	rejectUnknownUser = "unknown-recipient"
	rejectRelay       = "relay-denied"
	rejectTooLarge    = "too-large"
)

// HeaderMailchaosID is the header that mailchaos' load generators and probes
// put on every message, so each can be accounted for afterwards.
const HeaderMailchaosID = "X-Mailchaos-Id"

// backend is the go-smtp backend of the stack.
type backend struct{ s *Stack }

func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	remote := ""
	if a, ok := c.Conn().RemoteAddr().(*net.TCPAddr); ok {
		remote = a.IP.String()
	}
	return &session{s: b.s, helo: c.Hostname(), remote: remote}, nil
}

// session is one SMTP session.
type session struct {
	s      *Stack
	helo   string
	remote string
	from   string
	to     []string
}

var _ smtp.AuthSession = (*session)(nil)

// AuthMechanisms offers PLAIN, for clients that insist on authenticating.
// Mail for local recipients is accepted without authentication, as an
// inbound MX does.
func (ss *session) AuthMechanisms() []string { return []string{sasl.Plain} }

// Auth checks PLAIN credentials against the configured users.
func (ss *session) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		for _, u := range ss.s.cfg.Users {
			if strings.EqualFold(u.Address, username) && u.Password == password {
				return nil
			}
		}
		return smtp.ErrAuthFailed
	}), nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if !ss.s.domains[domainOf(to)] {
		ss.s.metrics.rejected.WithLabelValues(rejectRelay).Inc()
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
			Message: fmt.Sprintf("relay access denied: %s is not a local domain", domainOf(to))}
	}
	if ss.s.boxes.user(to) == nil {
		ss.s.metrics.rejected.WithLabelValues(rejectUnknownUser).Inc()
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1},
			Message: fmt.Sprintf("no such user: %s", to)}
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		if errors.Is(err, smtp.ErrDataTooLarge) {
			ss.s.metrics.rejected.WithLabelValues(rejectTooLarge).Inc()
		}
		return err
	}
	if _, err := ss.s.accept(ss.from, ss.to, raw, ss.helo, ss.remote); err != nil {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: err.Error()}
	}
	return nil
}

func (ss *session) Reset() {
	ss.from, ss.to = "", nil
}

func (ss *session) Logout() error { return nil }

// accept queues a message received over SMTP and records it in the ledger.
// It adds a Received header and, when the message has none, a Message-ID.
func (s *Stack) accept(from string, to []string, raw []byte, helo, remote string) (string, error) {
	// Shutdown takes acceptMu once stopping is set: every message accepted
	// before is in the queue by then, and none after.
	s.acceptMu.RLock()
	defer s.acceptMu.RUnlock()
	if s.stopping.Load() {
		return "", errors.New("shutting down, try again later")
	}
	now := time.Now()
	qid := s.nextQueueID()
	msgID, mcID := headerIDs(raw)
	var hdr bytes.Buffer
	hdr.Grow(256)
	fmt.Fprintf(&hdr, "Received: from %s ([%s])\r\n\tby %s (mailchaos) with ESMTP id %s\r\n\tfor <%s>; %s\r\n",
		helo, remote, s.cfg.Hostname, qid, to[0], now.Format(time.RFC1123Z))
	if msgID == "" {
		msgID = "<" + qid + "@" + s.cfg.Hostname + ">"
		fmt.Fprintf(&hdr, "Message-ID: %s\r\n", msgID)
	}
	data := make([]byte, 0, hdr.Len()+len(raw))
	data = append(append(data, hdr.Bytes()...), raw...)
	msg := &message{queueID: qid, from: from, to: append([]string(nil), to...), data: data, accepted: now}
	s.ledger.add(Record{QueueID: qid, MessageID: msgID, MailchaosID: mcID, From: from,
		To: msg.to, Size: len(raw), State: StateQueued, Accepted: now})
	s.metrics.accepted.Inc()
	s.metrics.queueDepth.Inc()
	s.queue.push(msg)
	return qid, nil
}

// headerIDs returns the Message-ID and X-Mailchaos-Id headers of raw.
func headerIDs(raw []byte) (msgID, mailchaosID string) {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return "", ""
	}
	return strings.TrimSpace(h.Get("Message-Id")), strings.TrimSpace(h.Get(HeaderMailchaosID))
}

// tooManyConnections is the reply to a connection over smtp.max-connections.
const tooManyConnections = "421 4.7.0 too many connections\r\n"

// refuseWriteTimeout bounds writing the 421 reply to a refused connection.
const refuseWriteTimeout = time.Second

// limitListener caps the connections of an SMTP listener: Accept answers
// a connection over the cap with 421 and closes it, then waits for the
// next. A connection it returns counts until its Close. Safe for
// concurrent use.
type limitListener struct {
	net.Listener
	max   int
	m     *metrics
	mu    sync.Mutex
	count int
}

func newLimitListener(ln net.Listener, maxConns int, m *metrics) *limitListener {
	return &limitListener{Listener: ln, max: maxConns, m: m}
}

// Accept returns the next connection under the cap. Writing the 421 is
// bounded by refuseWriteTimeout, so a refused client cannot stall Accept.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		ok := l.count < l.max
		if ok {
			l.count++
		}
		l.mu.Unlock()
		if ok {
			l.m.smtpConns.Inc()
			return &limitConn{Conn: c, l: l}, nil
		}
		l.m.smtpRefused.Inc()
		_ = c.SetWriteDeadline(time.Now().Add(refuseWriteTimeout))
		_, _ = io.WriteString(c, tooManyConnections)
		_ = c.Close()
	}
}

func (l *limitListener) release() {
	l.mu.Lock()
	l.count--
	l.mu.Unlock()
	l.m.smtpConns.Dec()
}

// limitConn is a connection counted by its limitListener.
type limitConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

// Close closes the connection and, the first time, frees its place.
func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.l.release)
	return err
}
