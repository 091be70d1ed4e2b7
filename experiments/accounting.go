package experiments

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailchaos/mailchaos/clamd"
	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/loadsurge"
	"github.com/mailchaos/mailchaos/faults/loadsurge/loadfig"
	"github.com/mailchaos/mailchaos/internal/yamlfile"
	"github.com/mailchaos/mailchaos/targets/mailstack"
)

// drainTimeout bounds how long accounting waits, by default, for the
// embedded stack's queue to empty (deferred messages come back after their
// back-off); accounting.wait overrides it.
const drainTimeout = 90 * time.Second

// accounting checks the invariants and journals one assertion each. It
// reports whether all held.
func (r *runner) accounting(ctx context.Context) bool {
	stack := r.run.Stack
	if stack == nil {
		return r.externalAccounting(ctx)
	}
	// Let the queue drain: every accepted message must reach a final state.
	deadline := time.Now().Add(cmp.Or(r.exp.Accounting.Wait, drainTimeout))
	for stack.Counts().Queued > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	recs := stack.Messages()
	allOK := true
	for _, inv := range r.exp.Invariants {
		var ok bool
		var measured, bound string
		switch inv {
		case InvariantNoMailLost:
			ok, measured = noMailLost(recs)
			bound = "every accepted message delivered or quarantined"
		case InvariantNoDuplicates:
			ok, measured = noDuplicates(recs)
			bound = "no message delivered twice"
		case InvariantInfectedNotDeliver:
			var err error
			ok, measured, err = infectedNeverDelivered(ctx, r.run.Target)
			if err != nil {
				ok, measured = false, "could not check: "+err.Error()
			}
			bound = "no mailbox holds a message an engine would call infected"
		}
		r.assert("invariant: "+inv, ok, measured, bound, "")
		allOK = allOK && ok
	}
	return allOK
}

func noMailLost(recs []mailstack.Record) (bool, string) {
	var queued, bounced int
	for _, r := range recs {
		switch r.State {
		case mailstack.StateDelivered, mailstack.StateQuarantined:
		case mailstack.StateBounced:
			bounced++
		default:
			queued++
		}
	}
	msg := fmt.Sprintf("%d accepted: %d still queued at the end, %d bounced", len(recs), queued, bounced)
	return queued == 0 && bounced == 0, msg
}

func noDuplicates(recs []mailstack.Record) (bool, string) {
	seen := map[string]int{}
	dups := 0
	for _, r := range recs {
		if r.State != mailstack.StateDelivered {
			continue
		}
		key := r.MailchaosID
		if key == "" {
			key = r.MessageID
		}
		seen[key]++
		if seen[key] == 2 {
			dups++
		}
	}
	return dups == 0, fmt.Sprintf("%d messages delivered more than once", dups)
}

