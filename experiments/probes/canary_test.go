package probes_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net/mail"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/experiments/probes"
	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/internal/testnet"
	"github.com/mailchaos/mailchaos/targets/mailstack"
)

func TestCanaryIsDelivered(t *testing.T) {
	t.Parallel()
	s, target := startStack(t, testConfig(t))
	p := newProbe(t, probes.CanaryKind(), target, faults.Params{"to": "bob@example.test"})
	require.Equal(t, "s", p.(probes.Uniter).Unit())

	sample := measure(p, waitFor)
	requireOK(t, sample)
	require.Greater(t, sample.Value, 0.0)
	require.Less(t, sample.Value, waitFor.Seconds())

	sent := p.(probes.Canary).Sent()
	require.Equal(t, []string{"run1-sli-1"}, sent)
	recs := s.Messages()
	require.Len(t, recs, 1)
	require.Equal(t, "run1-sli-1", recs[0].MailchaosID)
	require.Equal(t, "alice@example.test", recs[0].From, "the first user sends by default")
	require.Equal(t, []string{"bob@example.test"}, recs[0].To)
	require.Equal(t, mailstack.StateDelivered, recs[0].State)
	require.True(t, strings.HasPrefix(recs[0].MessageID, "<run1-sli-1@"), recs[0].MessageID)

	// A second canary on the same IMAP connection.
	requireOK(t, measure(p, waitFor))
	require.Equal(t, []string{"run1-sli-1", "run1-sli-2"}, p.(probes.Canary).Sent())
}

func TestCanaryDefaultsToTheFirstUserSendingToItself(t *testing.T) {
	t.Parallel()
	s, target := startStack(t, testConfig(t))
	p := newProbe(t, probes.CanaryKind(), target, faults.Params{})
	requireOK(t, measure(p, waitFor))
	recs := s.Messages()
	require.Len(t, recs, 1)
	require.Equal(t, "alice@example.test", recs[0].From)
	require.Equal(t, []string{"alice@example.test"}, recs[0].To)
}

func TestCanaryStuckBehindASlowEngineFails(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	// Every engine takes an hour over the canary (its payload carries the
	// run ID); other mail is scanned at once.
	for i := range cfg.Engines {
		cfg.Engines[i].Delay = time.Hour
		cfg.Engines[i].DelayMatch = "run1-sli-"
	}
	s, target := startStack(t, cfg)
	p := newProbe(t, probes.CanaryKind(), target, faults.Params{})

	sample := measure(p, 2*time.Second)
	require.True(t, sample.Failed, "a stuck canary must fail")
	require.Regexp(t, `^canary not delivered within [0-9.]+s \(run1-sli-1\)$`, sample.Err)
	require.Equal(t, []string{"run1-sli-1"}, p.(probes.Canary).Sent(), "the canary was accepted")
	require.Equal(t, 1, s.Counts().Accepted)

	// Clean mail still flows past the stuck canary.
	waitDelivered(t, s, sendMail(t, target.Endpoints["smtp"], 1))
}

func TestCanarySMTPErrorFails(t *testing.T) {
	t.Parallel()
	_, target := startStack(t, testConfig(t))
	p := newProbe(t, probes.CanaryKind(), target, faults.Params{"to": "nobody@example.test"})
	sample := measure(p, waitFor)
	require.True(t, sample.Failed)
	require.Contains(t, sample.Err, "RCPT TO")
	require.Contains(t, sample.Err, "no such user")
	require.Empty(t, p.(probes.Canary).Sent(), "a rejected canary was not sent")

	target.Endpoints["smtp"] = testnet.FreeAddr(t)
	p = newProbe(t, probes.CanaryKind(), target, faults.Params{})
	sample = measure(p, waitFor)
	require.True(t, sample.Failed)
	require.Contains(t, sample.Err, "connect")
}

func TestCanaryReportsIMAPErrors(t *testing.T) {
	t.Parallel()
	_, target := startStack(t, testConfig(t))
	p := newProbe(t, probes.CanaryKind(), target, faults.Params{"password": "wrong"})
	sample := measure(p, 2*time.Second)
	require.True(t, sample.Failed)
	require.Regexp(t, `not delivered within [0-9.]+s`, sample.Err)
	require.Contains(t, sample.Err, "; IMAP: log in as alice@example.test")
}

