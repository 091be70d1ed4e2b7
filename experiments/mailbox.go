package experiments

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/mail"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailchaos/mailchaos/clamd"
	"github.com/mailchaos/mailchaos/experiments/journal"
	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/loadsurge"
	"github.com/mailchaos/mailchaos/faults/loadsurge/loadfig"
)

// Limits of reading mailboxes back.
const (
	// pollEvery is how often accounting looks again for messages not yet
	// delivered.
	pollEvery = time.Second
	// fetchBatch is how many messages one FETCH asks for.
	fetchBatch = 200
	// maxScanned bounds the body read for the infection check: the load
	// sends at most 64 MiB; a larger message is reported, not read.
	maxScanned = 64<<20 + 64<<10
	// listCap bounds the ids an assertion's message lists.
	listCap = 10
	// imapTimeout bounds connecting to the IMAP endpoint and each command.
	imapTimeout = 30 * time.Second
)

// mailboxBook is what one load step had accepted, and what was found of
// it: one entry per sequence number it sent.
type mailboxBook struct {
	step int
	acc  loadsurge.Accounting
	// copies counts (up to 255) the copies of each message found in its
	// recipient's INBOX or quarantine; quarantined marks those found in
	// the quarantine mailbox.
	copies      []uint8
	quarantined []bool
}

// found is a message of the run in one mailbox: the book it belongs to
// (-1: not a load message, a canary), its sequence number, and whether it
// is in its recipient's mailbox.
type found struct {
	book int
	seq  int64
	mine bool
	id   string // for book -1 only
}

// folder is what is known of one mailbox of one user: its messages of the
// run by UID, valid while its UIDVALIDITY stays.
type folder struct {
	user, name  string
	quarantine  bool
	uidValidity uint32
	msgs        map[imap.UID]found
}

// mailboxCheck reads an external target's mailboxes back over IMAP.
type mailboxCheck struct {
	target     faults.Target
	quarantine string
	run        string // the run's ID: every X-Mailchaos-Id of it starts with run + "-"
	books      []*mailboxBook
	folders    []*folder
	// unknown counts messages of the run's load steps that the load did
	// not see accepted (cut after DATA, say): delivered, not counted.
	unknown int
	// misplaced counts load messages found in another user's mailbox.
	misplaced int
}

// externalAccounting checks the invariants on an external target by its
// mailboxes, journals one assertion each, and removes the run's messages
// if asked to. It reports whether all held.
func (r *runner) externalAccounting(ctx context.Context) bool {
	fail := func(msg string) bool {
		for _, inv := range r.exp.Invariants {
			r.assert("invariant: "+inv, false, "could not check: "+msg, invariantBound(inv), "")
		}
		return false
	}
	spec, err := r.exp.Target.spec(r.opts.Catalog.AllowRemote)
	if err != nil {
		return fail(err.Error())
	}
	mc := &mailboxCheck{target: r.run.Target, quarantine: spec.File.Quarantine, run: r.opts.RunID}
	if err := mc.loadBooks(ctx, r); err != nil {
		return fail(err.Error())
	}
	wait := cmp.Or(r.exp.Accounting.Wait, DefaultAccountingWait)
	deadline := time.Now().Add(wait)
	var missing int
	for {
		if err := mc.scan(ctx); err != nil {
			return fail(err.Error())
		}
		if missing = mc.missing(nil); missing == 0 || !time.Now().Before(deadline) || !sleepCtx(ctx, pollEvery) {
			break
		}
	}
	if ctx.Err() != nil {
		return fail(ctx.Err().Error())
	}
	infected, scanned, err := mc.infected(ctx)
	if err != nil {
		return fail(err.Error())
	}
	counts := mc.counts(len(infected))
	allOK := true
	for _, inv := range r.exp.Invariants {
		var ok bool
		measured := counts
		switch inv {
		case InvariantNoMailLost:
			var ids []string
			n := mc.missing(&ids)
			ok = n == 0
			if n > 0 {
				measured += fmt.Sprintf("; still missing after waiting %s: %s", wait, capList(ids, n))
			}
			for _, b := range mc.books {
				if !b.acc.Over {
					ok = false
					measured += fmt.Sprintf("; the load of method[%d] had not ended: its count is incomplete", b.step)
				}
			}
		case InvariantNoDuplicates:
			ids, n := mc.duplicated()
			ok = n == 0
			if n > 0 {
				measured += "; delivered more than once: " + capList(ids, n)
			}
		case InvariantInfectedNotDeliver:
			ok = len(infected) == 0
			measured += fmt.Sprintf("; %d delivered messages of the run scanned", scanned)
			if len(infected) > 0 {
				measured += ", infected: " + capList(infected, len(infected))
			}
		}
		r.assert("invariant: "+inv, ok, measured, invariantBound(inv), "")
		allOK = allOK && ok
	}
	if r.exp.Accounting.Cleanup {
		r.cleanupMail(ctx, mc, "")
	}
	return allOK
}