// infectedNeverDelivered reads every user's INBOX over the target's IMAP
// endpoint and scans each message with the bundled engine's matcher (which
// decodes MIME parts): a ground truth independent of what the stack
// believes it did.
func infectedNeverDelivered(ctx context.Context, target faults.Target) (bool, string, error) {
	m := clamd.NewMatcher(clamd.DefaultSignatures())
	var infected []string
	scanned := 0
	for _, u := range target.Users {
		conn, err := (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp", target.Endpoints["imap"])
		if err != nil {
			return false, "", err
		}
		c := imapclient.New(conn, nil)
		// A signal ends the check: closing the connection ends any command.
		stopClose := context.AfterFunc(ctx, func() { _ = c.Close() })
		err = func() error {
			defer stopClose()
			defer c.Close()
			if err := c.Login(u.Login, u.Password).Wait(); err != nil {
				return fmt.Errorf("log in as %s: %w", u.Login, err)
			}
			sel, err := c.Select("INBOX", nil).Wait()
			if err != nil || sel.NumMessages == 0 {
				return err
			}
			msgs, err := c.Fetch(imap.SeqSetNum(seqRange(sel.NumMessages)...),
				&imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
			if err != nil {
				return err
			}
			for _, msg := range msgs {
				scanned++
				for _, body := range msg.BodySection {
					if sig, found := m.Match(body.Bytes); found {
						infected = append(infected, fmt.Sprintf("%s #%d (%s)", u.Address, msg.SeqNum, sig))
					}
				}
			}
			return c.Logout().Wait()
		}()
		if err != nil {
			return false, "", err
		}
		if ctx.Err() != nil {
			return false, "", ctx.Err()
		}
	}
	if n := len(infected); n > 0 {
		if n > 5 {
			infected = append(infected[:5], "...")
		}
		return false, fmt.Sprintf("%d of %d delivered messages infected: %s", n, scanned, strings.Join(infected, ", ")), nil
	}
	return true, fmt.Sprintf("0 of %d delivered messages infected", scanned), nil
}

func seqRange(n uint32) []uint32 {
	out := make([]uint32, n)
	for i := range out {
		out[i] = uint32(i + 1)
	}
	return out
}

// maxAccountingWait bounds accounting.wait.
const maxAccountingWait = time.Hour

// validateAccounting checks the accounting field and what the invariants
// need on an external target: an imap endpoint and users to read the
// mailboxes with, a load-surge step (protocol smtp) whose messages they
// account for, and recipients among those users.
func (e *Experiment) validateAccounting(target faults.Target) []yamlfile.FieldError {
	var errs []yamlfile.FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, yamlfile.FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if w := e.Accounting.Wait; w < 0 || w > maxAccountingWait {
		add("accounting.wait", "must be from 0s (the default: %s on an external target, %s for the embedded stack's queue) to %s, got %s",
			DefaultAccountingWait, drainTimeout, maxAccountingWait, w)
	}
	if len(e.Invariants) == 0 {
		if e.Accounting != (Accounting{}) {
			add("accounting", "configures the check of the invariants, and none are declared: add invariants: [no-mail-lost, ...] or remove it")
		}
		return errs
	}
	if e.Target.kind() != TargetExternal {
		return errs
	}
	// Where to say what the target lacks: its inline field, or the
	// invariants when a file describes it.
	where := func(field string) (string, string) {
		if e.Target.File != "" {
			return "invariants", fmt.Sprintf("the target file %s has no %s", e.Target.File, field)
		}
		return "target." + field, "the target has no " + field
	}
	if target.Endpoints == nil {
		return errs // the target itself is invalid; that is reported
	}
	if _, ok := target.Endpoints["imap"]; !ok {
		f, lack := where("endpoints")
		add(f, "%s.imap: invariants on an external target read the users' mailboxes back over IMAP; add the imap endpoint (host:port)", lack)
	}
	if len(target.Users) == 0 {
		f, lack := where("users")
		add(f, "%s: invariants on an external target log in as the users the load sends to and read their mailboxes; list them with their log-in and password", lack)
	}
	users := map[string]bool{}
	var addrs []string
	for _, u := range target.Users {
		users[strings.ToLower(u.Address)] = true
		addrs = append(addrs, u.Address)
	}
	loads := 0
	for i, st := range e.Method {
		if st.Fault != loadfig.FaultName {
			continue
		}
		l, err := loadsurge.ParseParams(faults.Params(st.Params), target.Users, st.For)
		if err != nil || l.Protocol != loadsurge.ProtocolSMTP {
			continue // its own errors are reported with the step
		}
		loads++
		if len(target.Users) == 0 {
			continue
		}
		for _, rcpt := range l.SMTP.Rcpts {
			if !users[strings.ToLower(rcpt)] {
				add(fmt.Sprintf("method[%d].params.to", i), "%s is not a user of the target: accounting could not read its mailbox (users: %s)",
					rcpt, strings.Join(addrs, ", "))
				break
			}
		}
	}
	if loads == 0 {
		add("invariants", "on an external target the invariants account for the messages of the method's %s steps (protocol smtp), and the method has none: add one, or check the invariants on the embedded stack",
			loadfig.FaultName)
	}
	return errs
}