func TestCanaryConcurrentMeasures(t *testing.T) {
	t.Parallel()
	s, target := startStack(t, testConfig(t))
	p := newProbe(t, probes.CanaryKind(), target, faults.Params{"to": "bob@example.test"})
	const n = 10
	samples := make([]probes.Sample, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			samples[i] = measure(p, waitFor)
		}()
	}
	wg.Wait()
	for _, sample := range samples {
		requireOK(t, sample)
		require.Greater(t, sample.Value, 0.0)
	}
	sent := p.(probes.Canary).Sent()
	require.Len(t, sent, n)
	seen := map[string]bool{}
	for _, id := range sent {
		require.False(t, seen[id], "canary ID %s sent twice", id)
		seen[id] = true
	}
	for _, r := range s.Messages() {
		require.True(t, seen[r.MailchaosID], "the stack got an unknown canary %q", r.MailchaosID)
		require.Equal(t, mailstack.StateDelivered, r.State)
	}
	require.Equal(t, n, s.Counts().Delivered)
}

func TestCanaryCloseStopsWaitingMeasures(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	for i := range cfg.Engines {
		cfg.Engines[i].Delay = time.Hour
	}
	_, target := startStack(t, cfg)
	p, err := probes.CanaryKind().New(probes.Config{Name: "sli", Target: target, RunID: "run1"})
	require.NoError(t, err)
	got := make(chan probes.Sample, 1)
	go func() { got <- p.Measure(context.Background()) }()
	require.Eventually(t, func() bool { return len(p.(probes.Canary).Sent()) == 1 }, waitFor, 5*time.Millisecond)
	require.NoError(t, p.Close())
	require.NoError(t, p.Close(), "Close is idempotent")
	select {
	case sample := <-got:
		require.True(t, sample.Failed)
		require.Contains(t, sample.Err, "closed")
	case <-time.After(waitFor):
		t.Fatal("Measure did not return after Close")
	}
	sample := p.Measure(context.Background())
	require.True(t, sample.Failed)
	require.Contains(t, sample.Err, "closed")
}

func TestCanaryReconnectsToIMAP(t *testing.T) {
	t.Parallel()
	_, target := startStack(t, testConfig(t))
	proxy := testnet.Forward(t, target.Endpoints["imap"])
	target.Endpoints["imap"] = proxy.Addr
	p := newProbe(t, probes.CanaryKind(), target, faults.Params{})
	requireOK(t, measure(p, waitFor))
	proxy.CloseConns()
	requireOK(t, measure(p, waitFor))
	proxy.CloseConns()
	requireOK(t, measure(p, waitFor))
}

func TestCanaryAmongOtherMail(t *testing.T) {
	t.Parallel()
	s, target := startStack(t, testConfig(t))
	var ids []string
	for i := range 20 {
		ids = append(ids, sendMail(t, target.Endpoints["smtp"], i))
	}
	waitDelivered(t, s, ids...)
	p := newProbe(t, probes.CanaryKind(), target, faults.Params{"to": "bob@example.test"})
	for range 3 {
		requireOK(t, measure(p, waitFor))
		waitDelivered(t, s, sendMail(t, target.Endpoints["smtp"], 99))
	}
	require.Equal(t, []string{"run1-sli-1", "run1-sli-2", "run1-sli-3"}, p.(probes.Canary).Sent())
}

// inbox lists the X-Mailchaos-Id of every message in a user's INBOX ("" for
// a message without one) and whether each is flagged \Deleted.
func inbox(t testing.TB, addr, login, password string) (ids []string, deleted []bool) {
	t.Helper()
	ids, deleted, err := readInbox(addr, login, password)
	require.NoError(t, err)
	return ids, deleted
}