// cleanupAfterStopTimeout bounds the removal of a stopped run's messages.
const cleanupAfterStopTimeout = 30 * time.Second

// cleanupAfterStop removes the run's messages from an external target's
// mailboxes, when accounting.cleanup asks for it and the run's accounting
// did not remove them (the run stopped before it, by an abort, a signal
// or an error; or accounting itself failed): what the load got delivered
// would otherwise stay. Called once the faults are rolled
// back, it is bounded by cleanupAfterStopTimeout and a second signal.
// Messages the target still held in its queue are delivered later and
// stay; the journal says so, with the prefix of their ids.
func (r *runner) cleanupAfterStop() {
	if !r.exp.Accounting.Cleanup || r.cleaned || r.run == nil || r.run.Stack != nil || r.injectStart.IsZero() {
		return
	}
	ctx, cancel := context.WithTimeout(r.opts.Kill, cleanupAfterStopTimeout)
	defer cancel()
	spec, err := r.exp.Target.spec(r.opts.Catalog.AllowRemote)
	if err != nil {
		_ = r.write(journal.Event{Type: journal.TypeLog, Message: "accounting cleanup: nothing removed", Err: "accounting cleanup: " + err.Error()})
		return
	}
	mc := &mailboxCheck{target: r.run.Target, quarantine: spec.File.Quarantine, run: r.opts.RunID}
	r.cleanupMail(ctx, mc, fmt.Sprintf(" (accounting did not finish: messages the target still had queued are delivered later and stay; their X-Mailchaos-Id starts with %s-)", mc.run))
}

// cleanupMail removes the run's messages and journals how many, with
// note after the count. A cleanup that a signal cut short is tried again
// once the run ends (cleanupAfterStop).
func (r *runner) cleanupMail(ctx context.Context, mc *mailboxCheck, note string) {
	n, err := mc.cleanup(ctx)
	r.cleaned = err == nil || ctx.Err() == nil
	ev := journal.Event{Type: journal.TypeLog, Message: fmt.Sprintf("accounting cleanup: removed %d messages of run %s from the users' mailboxes%s", n, mc.run, note)}
	if err != nil {
		ev.Err = "accounting cleanup: " + err.Error()
	}
	_ = r.write(ev)
	r.progress("%s", ev.Message)
}

// invariantBound is what an invariant asserts on an external target.
func invariantBound(inv string) string {
	switch inv {
	case InvariantNoMailLost:
		return "every message the target accepted (250) is in its recipient's mailbox or the quarantine mailbox"
	case InvariantNoDuplicates:
		return "no message of the run delivered twice"
	}
	return "no message of the run delivered to a mailbox is one an engine would call infected"
}

// loadBooks asks each load-surge step for what its server accepted.
func (mc *mailboxCheck) loadBooks(ctx context.Context, r *runner) error {
	inj, _, err := r.opts.Catalog.Faults.Get(loadfig.FaultName)
	if err != nil {
		return nil // no load step: nothing to account for
	}
	for i, st := range r.exp.Method {
		if st.Fault != loadfig.FaultName || st.Params["protocol"] == loadsurge.ProtocolIMAP {
			continue
		}
		// The step's request, as the run injected it.
		req := r.request(i)
		h := faults.Handle{ID: req.ID, Fault: req.Fault, Owner: req.Owner,
			Data: map[string]string{loadsurge.DataQuery: loadsurge.QueryAccounting}}
		sctx, cancel := context.WithTimeout(ctx, imapTimeout)
		status, err := inj.Status(sctx, h)
		cancel()
		if err != nil {
			return fmt.Errorf("method[%d]: ask the load what was accepted: %w", i, err)
		}
		if status.Detail == "" {
			continue // never injected
		}
		acc, err := loadsurge.ParseAccounting(status.Detail)
		if err != nil {
			return fmt.Errorf("method[%d]: %w", i, err)
		}
		mc.books = append(mc.books, &mailboxBook{step: i, acc: acc,
			copies: make([]uint8, acc.Len()), quarantined: make([]bool, acc.Len())})
	}
	return nil
}

