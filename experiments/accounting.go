package experiments

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailchaos/mailchaos/clamd"
	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/targets/mailstack"
)

// drainTimeout bounds how long accounting waits for the target's queue to
// empty (deferred messages come back after their back-off).
const drainTimeout = 90 * time.Second

// accounting checks the invariants and journals one assertion each. It
// reports whether all held.
func (r *runner) accounting(ctx context.Context) bool {
	stack := r.run.Stack
	if stack == nil {
		for _, inv := range r.exp.Invariants {
			r.assert("invariant: "+inv, false, "not checkable", "the embedded mailstack's ledger",
				"invariants need the embedded stack")
		}
		return false
	}
	// Let the queue drain: every accepted message must reach a final state.
	deadline := time.Now().Add(drainTimeout)
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