// readInbox is inbox returning its error, for conditions that are polled.
func readInbox(addr, login, password string) (ids []string, deleted []bool, err error) {
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		return nil, nil, err
	}
	defer c.Close()
	if err := c.Login(login, password).Wait(); err != nil {
		return nil, nil, err
	}
	sel, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return nil, nil, err
	}
	if sel.NumMessages > 0 {
		section := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{probes.HeaderCanaryID}, Peek: true}
		msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: sel.NumMessages}},
			&imap.FetchOptions{Flags: true, BodySection: []*imap.FetchItemBodySection{section}}).Collect()
		if err != nil {
			return nil, nil, err
		}
		for _, m := range msgs {
			ids = append(ids, headerValue(m.FindBodySection(section), probes.HeaderCanaryID))
			deleted = append(deleted, slices.Contains(m.Flags, imap.FlagDeleted))
		}
	}
	return ids, deleted, c.Logout().Wait()
}

// headerValue returns the value of the header key in a fetched header
// section, "" if it has none.
func headerValue(header []byte, key string) string {
	m, err := mail.ReadMessage(bytes.NewReader(append(header, "\r\n"...)))
	if err != nil {
		return ""
	}
	return m.Header.Get(key)
}

// flagDeleted flags every message of a user's INBOX \Deleted without
// expunging it, as a mail client set to "mark as deleted" does.
func flagDeleted(t testing.TB, addr, login, password string) {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.Login(login, password).Wait())
	sel, err := c.Select("INBOX", nil).Wait()
	require.NoError(t, err)
	require.NotZero(t, sel.NumMessages)
	require.NoError(t, c.Store(imap.SeqSet{{Start: 1, Stop: sel.NumMessages}},
		&imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close())
	require.NoError(t, c.Logout().Wait())
}

func TestCanaryDeletesTheCanariesItSaw(t *testing.T) {
	t.Parallel()
	s, target := startStack(t, testConfig(t))
	imapAddr := target.Endpoints["imap"]
	// Bob's mail: one message he has flagged \Deleted but not expunged,
	// one he keeps. Neither is the canary's to remove.
	first := sendMail(t, target.Endpoints["smtp"], 1)
	waitDelivered(t, s, first)
	flagDeleted(t, imapAddr, "bob@example.test", "password")
	waitDelivered(t, s, sendMail(t, target.Endpoints["smtp"], 2))

	p := newProbe(t, probes.CanaryKind(), target, faults.Params{"to": "bob@example.test"})
	for range 3 {
		requireOK(t, measure(p, waitFor))
	}
	require.Len(t, p.(probes.Canary).Sent(), 3)
	require.Equal(t, 5, s.Counts().Delivered, "the canaries were delivered")
	require.Eventually(t, func() bool {
		ids, _, err := readInbox(imapAddr, "bob@example.test", "password")
		return err == nil && len(ids) == 2
	}, waitFor, 10*time.Millisecond, "the canaries are deleted once seen")
	ids, deleted := inbox(t, imapAddr, "bob@example.test", "password")
	require.Equal(t, []string{"", ""}, ids, "only the canaries are gone")
	require.Equal(t, []bool{true, false}, deleted, "the message flagged \\Deleted by its owner is still there")
	require.Equal(t, 5, s.Counts().Delivered, "deleting is not a delivery event")
}

func TestCanaryKeepLeavesTheCanaries(t *testing.T) {
	t.Parallel()
	s, target := startStack(t, testConfig(t))
	p := newProbe(t, probes.CanaryKind(), target, faults.Params{"to": "bob@example.test", "keep": "true"})
	for range 3 {
		requireOK(t, measure(p, waitFor))
	}
	require.Equal(t, 3, s.Counts().Delivered)
	ids, deleted := inbox(t, target.Endpoints["imap"], "bob@example.test", "password")
	require.Equal(t, []string{"run1-sli-1", "run1-sli-2", "run1-sli-3"}, ids)
	require.Equal(t, []bool{false, false, false}, deleted)
}

// lazySession is a session of go-imap's in-memory server that, like
// Dovecot's, tells its client about mail others append to the selected
// mailbox only on NOOP, CHECK and IDLE (and a new SELECT): after any other
// command no update is sent, and FETCH, STORE and SEARCH by UID see only
// the messages the client has been told of. NOOP and CHECK are told apart
// from the commands a canary sends as those that call no session method
// before the server polls.
type lazySession struct {
	imapserver.Session // the in-memory session
	srv                *lazyServer

	mu      sync.Mutex
	user    *imapmemserver.User
	mailbox string
	visible imap.UID // the highest UID the client has been told of
	ran     bool     // a session method ran since the last poll
}

