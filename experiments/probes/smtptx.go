package probes

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mailchaos/mailchaos/faults"
)

// KindSMTPTransaction is the smtp-transaction probe's name.
const KindSMTPTransaction = "smtp-transaction"

// Reply classes of the smtp-transaction probe, in [Sample.Class].
const (
	// Class2xx: the server accepted the message (2xx after the end of
	// DATA).
	Class2xx = "2xx"
	// Class4xx: a 4xx reply (a temporary failure) at any step, greeting
	// to end of DATA.
	Class4xx = "4xx"
	// Class5xx: a 5xx reply (a permanent failure) at any step.
	Class5xx = "5xx"
	// ClassTimeout: no reply by the sample's timeout.
	ClassTimeout = "timeout"
	// ClassConnError: the connection was refused or failed, or the server
	// answered something that is not the SMTP reply expected.
	ClassConnError = "conn-error"
)

// smtpTxHelo is the name the smtp-transaction probe greets the server with.
const smtpTxHelo = "mailchaos-probe.invalid"

// SMTPTransactionKind is the smtp-transaction probe: what an SMTP client
// (another MTA, an application submitting mail) experiences. Each sample
// is one clean message on a fresh connection: connect, greeting, EHLO,
// MAIL, RCPT, DATA, the message, and the server's reply to the end of
// DATA, then QUIT (not timed). With a pre-queue (milter) scanner the scan
// happens before that last reply, so a slow scanner shows here as latency,
// and an overloaded one as 4xx replies.
//
// With measure latency (default, unit "s") the value is the seconds from
// the start of the connect to the reply to the end of DATA, and a reply
// other than 2xx at any step, a timeout or a connection failure is a failed
// sample. With measure success (unit "ratio") the value is 1 for a 2xx
// reply to the end of DATA and 0 otherwise, and no sample is failed. Either
// way the sample's Class is the outcome (Class2xx, Class4xx, Class5xx,
// ClassTimeout or ClassConnError) and, for anything but 2xx, its Err starts
// with the class and holds the step and the server's reply
// ("4xx: smtp 127.0.0.1:25: end of DATA: 451 4.7.1 try again later").
//
// Each message carries a Message-ID and X-Mailchaos-Id:
// <RunID>-<Name>-<n>, like the canary's, so that the stack's records can
// tell it from other mail.
func SMTPTransactionKind() Kind {
	k := Kind{
		Name:    KindSMTPTransaction,
		Summary: "SMTP transaction latency or success as a client sees it: connect to the reply after the end of DATA",
		Unit:    "s",
		Params: []faults.Param{
			{Name: "endpoint", Type: faults.TypeAddress, Default: "smtp",
				Doc: "the SMTP server: a name in the target's endpoints or a host:port address"},
			{Name: "from", Type: faults.TypeString,
				Doc: "envelope and header sender (default: the target's first user, else alice@example.test)"},
			{Name: "to", Type: faults.TypeString,
				Doc: "the recipient (default: the target's first user, else alice@example.test)"},
			{Name: "size", Type: faults.TypeSize, Default: "1KiB", Min: "0", Max: "10MiB", Unit: "bytes",
				Doc: "size of the message's body"},
			{Name: "measure", Type: faults.TypeEnum, Default: MeasureLatency, Enum: []string{MeasureLatency, MeasureSuccess},
				Doc: "latency: seconds from connect to the reply after the end of DATA, anything but 2xx is a failed sample; success: 1 for a 2xx reply after the end of DATA, else 0 (unit ratio)"},
		},
	}
	k.New = func(cfg Config) (Probe, error) {
		v, err := checkParams(k, cfg)
		if err != nil {
			return nil, err
		}
		addr, err := resolveEndpoint(k.Name, "endpoint", v.String("endpoint"), cfg.Target)
		if err != nil {
			return nil, err
		}
		from, to := v.String("from"), v.String("to")
		if from == "" {
			from = defaultUser(cfg.Target).Address
		}
		if to == "" {
			to = defaultUser(cfg.Target).Address
		}
		m, err := newMailer(k.Name, cfg, from, to)
		if err != nil {
			return nil, err
		}
		return &smtpTxProbe{mailer: m, addr: addr, body: smtpTxBody(int(v.Size("size"))),
			success: v.String("measure") == MeasureSuccess}, nil
	}
	return k
}

// smtpTxBody returns about size bytes of plain text in CRLF lines.
func smtpTxBody(size int) []byte {
	const line = "mailchaos smtp-transaction probe: this message measures SMTP acceptance and may be deleted.\r\n"
	return messageBody("", line, size)
}

// smtpTxProbe sends one message per sample on a connection of its own.
// Measure is safe for concurrent use.
type smtpTxProbe struct {
	mailer
	addr    string
	body    []byte
	success bool
	seq     atomic.Uint64
}

var _ Probe = (*smtpTxProbe)(nil)

// Measure sends one message and returns by ctx's deadline.
func (p *smtpTxProbe) Measure(ctx context.Context) Sample {
	start := time.Now()
	id := p.prefix + strconv.FormatUint(p.seq.Add(1), 10)
	elapsed, err := p.send(ctx, id, start)
	if err == nil {
		if p.success {
			return Sample{At: start, Value: 1, Class: Class2xx}
		}
		return Sample{At: start, Value: elapsed.Seconds(), Class: Class2xx}
	}
	class := replyClass(err)
	return Sample{At: start, Failed: !p.success, Class: class, Err: class + ": " + err.Error()}
}

// send runs one transaction bounded by ctx and returns the time from the
// start of the connect to the reply to the end of DATA.
func (p *smtpTxProbe) send(ctx context.Context, id string, at time.Time) (time.Duration, error) {
	return submit(ctx, p.addr, smtpTxHelo, p.from, p.to, p.message("smtp-transaction", id, at, p.body))
}

// Unit is "s" for measure latency, "ratio" for measure success.
func (p *smtpTxProbe) Unit() string {
	if p.success {
		return "ratio"
	}
	return "s"
}

// Close does nothing: every sample uses its own connection.
func (p *smtpTxProbe) Close() error { return nil }

// replyClass classifies a transaction's error: the reply's class for a
// 4xx or 5xx reply, a timeout, or a connection error (which includes a
// reply that is not the one expected, such as 250 to DATA).
func replyClass(err error) string {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		switch se.Code / 100 {
		case 4:
			return Class4xx
		case 5:
			return Class5xx
		}
		return ClassConnError
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return ClassTimeout
	}
	return ClassConnError
}