// scan brings every folder up to date: the run's messages in each user's
// INBOX and quarantine, found by header search; only the X-Mailchaos-Id of
// a message not seen before is fetched. Then it counts the copies.
func (mc *mailboxCheck) scan(ctx context.Context) error {
	for _, u := range mc.target.Users {
		err := mc.session(ctx, u, func(c *imapclient.Client, f *folder) error {
			uids, err := mc.search(c)
			if err != nil {
				return err
			}
			present := make(map[imap.UID]bool, len(uids))
			var fresh []imap.UID
			for _, uid := range uids {
				present[uid] = true
				if _, ok := f.msgs[uid]; !ok {
					fresh = append(fresh, uid)
				}
			}
			for uid := range f.msgs {
				if !present[uid] {
					delete(f.msgs, uid) // expunged since
				}
			}
			return mc.fetchIDs(c, fresh, func(uid imap.UID, id string) {
				f.msgs[uid] = mc.place(u, id)
			})
		})
		if err != nil {
			return err
		}
	}
	for _, b := range mc.books {
		clear(b.copies)
		clear(b.quarantined)
	}
	mc.unknown, mc.misplaced = 0, 0
	for _, f := range mc.folders {
		for _, m := range f.msgs {
			switch {
			case m.book < 0:
			case !m.mine:
				mc.misplaced++
			case !mc.books[m.book].acc.IsAccepted(m.seq):
				mc.unknown++
			default:
				b := mc.books[m.book]
				if b.copies[m.seq] < 255 {
					b.copies[m.seq]++
				}
				if f.quarantine {
					b.quarantined[m.seq] = true
				}
			}
		}
	}
	return nil
}

// place says what message id, found in u's mailbox, is: any message of a
// load step's run, accepted or not (one cut after DATA may be delivered
// all the same), is that step's.
func (mc *mailboxCheck) place(u faults.User, id string) found {
	for i, b := range mc.books {
		if seq, ok := b.acc.SeqOf(id); ok && len(b.acc.Rcpts) > 0 {
			rcpt := b.acc.Message(seq).Rcpt
			return found{book: i, seq: seq, mine: strings.EqualFold(rcpt, u.Address)}
		}
	}
	return found{book: -1, id: id}
}

// session logs in as u and calls fn with each of u's mailboxes to read
// (INBOX, and the quarantine if the target has one) selected. A
// quarantine mailbox that does not exist is empty.
func (mc *mailboxCheck) session(ctx context.Context, u faults.User, fn func(*imapclient.Client, *folder) error) error {
	c, err := dialIMAP(ctx, mc.target.Endpoints["imap"], u)
	if err != nil {
		return err
	}
	defer c.close()
	for _, name := range []string{"INBOX", mc.quarantine} {
		if name == "" {
			continue
		}
		sel, err := c.Select(name, &imap.SelectOptions{ReadOnly: false}).Wait()
		if err != nil {
			var ie *imap.Error
			if name != "INBOX" && errors.As(err, &ie) {
				continue // no such mailbox
			}
			return fmt.Errorf("%s: select %s: %w", u.Address, name, err)
		}
		f := mc.folder(u.Address, name, sel.UIDValidity)
		if err := fn(c.Client, f); err != nil {
			return fmt.Errorf("%s: %s: %w", u.Address, name, err)
		}
	}
	return c.Logout().Wait()
}

// folder returns the record of a mailbox, emptied if its UIDVALIDITY
// changed.
func (mc *mailboxCheck) folder(user, name string, uidValidity uint32) *folder {
	for _, f := range mc.folders {
		if f.user == user && f.name == name {
			if f.uidValidity != uidValidity {
				f.uidValidity, f.msgs = uidValidity, map[imap.UID]found{}
			}
			return f
		}
	}
	f := &folder{user: user, name: name, quarantine: name != "INBOX", uidValidity: uidValidity, msgs: map[imap.UID]found{}}
	mc.folders = append(mc.folders, f)
	return f
}

// search returns the UIDs of the messages whose X-Mailchaos-Id contains
// the run's prefix (IMAP matches a substring; fetchIDs checks the prefix).
func (mc *mailboxCheck) search(c *imapclient.Client) ([]imap.UID, error) {
	data, err := c.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{
		{Key: loadsurge.HeaderID, Value: mc.run + "-"}}}, nil).Wait()
	if err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	return data.AllUIDs(), nil
}

