package experiments_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/clamd"
	"github.com/mailchaos/mailchaos/experiments"
	"github.com/mailchaos/mailchaos/experiments/journal"
	"github.com/mailchaos/mailchaos/targets/mailstack"
)

// externalStack starts an embedded stack and returns the inline target
// block that describes it as an external one (accounting then reads its
// mailboxes over IMAP, not its ledger).
func externalStack(t *testing.T) (smtpAddr, imapAddr, block string) {
	t.Helper()
	cfg, err := mailstack.ProfileConfig(mailstack.ProfileRemediated)
	require.NoError(t, err)
	cfg.SMTP.Listen, cfg.IMAP.Listen, cfg.Metrics.Listen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	s, err := mailstack.New(cfg, mailstack.Options{})
	require.NoError(t, err)
	require.NoError(t, s.Start(context.Background()))
	t.Cleanup(func() { _ = s.Close() })
	for _, e := range s.Endpoints() {
		switch e.Name {
		case "smtp":
			smtpAddr = e.Addr
		case "imap":
			imapAddr = e.Addr
		}
	}
	block = fmt.Sprintf(`target:
  kind: external
  endpoints: { smtp: "%s", imap: "%s" }
  users: [alice@example.test, bob@example.test]
  quarantine: Quarantine
`, smtpAddr, imapAddr)
	return smtpAddr, imapAddr, block
}

// accountingExperiment is a short load to alice and bob with the three
// invariants.
func accountingExperiment(t *testing.T, target, accounting string) *experiments.Experiment {
	t.Helper()
	return accountingExperimentFor(t, target, accounting, "3s")
}

// accountingExperimentFor is accountingExperiment with a load that lasts
// d.
func accountingExperimentFor(t *testing.T, target, accounting, d string) *experiments.Experiment {
	t.Helper()
	src := "version: 1\ntitle: accounting\n" + target + `
steady-state:
  - { name: up, probe: tcp, interval: 100ms, params: { endpoint: smtp }, tolerance: { max: 2s } }
method:
  - { fault: load-surge, for: ` + d + `, params: { rate: 20/s, concurrency: 4, per-session: 5 } }
recovery: { within: 2s }
invariants: [no-mail-lost, no-duplicates, infected-never-delivered]
` + accounting
	e, err := experiments.Parse(context.Background(), "accounting.yaml", []byte(src), builtinCatalog(t))
	require.NoError(t, err, src)
	return e
}

// runWith runs e as run id and returns its result and journal.
func runWith(t *testing.T, e *experiments.Experiment, id string) (experiments.Result, []journal.Event) {
	t.Helper()
	var buf bytes.Buffer
	res := experiments.Run(context.Background(), e, experiments.Options{Catalog: builtinCatalog(t), Journal: journal.NewWriter(&buf, id), RunID: id})
	evs, err := journal.Read(&buf)
	require.NoError(t, err)
	require.Empty(t, journal.Outstanding(evs))
	return res, evs
}

// invariantResults maps each invariant assertion to whether it passed and
// what it measured.
func invariantResults(evs []journal.Event) map[string]journal.Event {
	out := map[string]journal.Event{}
	for _, ev := range evs {
		if ev.Type == journal.TypeAssertion && strings.HasPrefix(ev.Name, "invariant: ") {
			out[strings.TrimPrefix(ev.Name, "invariant: ")] = ev
		}
	}
	return out
}

// imapUser is a test's own IMAP session as one of the stack's users.
type imapUser struct {
	*imapclient.Client
}

func loginAs(t *testing.T, addr, user string) imapUser {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	require.NoError(t, err)
	c := imapclient.New(conn, nil)
	t.Cleanup(func() { _ = c.Close() })
	require.NoError(t, c.Login(user, "password").Wait())
	_, err = c.Select("INBOX", nil).Wait()
	require.NoError(t, err)
	return imapUser{c}
}

// ids returns the X-Mailchaos-Id of every message in the selected mailbox
// whose id contains sub, by UID.
func (u imapUser) ids(t *testing.T, sub string) map[imap.UID]string {
	t.Helper()
	out, err := u.find(sub)
	require.NoError(t, err)
	return out
}

func (u imapUser) find(sub string) (map[imap.UID]string, error) {
	data, err := u.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "X-Mailchaos-Id", Value: sub}}}, nil).Wait()
	if err != nil {
		return nil, err
	}
	out := map[imap.UID]string{}
	if len(data.AllUIDs()) == 0 {
		return out, nil
	}
	sec := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"X-Mailchaos-Id"}, Peek: true}
	msgs, err := u.Fetch(imap.UIDSetNum(data.AllUIDs()...), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{sec}}).Collect()
	if err != nil {
		return nil, err
	}
	for _, m := range msgs {
		h := strings.TrimSpace(string(m.FindBodySection(sec)))
		out[m.UID] = strings.TrimSpace(strings.TrimPrefix(h, "X-Mailchaos-Id:"))
	}
	return out, nil
}