// lazyServer serves lazySessions on loopback.
type lazyServer struct {
	addr        string
	refuseStore bool // STORE gets NO, as on a read-only mailbox

	mu    sync.Mutex
	users map[string]*imapmemserver.User // by log-in name
}

// startLazyIMAP serves users (their log-in names and passwords, each with
// an empty INBOX) until the test ends. With uidPlus the server offers
// UIDPLUS (UID EXPUNGE); without, plain EXPUNGE only.
func startLazyIMAP(t testing.TB, uidPlus, refuseStore bool, users ...faults.User) *lazyServer {
	t.Helper()
	mem := imapmemserver.New()
	s := &lazyServer{refuseStore: refuseStore, users: map[string]*imapmemserver.User{}}
	for _, u := range users {
		acct := imapmemserver.NewUser(u.LoginName(), u.Secret())
		require.NoError(t, acct.Create("INBOX", nil))
		mem.AddUser(acct)
		s.users[u.LoginName()] = acct
	}
	caps := imap.CapSet{imap.CapIMAP4rev1: {}}
	if uidPlus {
		caps[imap.CapUIDPlus] = struct{}{}
	}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &lazySession{Session: mem.NewSession(), srv: s}, nil, nil
		},
		Caps:         caps,
		InsecureAuth: true,
		Logger:       log.New(io.Discard, "", 0),
	})
	s.addr = testnet.Run(t, srv)
	return s
}

// append stores msg in the INBOX of the user who logs in as login.
func (s *lazyServer) append(login string, msg []byte) error {
	s.mu.Lock()
	acct := s.users[login]
	s.mu.Unlock()
	if acct == nil {
		return fmt.Errorf("no user %s", login)
	}
	_, err := acct.Append("INBOX", bytes.NewReader(msg), &imap.AppendOptions{Time: time.Now()})
	return err
}

func (ls *lazySession) Login(username, password string) error {
	if err := ls.Session.Login(username, password); err != nil {
		return err
	}
	ls.srv.mu.Lock()
	defer ls.srv.mu.Unlock()
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.user, ls.ran = ls.srv.users[username], true
	return nil
}

func (ls *lazySession) Select(mailbox string, options *imap.SelectOptions) (*imap.SelectData, error) {
	data, err := ls.Session.Select(mailbox, options)
	if err != nil {
		return nil, err
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.mailbox, ls.visible, ls.ran = mailbox, data.UIDNext-1, true
	return data, nil
}

// touch records that a command ran, and returns the highest visible UID.
func (ls *lazySession) touch() imap.UID {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.ran = true
	return ls.visible
}

// clamp restricts a UID set to the UIDs the client has been told of.
func clamp(numSet imap.NumSet, visible imap.UID) (imap.NumSet, bool) {
	set, ok := numSet.(imap.UIDSet)
	if !ok {
		return numSet, true
	}
	var out imap.UIDSet
	for _, r := range set {
		start, stop := r.Start, r.Stop
		if start == 0 {
			start = visible
		}
		if stop == 0 {
			stop = visible
		}
		if start > stop {
			start, stop = stop, start
		}
		stop = min(stop, visible)
		if start >= 1 && start <= stop {
			out = append(out, imap.UIDRange{Start: start, Stop: stop})
		}
	}
	return out, len(out) > 0
}

func (ls *lazySession) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	set, ok := clamp(numSet, ls.touch())
	if !ok {
		return nil
	}
	return ls.Session.Fetch(w, set, options)
}

func (ls *lazySession) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error {
	visible := ls.touch()
	if ls.srv.refuseStore {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Text: "mailbox is read-only"}
	}
	set, ok := clamp(numSet, visible)
	if !ok {
		return nil
	}
	return ls.Session.Store(w, set, flags, options)
}

func (ls *lazySession) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	visible := ls.touch()
	if visible == 0 {
		return &imap.SearchData{}, nil
	}
	c := *criteria
	c.UID = append(slices.Clone(c.UID), imap.UIDSet{{Start: 1, Stop: visible}})
	return ls.Session.Search(kind, &c, options)
}

