package mailstack

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// mailboxes is the stack's mailbox store: the in-memory IMAP backend with
// one account per configured user plus the quarantine account.
type mailboxes struct {
	mem        *imapmemserver.Server
	users      map[string]*imapmemserver.User // lower-cased address -> account
	quarantine *imapmemserver.User
}

func newMailboxes(cfg *Config) (*mailboxes, error) {
	mb := &mailboxes{mem: imapmemserver.New(), users: map[string]*imapmemserver.User{}}
	add := func(u User) (*imapmemserver.User, error) {
		acct := imapmemserver.NewUser(u.Address, u.Password)
		if err := acct.Create("INBOX", nil); err != nil {
			return nil, fmt.Errorf("create INBOX of %s: %w", u.Address, err)
		}
		mb.mem.AddUser(acct)
		return acct, nil
	}
	for _, u := range cfg.Users {
		acct, err := add(u)
		if err != nil {
			return nil, err
		}
		mb.users[strings.ToLower(u.Address)] = acct
	}
	q, err := add(cfg.Quarantine)
	if err != nil {
		return nil, err
	}
	mb.quarantine = q
	return mb, nil
}

// user returns the account of a local address, or nil.
func (mb *mailboxes) user(addr string) *imapmemserver.User {
	return mb.users[strings.ToLower(addr)]
}

// appendTo stores data in acct's INBOX.
func appendTo(acct *imapmemserver.User, data []byte, t time.Time) error {
	_, err := acct.Append("INBOX", bytes.NewReader(data), &imap.AppendOptions{Time: t})
	return err
}

// deliver puts a clean message in every recipient's INBOX.
func (s *Stack) deliver(msg *message) {
	for _, rcpt := range msg.to {
		acct := s.boxes.user(rcpt)
		if acct == nil {
			// Recipients are checked at RCPT time; this cannot happen unless
			// the configuration changed under a running stack.
			s.bounce(msg, "no such mailbox "+rcpt)
			return
		}
		if err := appendTo(acct, msg.data, msg.accepted); err != nil {
			s.log.Error("deliver", "queue_id", msg.queueID, "rcpt", rcpt, "err", err)
			s.bounce(msg, "mailbox error: "+err.Error())
			return
		}
	}
	now := time.Now()
	s.metrics.delivered.Inc()
	s.metrics.latency.Observe(now.Sub(msg.accepted).Seconds())
	s.finish(msg, StateDelivered, "", "", now)
}

// quarantine stores msg in the quarantine mailbox with a header saying why.
func (s *Stack) quarantine(msg *message, reason, signature string) {
	hdr := fmt.Sprintf("X-Mailchaos-Quarantine: reason=%s", reason)
	if signature != "" {
		hdr += "; signature=" + signature
	}
	hdr += "; queue-id=" + msg.queueID + "\r\n"
	data := append([]byte(hdr), msg.data...)
	if err := appendTo(s.boxes.quarantine, data, msg.accepted); err != nil {
		s.log.Error("quarantine", "queue_id", msg.queueID, "err", err)
	}
	s.metrics.quarantined.WithLabelValues(reason).Inc()
	s.log.Info("quarantined", "queue_id", msg.queueID, "reason", reason, "signature", signature)
	s.finish(msg, StateQuarantined, reason, signature, time.Now())
}

// bounce returns msg to its sender: a delivery status notification goes to
// the sender's INBOX when the sender is a local user.
func (s *Stack) bounce(msg *message, reason string) {
	if acct := s.boxes.user(msg.from); acct != nil {
		dsn := fmt.Sprintf("From: MAILER-DAEMON@%s\r\nTo: %s\r\nSubject: Undelivered Mail Returned to Sender\r\n"+
			"Message-ID: <%s.bounce@%s>\r\nDate: %s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"+
			"Your message (queue ID %s) could not be delivered: %s.\r\n",
			s.cfg.Hostname, msg.from, msg.queueID, s.cfg.Hostname, time.Now().Format(time.RFC1123Z), msg.queueID, reason)
		if err := appendTo(acct, []byte(dsn), time.Now()); err != nil {
			s.log.Error("bounce", "queue_id", msg.queueID, "err", err)
		}
	}
	s.metrics.bounced.Inc()
	s.log.Info("bounced", "queue_id", msg.queueID, "reason", reason)
	s.finish(msg, StateBounced, reason, "", time.Now())
}

// finish records a message's final state.
func (s *Stack) finish(msg *message, st State, reason, signature string, at time.Time) {
	s.ledger.update(msg.queueID, func(r *Record) {
		r.State, r.Reason, r.Signature, r.Finished = st, reason, signature, at
	})
	s.metrics.queueDepth.Dec()
	msg.data = nil
}