func (u imapUser) appendMsg(mailbox, raw string) error {
	cmd := u.Append(mailbox, int64(len(raw)), nil)
	if _, err := cmd.Write([]byte(raw)); err != nil {
		return err
	}
	if err := cmd.Close(); err != nil {
		return err
	}
	_, err := cmd.Wait()
	return err
}

// TestAccountingReadsExternalMailboxes runs a load against an embedded
// stack described as an external target, so that the invariants are
// checked over IMAP, by header search, as on any real stack. While the
// load runs, the test takes one delivered message away, moves another
// into the quarantine mailbox, delivers a third twice and adds an
// infected message with the run's id: each invariant fails and names
// what broke it, the quarantined message counts as found. A second run
// with cleanup passes and leaves none of its messages behind, but
// removes nothing else: the first run's messages and a message whose id
// only contains its run ID stay.
func TestAccountingReadsExternalMailboxes(t *testing.T) {
	t.Parallel()
	_, imapAddr, target := externalStack(t)
	alice := loginAs(t, imapAddr, "alice@example.test")
	require.NoError(t, alice.Create("Quarantine", nil).Wait())

	// The broken run.
	e := accountingExperiment(t, target, "accounting: { wait: 2s }\n")
	// The test's own session, opened here: the goroutine below must not
	// fail the test itself.
	tamper := loginAs(t, imapAddr, "alice@example.test")
	tampered := make(chan string, 1)
	go func() {
		defer close(tampered)
		if which, err := breakMailbox(tamper, "acct-broken-s0-"); err == nil {
			tampered <- which
		}
	}()
	res, evs := runWith(t, e, "acct-broken")
	which := strings.Split(<-tampered, "|")
	require.Len(t, which, 3, "the messages were tampered with")
	gone, moved, twice := which[0], which[1], which[2]
	require.Equal(t, journal.StatusFailed, res.Status)
	inv := invariantResults(evs)
	require.Len(t, inv, 3)
	for name, ev := range inv {
		require.False(t, *ev.Passed, "%s: %s", name, ev.Measured)
		t.Logf("%s: %s", name, ev.Measured)
		require.Regexp(t, `^accepted [1-9]\d*, found \d+, missing 1, quarantined 1, duplicated 1, infected 1 \(\d+ sent; not accepted`, ev.Measured)
	}
	require.Contains(t, inv["no-mail-lost"].Measured, "still missing after waiting 2s: "+gone+" (to alice@example.test)")
	require.NotContains(t, inv["no-mail-lost"].Measured, moved, "a quarantined message is not lost")
	require.Contains(t, inv["no-duplicates"].Measured, "delivered more than once: "+twice+" (2 copies)")
	require.Contains(t, inv["infected-never-delivered"].Measured, "acct-broken-s0-999999 in alice@example.test (Win.Test.EICAR_HDB-1)")

	// A message whose id only contains the next run's ID.
	require.NoError(t, alice.appendMsg("INBOX", "X-Mailchaos-Id: xacct-clean-s0-1\r\nSubject: another run\r\n\r\nhello\r\n"))
	e = accountingExperiment(t, target, "accounting: { cleanup: true }\n")
	res, evs = runWith(t, e, "acct-clean")
	require.Equal(t, journal.StatusCompleted, res.Status, "%v", failedAssertions(evs))
	for name, ev := range invariantResults(evs) {
		t.Logf("%s: %s", name, ev.Measured)
		require.True(t, *ev.Passed, "%s: %s", name, ev.Measured)
		require.Regexp(t, `^accepted ([1-9]\d*), found \d+, missing 0, quarantined 0, duplicated 0, infected 0 `, ev.Measured)
	}
	var cleanup string
	for _, ev := range evs {
		if ev.Type == journal.TypeLog && strings.HasPrefix(ev.Message, "accounting cleanup") {
			require.Empty(t, ev.Err)
			cleanup = ev.Message
		}
	}
	require.Regexp(t, `removed [1-9]\d* messages of run acct-clean`, cleanup)
	for _, user := range []string{"alice@example.test", "bob@example.test"} {
		u := loginAs(t, imapAddr, user)
		for _, id := range u.ids(t, "acct-clean-") {
			require.False(t, strings.HasPrefix(id, "acct-clean-"), "cleanup left %s in %s", id, user)
		}
		if user == "alice@example.test" {
			left := u.ids(t, "acct-")
			vals := map[string]bool{}
			for _, id := range left {
				vals[id] = true
			}
			require.True(t, vals["xacct-clean-s0-1"], "a message of another run was removed")
			require.True(t, vals[twice], "the first run's messages stay")
		}
	}
}