// fetchIDs fetches the X-Mailchaos-Id of each of uids, in batches, and
// calls fn with those that start with the run's prefix.
func (mc *mailboxCheck) fetchIDs(c *imapclient.Client, uids []imap.UID, fn func(imap.UID, string)) error {
	section := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{loadsurge.HeaderID}, Peek: true}
	for len(uids) > 0 {
		batch := uids[:min(fetchBatch, len(uids))]
		uids = uids[len(batch):]
		msgs, err := c.Fetch(imap.UIDSetNum(batch...), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{section}}).Collect()
		if err != nil {
			return fmt.Errorf("fetch: %w", err)
		}
		for _, m := range msgs {
			id := headerID(m.FindBodySection(section))
			if strings.HasPrefix(id, mc.run+"-") {
				fn(m.UID, id)
			}
		}
	}
	return nil
}

// headerID reads the X-Mailchaos-Id out of a fetched header section.
func headerID(b []byte) string {
	msg, err := mail.ReadMessage(io.MultiReader(bytes.NewReader(b), strings.NewReader("\r\n")))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(msg.Header.Get(loadsurge.HeaderID))
}

// missing counts the accepted messages found nowhere, and lists their ids
// (up to listCap) in ids when it is not nil.
func (mc *mailboxCheck) missing(ids *[]string) int {
	n := 0
	for _, b := range mc.books {
		b.acc.Each(func(m loadsurge.AcceptedMessage) bool {
			if b.copies[m.Seq] == 0 {
				n++
				if ids != nil && len(*ids) < listCap {
					*ids = append(*ids, m.ID+" (to "+m.Rcpt+")")
				}
			}
			return true
		})
	}
	return n
}

// duplicated lists the messages found more than once (up to listCap) and
// counts them.
func (mc *mailboxCheck) duplicated() ([]string, int) {
	var ids []string
	n := 0
	for _, b := range mc.books {
		for seq, c := range b.copies {
			if c > 1 {
				n++
				if len(ids) < listCap {
					ids = append(ids, fmt.Sprintf("%s (%d copies)", b.acc.Message(int64(seq)).ID, c))
				}
			}
		}
	}
	return ids, n
}

// counts writes the figures every assertion shows.
func (mc *mailboxCheck) counts(infected int) string {
	var accepted, sent, rejected, tempfail, uncertain, foundN, quarantined, dups int64
	for _, b := range mc.books {
		accepted += int64(b.acc.Count())
		sent, rejected, tempfail, uncertain = sent+b.acc.Sent, rejected+b.acc.Rejected, tempfail+b.acc.Tempfail, uncertain+b.acc.Uncertain
		for seq, c := range b.copies {
			if c > 0 {
				foundN++
				if b.quarantined[seq] {
					quarantined++
				}
				if c > 1 {
					dups++
				}
			}
		}
	}
	s := fmt.Sprintf("accepted %d, found %d, missing %d, quarantined %d, duplicated %d, infected %d",
		accepted, foundN, int64(mc.missing(nil)), quarantined, dups, infected)
	s += fmt.Sprintf(" (%d sent; not accepted, so not counted: %d refused at SMTP, %d deferred (4xx), %d cut after DATA", sent, rejected, tempfail, uncertain)
	if mc.unknown > 0 {
		s += fmt.Sprintf("; %d not seen accepted were delivered", mc.unknown)
	}
	if mc.misplaced > 0 {
		s += fmt.Sprintf("; %d found in another user's mailbox", mc.misplaced)
	}
	return s + ")"
}

