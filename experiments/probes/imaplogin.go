package probes

import (
	"context"
	"fmt"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailchaos/mailchaos/faults"
)

// KindIMAPLogin is the imap-login probe's name.
const KindIMAPLogin = "imap-login"

// What the imap-login probe reports.
const (
	// MeasureLatency reports the log-in latency in seconds; a failed
	// log-in is a failed sample.
	MeasureLatency = "latency"
	// MeasureSuccess reports 1 for a successful log-in and 0 for a failed
	// one; neither is a failed sample, so a tolerance such as `min: 1` with
	// stat `mean` over a window bounds the success rate.
	MeasureSuccess = "success"
)

// IMAPLoginKind is the imap-login probe: a fresh connection, LOGIN, SELECT
// of the mailbox, LOGOUT, as a mail client does. With measure latency
// (default, unit "s") the value is the time from connecting until the
// mailbox is selected; any failure is a failed sample. With measure
// success (unit "ratio") the value is 1 or 0 and the sample is never
// failed (Err still says what went wrong).
func IMAPLoginKind() Kind {
	k := Kind{
		Name:    KindIMAPLogin,
		Summary: "IMAP log-in latency or success: connect, LOGIN, SELECT, LOGOUT",
		Unit:    "s",
		Params: []faults.Param{
			{Name: "endpoint", Type: faults.TypeAddress, Default: "imap",
				Doc: "the IMAP server: a name in the target's endpoints or a host:port address"},
			{Name: "user", Type: faults.TypeString,
				Doc: "log-in name (default: the log-in name of the target's first user, else alice@example.test)"},
			{Name: "password", Type: faults.TypeString,
				Doc: "log-in password (default: that of the target's user who logs in, else password)"},
			{Name: "mailbox", Type: faults.TypeString, Default: "INBOX", Doc: "the mailbox selected after log-in"},
			{Name: "measure", Type: faults.TypeEnum, Default: MeasureLatency, Enum: []string{MeasureLatency, MeasureSuccess},
				Doc: "latency: seconds from connect to mailbox selected, a failure is a failed sample; success: 1 or 0 per attempt (unit ratio)"},
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
		user, password := account(cfg.Target, v.String("user"), defaultUser(cfg.Target), v.String("password"), v.Has("password"))
		return &imapLoginProbe{addr: addr, user: user, password: password,
			mailbox: v.String("mailbox"), success: v.String("measure") == MeasureSuccess}, nil
	}
	return k
}

// imapLoginProbe logs in afresh for every sample. It keeps no state.
type imapLoginProbe struct {
	addr, user, password, mailbox string
	success                       bool
}

var _ Probe = (*imapLoginProbe)(nil)

// Measure logs in once. It is safe for concurrent use and returns by ctx's
// deadline.
func (p *imapLoginProbe) Measure(ctx context.Context) Sample {
	start := time.Now()
	elapsed, err := p.login(ctx)
	switch {
	case p.success && err != nil:
		return Sample{At: start, Value: 0, Err: err.Error()}
	case p.success:
		return Sample{At: start, Value: 1}
	case err != nil:
		return failed(start, err)
	}
	return Sample{At: start, Value: elapsed.Seconds()}
}

// login connects, logs in and selects the mailbox, returning the time that
// took, then logs out (untimed, errors ignored).
func (p *imapLoginProbe) login(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	conn, stop, err := dial(ctx, p.addr)
	if err != nil {
		return 0, ctxErr(ctx, "imap: connect to "+p.addr, err)
	}
	defer stop()
	c := imapclient.New(conn, nil)
	defer c.Close()
	if err := c.WaitGreeting(); err != nil {
		return 0, ctxErr(ctx, "imap: greeting of "+p.addr, err)
	}
	if err := c.Login(p.user, p.password).Wait(); err != nil {
		return 0, ctxErr(ctx, fmt.Sprintf("imap: log in to %s as %s", p.addr, p.user), err)
	}
	if _, err := c.Select(p.mailbox, nil).Wait(); err != nil {
		return 0, ctxErr(ctx, fmt.Sprintf("imap: select %s as %s", p.mailbox, p.user), err)
	}
	elapsed := time.Since(start)
	_ = c.Logout().Wait()
	return elapsed, nil
}

// Unit is "s" for measure latency, "ratio" for measure success.
func (p *imapLoginProbe) Unit() string {
	if p.success {
		return "ratio"
	}
	return "s"
}

// Close does nothing: every sample uses its own connection.
func (p *imapLoginProbe) Close() error { return nil }