// breakMailbox waits for three messages whose id contains prefix, then
// takes the first away, moves the second into Quarantine, delivers the
// third again and adds an infected message with the prefix. It returns
// the three ids, joined by |.
func breakMailbox(u imapUser, prefix string) (string, error) {
	deadline := time.Now().Add(waitForDelivery)
	for {
		ids, err := u.find(prefix)
		if err != nil {
			return "", err
		}
		if len(ids) >= 3 {
			var uids []imap.UID
			for uid := range ids {
				uids = append(uids, uid)
			}
			gone, moved, twice := uids[0], uids[1], uids[2]
			raw, err := u.Fetch(imap.UIDSetNum(twice), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
			if err != nil {
				return "", err
			}
			if len(raw) != 1 || len(raw[0].BodySection) != 1 {
				return "", fmt.Errorf("fetched %d messages", len(raw))
			}
			if err := u.appendMsg("INBOX", string(raw[0].BodySection[0].Bytes)); err != nil {
				return "", err
			}
			if _, err := u.Move(imap.UIDSetNum(moved), "Quarantine").Wait(); err != nil {
				return "", err
			}
			if err := u.Store(imap.UIDSetNum(gone), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
				return "", err
			}
			if err := u.UIDExpunge(imap.UIDSetNum(gone)).Close(); err != nil {
				return "", err
			}
			if err := u.appendMsg("INBOX", "X-Mailchaos-Id: "+prefix+"999999\r\nSubject: infected\r\n\r\n"+clamd.EICAR+"\r\n"); err != nil {
				return "", err
			}
			return ids[gone] + "|" + ids[moved] + "|" + ids[twice], nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("only %d messages delivered", len(ids))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitForDelivery bounds how long the test waits for the load's first
// messages to be delivered.
const waitForDelivery = 30 * time.Second

// TestInvariantsOnATargetFileNameWhatItLacks: a target file without an
// imap endpoint or users cannot have its mailboxes read: the error is at
// the invariants and names the file and what to add.
func TestInvariantsOnATargetFileNameWhatItLacks(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := dir + "/target.yaml"
	require.NoError(t, os.WriteFile(file, []byte("endpoints: { smtp: \"127.0.0.1:25\" }\n"), 0o600))
	src := `version: 1
title: t
target: { kind: external, file: ` + file + ` }
steady-state:
  - { name: up, probe: tcp, params: { endpoint: smtp }, tolerance: { max: 1s } }
method:
  - { fault: load-surge, for: 3s }
recovery: { within: 1s }
invariants: [no-mail-lost]
`
	_, err := experiments.Parse(context.Background(), "t.yaml", []byte(src), builtinCatalog(t))
	require.ErrorContains(t, err, "t.yaml:9:1: invariants: the target file "+file+" has no endpoints.imap: invariants on an external target read the users' mailboxes back over IMAP")
	require.ErrorContains(t, err, "t.yaml:9:1: invariants: the target file "+file+" has no users: ")
}

// TestInterruptedRunStillCleansUp: a run interrupted while its load runs
// does no accounting, but with accounting.cleanup it still removes, once
// its faults are rolled back, the messages of the run delivered by then;
// the journal says what may still arrive and how to find it.
func TestInterruptedRunStillCleansUp(t *testing.T) {
	t.Parallel()
	_, imapAddr, target := externalStack(t)
	// The load would last a minute: the signal comes while it runs, on
	// however busy a machine.
	e := accountingExperimentFor(t, target, "accounting: { cleanup: true }\n", "60s")
	watch := loginAs(t, imapAddr, "alice@example.test")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The signal comes once some of the run's messages are in alice's
	// INBOX: seen gets them (nil if none came in time).
	seen := make(chan map[imap.UID]string, 1)
	go func() {
		defer cancel()
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) && ctx.Err() == nil {
			if err := watch.Noop().Wait(); err != nil {
				break
			}
			if ids, err := watch.find("acct-stop-s0-"); err == nil && len(ids) >= 3 {
				seen <- ids
				return
			}
			time.Sleep(50 * time.Millisecond) // polling a mailbox: nothing to wait on
		}
		seen <- nil
	}()
	var buf bytes.Buffer
	res := experiments.Run(ctx, e, experiments.Options{Catalog: builtinCatalog(t), Journal: journal.NewWriter(&buf, "acct-stop"), RunID: "acct-stop"})
	ids := <-seen
	require.NotNil(t, ids, "no message of the run was delivered in time")
	require.Equal(t, journal.StatusInterrupted, res.Status, res.Message)
	evs, err := journal.Read(&buf)
	require.NoError(t, err)
	require.Empty(t, journal.Outstanding(evs))
	require.Empty(t, invariantResults(evs), "an interrupted run does no accounting")
	var cleanup journal.Event
	for _, ev := range evs {
		if ev.Type == journal.TypeLog && strings.HasPrefix(ev.Message, "accounting cleanup") {
			cleanup = ev
		}
	}
	require.Empty(t, cleanup.Err)
	m := regexp.MustCompile(`^accounting cleanup: removed (\d+) messages of run acct-stop from the users' mailboxes \(accounting did not finish: .* starts with acct-stop-\)$`).FindStringSubmatch(cleanup.Message)
	require.NotNil(t, m, cleanup.Message)
	n, err := strconv.Atoi(m[1])
	require.NoError(t, err)
	require.GreaterOrEqual(t, n, len(ids), cleanup.Message)
	alice := loginAs(t, imapAddr, "alice@example.test")
	left := alice.ids(t, "acct-stop-")
	for uid, id := range ids {
		_, ok := left[uid]
		require.False(t, ok, "%s (UID %d) was delivered before the stop and is still there", id, uid)
	}
}