// infected scans every message of the run found in an INBOX with the
// bundled engine's matcher (which decodes MIME parts), one message at a
// time, and lists those it matches.
func (mc *mailboxCheck) infected(ctx context.Context) (list []string, scanned int, err error) {
	m := clamd.NewMatcher(clamd.DefaultSignatures())
	section := &imap.FetchItemBodySection{Peek: true}
	buf := make([]byte, 0, 64<<10)
	for _, u := range mc.target.Users {
		err := mc.session(ctx, u, func(c *imapclient.Client, f *folder) error {
			if f.quarantine {
				return nil
			}
			uids := make([]imap.UID, 0, len(f.msgs))
			for uid := range f.msgs {
				uids = append(uids, uid)
			}
			for len(uids) > 0 {
				batch := uids[:min(fetchBatch, len(uids))]
				uids = uids[len(batch):]
				cmd := c.Fetch(imap.UIDSetNum(batch...), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{section}})
				for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
					var uid imap.UID
					var body []byte
					tooLarge := false
					for item := msg.Next(); item != nil; item = msg.Next() {
						switch it := item.(type) {
						case imapclient.FetchItemDataUID:
							uid = it.UID
						case imapclient.FetchItemDataBodySection:
							if it.Literal == nil {
								continue
							}
							if it.Literal.Size() > maxScanned {
								tooLarge = true
								_, _ = io.Copy(io.Discard, it.Literal)
								continue
							}
							b := bytes.NewBuffer(buf[:0])
							if _, err := io.Copy(b, it.Literal); err != nil {
								return err
							}
							body = b.Bytes()
						}
					}
					scanned++
					name := fmt.Sprintf("UID %d in %s", uid, u.Address)
					if fm, ok := f.msgs[uid]; ok {
						id := fm.id
						if fm.book >= 0 {
							id = mc.books[fm.book].acc.Message(fm.seq).ID
						}
						name = id + " in " + u.Address
					}
					if tooLarge {
						list = append(list, name+" (too large to scan)")
					} else if sig, found := m.Match(body); found {
						list = append(list, name+" ("+sig+")")
					}
				}
				if err := cmd.Close(); err != nil {
					return fmt.Errorf("fetch: %w", err)
				}
			}
			return nil
		})
		if err != nil {
			return nil, scanned, err
		}
	}
	return list, scanned, nil
}

// cleanup removes the run's messages, and only them, from every user's
// INBOX and quarantine: \Deleted on their UIDs, then UID EXPUNGE of those
// UIDs alone (UIDPLUS), so that messages another client marked deleted
// stay. It returns how many it removed.
func (mc *mailboxCheck) cleanup(ctx context.Context) (int, error) {
	removed := 0
	var errs []error
	for _, u := range mc.target.Users {
		err := mc.session(ctx, u, func(c *imapclient.Client, _ *folder) error {
			if !c.Caps().Has(imap.CapUIDPlus) {
				return errors.New("the server lacks UIDPLUS (UID EXPUNGE), without which only this run's messages cannot be removed: nothing removed")
			}
			uids, err := mc.search(c)
			if err != nil {
				return err
			}
			var set imap.UIDSet
			n := 0
			if err := mc.fetchIDs(c, uids, func(uid imap.UID, _ string) { set.AddNum(uid); n++ }); err != nil {
				return err
			}
			if n == 0 {
				return nil
			}
			if err := c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
				return fmt.Errorf("mark deleted: %w", err)
			}
			if err := c.UIDExpunge(set).Close(); err != nil {
				return fmt.Errorf("expunge: %w", err)
			}
			removed += n
			return nil
		})
		if err != nil {
			errs = append(errs, err)
		}
	}
	return removed, errors.Join(errs...)
}

// imapSession is a logged-in IMAP connection whose commands end when ctx
// does or after imapTimeout each.
type imapSession struct {
	*imapclient.Client
	stop func() bool
}

func (s *imapSession) close() {
	s.stop()
	_ = s.Client.Close()
}

// dialIMAP connects to addr and logs in as u.
func dialIMAP(ctx context.Context, addr string, u faults.User) (*imapSession, error) {
	conn, err := (&net.Dialer{Timeout: imapTimeout}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	c := imapclient.New(deadlineConn{conn}, nil)
	// A signal ends the check: closing the connection ends any command.
	s := &imapSession{Client: c, stop: context.AfterFunc(ctx, func() { _ = c.Close() })}
	if err := c.Login(u.LoginName(), cmp.Or(u.Password, faults.DefaultPassword)).Wait(); err != nil {
		s.close()
		return nil, fmt.Errorf("log in as %s: %w", u.LoginName(), err)
	}
	return s, nil
}

// deadlineConn renews a deadline of imapTimeout before each read and
// write, so that a server that stops answering cannot hold accounting.
type deadlineConn struct{ net.Conn }

func (c deadlineConn) Read(p []byte) (int, error) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(imapTimeout))
	return c.Conn.Read(p)
}

func (c deadlineConn) Write(p []byte) (int, error) {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(imapTimeout))
	return c.Conn.Write(p)
}

// capList writes up to listCap of ids, and how many more there are of n.
func capList(ids []string, n int) string {
	if len(ids) > listCap {
		ids = ids[:listCap]
	}
	s := strings.Join(ids, ", ")
	if more := n - len(ids); more > 0 {
		s += fmt.Sprintf(" and %d more", more)
	}
	return s
}

// sleepCtx waits d; false if ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