func (ls *lazySession) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	ls.touch()
	return ls.Session.Expunge(w, uids)
}

// Poll passes the updates on after NOOP and CHECK only, and makes the
// mailbox as it is now visible.
func (ls *lazySession) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	ls.mu.Lock()
	ran := ls.ran
	ls.ran = false
	ls.mu.Unlock()
	if ran {
		return nil
	}
	ls.see()
	return ls.Session.Poll(w, allowExpunge)
}

// Idle sends the updates held back so far, then every new one.
func (ls *lazySession) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	ls.see()
	if err := ls.Session.Poll(w, true); err != nil {
		return err
	}
	defer ls.see()
	return ls.Session.Idle(w, stop)
}

// see makes every message of the selected mailbox visible.
func (ls *lazySession) see() {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.user == nil || ls.mailbox == "" {
		return
	}
	if st, err := ls.user.Status(ls.mailbox, &imap.StatusOptions{UIDNext: true}); err == nil {
		ls.visible = st.UIDNext - 1
	}
}

// deliveringSMTP is an SMTP server on loopback that hands every message it
// accepts to deliver before its 250 reply, and records when the delivery
// of each canary began.
type deliveringSMTP struct {
	addr    string
	deliver func(rcpt string, msg []byte) error

	mu        sync.Mutex
	delivered map[string]time.Time // by X-Mailchaos-Id
}

func startDeliveringSMTP(t testing.TB, deliver func(rcpt string, msg []byte) error) *deliveringSMTP {
	t.Helper()
	d := &deliveringSMTP{deliver: deliver, delivered: map[string]time.Time{}}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &deliverySession{d: d}, nil
	}))
	srv.Domain = "localhost"
	srv.ErrorLog = log.New(io.Discard, "", 0)
	d.addr = testnet.Run(t, srv)
	return d
}

// deliveredAt returns when the delivery of the canary id began.
func (d *deliveringSMTP) deliveredAt(id string) (time.Time, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	at, ok := d.delivered[id]
	return at, ok
}

type deliverySession struct {
	d     *deliveringSMTP
	rcpts []string
}

func (s *deliverySession) Mail(string, *smtp.MailOptions) error { return nil }

func (s *deliverySession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *deliverySession) Data(r io.Reader) error {
	msg, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	// The delivery moment: the canary cannot be visible before it.
	at := time.Now()
	for _, rcpt := range s.rcpts {
		if err := s.d.deliver(rcpt, msg); err != nil {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: err.Error()}
		}
	}
	s.d.mu.Lock()
	s.d.delivered[headerValue(msg, probes.HeaderCanaryID)] = at
	s.d.mu.Unlock()
	return nil
}

func (s *deliverySession) Reset()        { s.rcpts = nil }
func (s *deliverySession) Logout() error { return nil }

// tester is a user of a real server: it logs in by a short name.
func testerUser() faults.User {
	return faults.User{Address: "tester@realstack.test", Login: "tester", Password: "tester-pass"}
}

// lazyTarget starts a lazy IMAP server with tester and an SMTP server
// that delivers into it, and returns them with the target.
func lazyTarget(t testing.TB, uidPlus, refuseStore bool) (*lazyServer, *deliveringSMTP, faults.Target) {
	t.Helper()
	tester := testerUser()
	imapSrv := startLazyIMAP(t, uidPlus, refuseStore, tester)
	smtpSrv := startDeliveringSMTP(t, func(rcpt string, msg []byte) error {
		if rcpt != tester.Address {
			return fmt.Errorf("no mailbox %s", rcpt)
		}
		return imapSrv.append(tester.Login, msg)
	})
	target := faults.Target{Endpoints: map[string]string{"smtp": smtpSrv.addr, "imap": imapSrv.addr},
		Users: []faults.User{tester}}
	return imapSrv, smtpSrv, target
}

