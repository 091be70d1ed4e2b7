package probes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/mail"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mailchaos/mailchaos/faults"
)

// mailer is what the probes that send messages share: the envelope, the
// prefix of their X-Mailchaos-Id values and the domain of their
// Message-IDs.
type mailer struct {
	prefix, from, to, domain string
}

// newMailer checks the envelope (plain addresses, each named by its
// parameter in errors) and the IDs for a probe of kind built from cfg.
func newMailer(kind string, cfg Config, from, to string) (mailer, error) {
	for _, a := range []struct{ param, addr string }{{"from", from}, {"to", to}} {
		if parsed, err := mail.ParseAddress(a.addr); err != nil || parsed.Address != a.addr {
			return mailer{}, &faults.ParamError{Fault: kind, Param: a.param, Value: a.addr,
				Msg: "not a plain e-mail address", Allowed: "such as alice@example.test"}
		}
	}
	if strings.ContainsAny(cfg.RunID+cfg.Name, "\r\n\t ") {
		return mailer{}, fmt.Errorf("%s: run ID %q and SLI name %q must not contain spaces or line breaks", kind, cfg.RunID, cfg.Name)
	}
	name, runID := cfg.Name, cfg.RunID
	if name == "" {
		name = kind
	}
	if runID == "" {
		runID = strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	domain := "mailchaos.invalid"
	if i := strings.LastIndexByte(from, '@'); i >= 0 && i < len(from)-1 {
		domain = from[i+1:]
	}
	return mailer{prefix: runID + "-" + name + "-", from: from, to: to, domain: domain}, nil
}

// message is the text of the message with X-Mailchaos-Id id: Subject
// "mailchaos KIND ID", a Message-ID made from id, and body.
func (m mailer) message(kind, id string, at time.Time, body []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: mailchaos %s %s\r\nDate: %s\r\n", m.from, m.to, kind, id, at.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s@%s>\r\n%s: %s\r\n", messageIDPart(id), m.domain, HeaderCanaryID, id)
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
	b.Write(body)
	return b.Bytes()
}

// messageBody returns about size bytes of plain text in CRLF lines: intro,
// then filler lines, cut to size when size leaves room for intro.
func messageBody(intro, filler string, size int) []byte {
	var b bytes.Buffer
	b.WriteString(intro)
	for b.Len() < size {
		b.WriteString(filler)
	}
	if b.Len() > size && size >= len(intro)+2 {
		b.Truncate(size - 2)
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// submit sends msg from from to to over one plain SMTP session bounded by
// ctx (EHLO helo, MAIL FROM, RCPT TO, DATA) and returns the time from the
// start of the connect to the reply after the end of DATA. A reply that
// refuses a step is a *replyError naming it. The QUIT that follows is not
// timed (it is bounded to a second) and its failure is ignored: the message
// was accepted.
func submit(ctx context.Context, addr, helo, from, to string, msg []byte) (time.Duration, error) {
	start := time.Now()
	conn, stop, err := dial(ctx, addr)
	if err != nil {
		return 0, ctxErr(ctx, "smtp: connect to "+addr, err)
	}
	defer stop()
	c := smtp.NewClient(conn)
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		// go-smtp sets its own deadline on every command; keep it within ctx.
		c.CommandTimeout = max(time.Until(dl), time.Millisecond)
		c.SubmissionTimeout = c.CommandTimeout
	}
	step := func(what string, err error) error {
		if err == nil {
			return nil
		}
		var se *smtp.SMTPError
		if errors.As(err, &se) && ctx.Err() == nil {
			return &replyError{addr: addr, step: what, err: se}
		}
		return ctxErr(ctx, fmt.Sprintf("smtp %s: %s", addr, what), err)
	}
	if err := step("EHLO", c.Hello(helo)); err != nil {
		return 0, err
	}
	if err := step("MAIL FROM", c.Mail(from, nil)); err != nil {
		return 0, err
	}
	if err := step("RCPT TO", c.Rcpt(to, nil)); err != nil {
		return 0, err
	}
	w, err := c.Data()
	if err := step("DATA", err); err != nil {
		return 0, err
	}
	if _, err := w.Write(msg); err != nil {
		return 0, step("DATA", err)
	}
	if err := step("end of DATA", w.Close()); err != nil {
		return 0, err
	}
	elapsed := time.Since(start)
	c.CommandTimeout = min(c.CommandTimeout, time.Second)
	_ = c.Quit()
	return elapsed, nil
}

// replyError is a reply that refused a step of the transaction.
type replyError struct {
	addr, step string
	err        *smtp.SMTPError
}

func (e *replyError) Error() string {
	reply := strconv.Itoa(e.err.Code)
	if c := e.err.EnhancedCode; c != (smtp.EnhancedCode{}) && c != smtp.NoEnhancedCode {
		reply += fmt.Sprintf(" %d.%d.%d", c[0], c[1], c[2])
	}
	if e.err.Message != "" {
		reply += " " + e.err.Message
	}
	return fmt.Sprintf("smtp %s: %s: %s", e.addr, e.step, reply)
}

func (e *replyError) Unwrap() error { return e.err }