func TestCanarySeesNewMailOnAServerThatReportsItOnlyOnNoop(t *testing.T) {
	tester := testerUser()
	const poll = 20 * time.Millisecond
	for _, uidPlus := range []bool{true, false} {
		t.Run(fmt.Sprintf("uidplus=%v", uidPlus), func(t *testing.T) {
			imapSrv, smtpSrv, target := lazyTarget(t, uidPlus, false)
			// The probe logs in as tester (the target's user for its
			// recipient), not by the address.
			p := newProbe(t, probes.CanaryKind(), target, faults.Params{"poll": poll.String()})
			var lates []time.Duration
			for i := 1; i <= 8; i++ {
				sample := measure(p, waitFor)
				requireOK(t, sample)
				id := fmt.Sprintf("run1-sli-%d", i)
				at, ok := smtpSrv.deliveredAt(id)
				require.True(t, ok, "canary %s was not delivered", id)
				late := time.Duration(sample.Value*float64(time.Second)) - at.Sub(sample.At)
				require.GreaterOrEqual(t, late, time.Duration(0), "canary %s seen before it was delivered", id)
				// Seen on one of the next polls, not when something else
				// woke the probe: the sample's time-out (waitFor, 30 s; the
				// samples run one at a time, so no next sample comes
				// sooner). The margin is wide for a busy 2-core machine,
				// whose scheduling can hold a poll for a second, and still
				// an order of magnitude below that time-out.
				require.LessOrEqual(t, late, poll+2*time.Second, "canary %s seen %s after it was delivered", id, late)
				lates = append(lates, late)
			}
			t.Logf("seen after delivery: %v", lates)
			if !uidPlus {
				// Without UID EXPUNGE they are only flagged \Deleted.
				require.Eventually(t, func() bool {
					ids, deleted, err := readInbox(imapSrv.addr, tester.Login, tester.Password)
					return err == nil && len(ids) == 8 && !slices.Contains(deleted, false)
				}, waitFor, 10*time.Millisecond, "the canaries are flagged \\Deleted once seen")
				return
			}
			// Every canary is deleted once seen.
			require.Eventually(t, func() bool {
				ids, _, err := readInbox(imapSrv.addr, tester.Login, tester.Password)
				return err == nil && len(ids) == 0
			}, waitFor, 10*time.Millisecond, "the canaries are deleted once seen")
		})
	}
}

func TestCanaryWithoutUIDPlusLeavesOthersDeletedMessagesAlone(t *testing.T) {
	t.Parallel()
	tester := testerUser()
	imapSrv, _, target := lazyTarget(t, false, false)
	// tester has flagged a message \Deleted and not expunged it: EXPUNGE
	// would remove it with the canaries.
	require.NoError(t, imapSrv.append(tester.Login, []byte("Subject: old\r\n\r\nold\r\n")))
	flagDeleted(t, imapSrv.addr, tester.Login, tester.Password)

	p := newProbe(t, probes.CanaryKind(), target, faults.Params{})
	for range 2 {
		requireOK(t, measure(p, waitFor))
	}
	require.Eventually(t, func() bool {
		ids, deleted, err := readInbox(imapSrv.addr, tester.Login, tester.Password)
		return err == nil && slices.Equal([]string{"", "run1-sli-1", "run1-sli-2"}, ids) &&
			slices.Equal([]bool{true, true, true}, deleted)
	}, waitFor, 5*time.Millisecond, "nothing was expunged, the canaries are flagged \\Deleted")
	require.NoError(t, probes.CanaryIMAPError(p), "leaving them flagged is not an error")
}

func TestCanaryFailedDeleteDoesNotFailSamples(t *testing.T) {
	t.Parallel()
	tester := testerUser()
	imapSrv, _, target := lazyTarget(t, true, true)
	p := newProbe(t, probes.CanaryKind(), target, faults.Params{})
	for range 3 {
		requireOK(t, measure(p, waitFor))
	}
	require.Eventually(t, func() bool {
		err := probes.CanaryIMAPError(p)
		return err != nil && strings.Contains(err.Error(), "delete seen canaries (UID 3): UID STORE: imap: NO mailbox is read-only")
	}, waitFor, 5*time.Millisecond, "the failed delete is in the probe's error state")
	ids, _ := inbox(t, imapSrv.addr, tester.Login, tester.Password)
	require.Len(t, ids, 3, "the canaries stay")
}
