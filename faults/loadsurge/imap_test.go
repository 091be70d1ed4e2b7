package loadsurge_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/loadsurge"
	"github.com/mailchaos/mailchaos/internal/testnet"
	"github.com/mailchaos/mailchaos/targets"
	"github.com/mailchaos/mailchaos/targets/mailstack"
)

// startIMAP starts a run and stops it when the test ends.
func startIMAP(t testing.TB, cfg loadsurge.IMAPConfig) *loadsurge.IMAPRun {
	t.Helper()
	r, err := loadsurge.StartIMAP(context.Background(), cfg)
	return started(t, r, err)
}

// waitIMAP waits for the run to end, failing the test after waitFor.
func waitIMAP(t testing.TB, r *loadsurge.IMAPRun) loadsurge.IMAPResult { return awaitRun(t, r, r.Wait) }

// requireIMAPBalanced checks that every scheduled session has exactly one
// outcome and that the figures add up.
func requireIMAPBalanced(t testing.TB, res loadsurge.IMAPResult) {
	t.Helper()
	require.True(t, res.Done)
	var failed int64
	for o := loadsurge.IMAPConnect; o <= loadsurge.IMAPCut; o++ {
		failed += res.Count(o)
	}
	require.Equal(t, failed, res.Failed, "failed = the sum of the kinds: %s", res)
	require.Equal(t, res.Succeeded+res.Failed, res.Attempted, "attempted = succeeded + failed: %s", res)
	require.Equal(t, res.Scheduled, res.Attempted+res.Unsent, "scheduled = attempted + unsent: %s", res)
	require.Zero(t, res.InFlight)
	require.Zero(t, res.Backlog)
}

// stack starts the embedded mail stack (with its toxiproxy links, as
// mailchaos runs it) and delivers n messages to each user's INBOX.
func stack(t testing.TB, n int) *targets.Running {
	t.Helper()
	cfg := mailstack.DefaultConfig()
	cfg.SMTP.Listen, cfg.IMAP.Listen, cfg.Metrics.Listen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	r, err := targets.StartMailstack(context.Background(), cfg, nil)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		require.NoError(t, r.Close(ctx))
	})
	if n > 0 {
		users := r.Target.Addresses()
		run, err := loadsurge.Start(context.Background(), loadsurge.Config{Addr: r.Target.Endpoints["smtp"],
			Count: int64(n * len(users)), Concurrency: 1, Rcpts: users, Size: loadsurge.SizeRange{Min: 1000, Max: 1000}})
		require.NoError(t, err)
		res := wait(t, run)
		require.EqualValues(t, n*len(users), res.Accepted, res.String())
		require.Eventually(t, func() bool { return r.Stack.Counts().Delivered == n*len(users) }, waitFor, 5*time.Millisecond,
			"delivered: %+v", r.Stack.Counts())
	}
	return r
}

// memOpts say how a recording IMAP server behaves.
type memOpts struct {
	// Messages is how many messages each user's INBOX holds.
	Messages int
	// Bye greets every connection with BYE.
	Bye bool
	// FailFetch refuses every FETCH with NO.
	FailFetch bool
	// Plain serves the in-memory sessions as they are, recording nothing
	// (and advertising IMAP4rev2 too): the bare server, for benchmarks.
	Plain bool
	// Users are the accounts (log-in name and password); default the
	// DefaultRcpts with the password "password".
	Users []faults.User
}

// memServer is go-imap's imapserver over its in-memory backend, on
// loopback, with users alice@example.test and bob@example.test (password
// "password"), whose sessions record what the clients did.
type memServer struct {
	addr string

	mu      sync.Mutex
	logins  map[string]int // successful LOGINs by user
	selects map[string]int // SELECTs by mailbox
	fetches map[string]int // FETCHes by sequence set
	envOnly int            // FETCHes that asked for the envelope and nothing else
	closed  int            // sessions ended
}

func startMem(t testing.TB, o memOpts) *memServer {
	t.Helper()
	mem := imapmemserver.New()
	users := o.Users
	if len(users) == 0 {
		for _, name := range loadsurge.DefaultRcpts() {
			users = append(users, faults.User{Address: name, Password: "password"})
		}
	}
	for _, acct := range users {
		name := acct.LoginName()
		u := imapmemserver.NewUser(name, acct.Secret())
		require.NoError(t, u.Create("INBOX", nil))
		for i := range o.Messages {
			msg := fmt.Sprintf("From: a@example.test\r\nTo: %s\r\nSubject: m%d\r\nMessage-ID: <%d@test>\r\n\r\nbody\r\n", name, i, i)
			_, err := u.Append("INBOX", bytes.NewReader([]byte(msg)), &imap.AppendOptions{Time: time.Now()})
			require.NoError(t, err)
		}
		mem.AddUser(u)
	}
	s := &memServer{logins: map[string]int{}, selects: map[string]int{}, fetches: map[string]int{}}
	// IMAP4rev1 only unless plain: the recorder hides the session's
	// IMAP4rev2 methods.
	caps := imap.CapSet{imap.CapIMAP4rev1: {}}
	if o.Plain {
		caps[imap.CapIMAP4rev2] = struct{}{}
	}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			switch {
			case o.Bye:
				return nil, nil, &imap.Error{Type: imap.StatusResponseTypeBye, Text: "go away"}
			case o.Plain:
				return mem.NewSession(), nil, nil
			}
			return &recSession{Session: mem.NewSession(), s: s, o: o}, nil, nil
		},
		Caps:         caps,
		InsecureAuth: true,
		Logger:       log.New(io.Discard, "", 0),
	})
	s.addr = testnet.Run(t, srv)
	return s
}

// locked runs f under the server's lock.
func (s *memServer) locked(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
}

// recSession is a memory session that records what its client did.
type recSession struct {
	imapserver.Session
	s    *memServer
	o    memOpts
	user string
}

func (r *recSession) Login(user, password string) error {
	if err := r.Session.Login(user, password); err != nil {
		return err
	}
	r.user = user
	r.s.locked(func() { r.s.logins[user]++ })
	return nil
}

func (r *recSession) Select(mailbox string, options *imap.SelectOptions) (*imap.SelectData, error) {
	r.s.locked(func() { r.s.selects[mailbox]++ })
	return r.Session.Select(mailbox, options)
}

func (r *recSession) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	only := options.Envelope && !options.Flags && !options.UID && len(options.BodySection) == 0 && options.BodyStructure == nil
	r.s.locked(func() {
		r.s.fetches[numSet.String()]++
		if only {
			r.s.envOnly++
		}
	})
	if r.o.FailFetch {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Text: "cannot fetch now"}
	}
	return r.Session.Fetch(w, numSet, options)
}

func (r *recSession) Close() error {
	r.s.locked(func() { r.s.closed++ })
	return r.Session.Close()
}

func TestIMAPClosedLoopAgainstMailstack(t *testing.T) {
	t.Parallel()
	st := stack(t, 3)
	r := startIMAP(t, loadsurge.IMAPConfig{Addr: st.Target.Endpoints["imap"], Count: 60, Concurrency: 4,
		Users: st.Target.Addresses(), RunID: "closed-imap"})
	res := waitIMAP(t, r)
	requireIMAPBalanced(t, res)
	requireClosedLoop(t, res.RunFigures, 60)
	require.EqualValues(t, 60, res.Succeeded, res.String())
	require.Contains(t, res.String(), "load-surge closed-imap (imap, closed loop, done)")
	require.Contains(t, res.String(), "60 succeeded, 0 failed")
}

func TestIMAPOpenLoopCountsAgainstMailstack(t *testing.T) {
	t.Parallel()
	st := stack(t, 0)
	r := startIMAP(t, loadsurge.IMAPConfig{Addr: st.Target.Endpoints["imap"], Schedule: loadsurge.Constant(100),
		Duration: time.Second, Concurrency: 8, Users: st.Target.Addresses(),
		Grace: waitFor}) // however busy the machine, every due session runs
	res := waitIMAP(t, r)
	requireIMAPBalanced(t, res)
	require.False(t, res.ClosedLoop)
	// Sessions 0..99 are due in [0, 1s): the count is exact, not a rate.
	require.EqualValues(t, 100, res.Scheduled, res.String())
	require.EqualValues(t, 100, res.Succeeded, res.String())
	require.GreaterOrEqual(t, res.Duration, time.Second)
	require.Contains(t, res.String(), "lag (start - schedule)")
}

func TestIMAPSessionSteps(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		messages, fetch int
		want            string // the sequence set fetched
	}{
		{7, 5, "3:7"},
		{2, 5, "1:2"},
		{1, 1, "1"},
		{0, 5, ""},
	} {
		t.Run(fmt.Sprintf("%d messages, fetch %d", tc.messages, tc.fetch), func(t *testing.T) {
			s := startMem(t, memOpts{Messages: tc.messages})
			users := []string{"alice@example.test", "bob@example.test", "bob@example.test"}
			r := startIMAP(t, loadsurge.IMAPConfig{Addr: s.addr, Count: 30, Concurrency: 3, Users: users, Fetch: tc.fetch})
			res := waitIMAP(t, r)
			requireIMAPBalanced(t, res)
			require.EqualValues(t, 30, res.Succeeded, res.String())
			s.locked(func() {
				require.Equal(t, map[string]int{"alice@example.test": 10, "bob@example.test": 20}, s.logins, "sessions go round the users")
				require.Equal(t, map[string]int{"INBOX": 30}, s.selects)
				if tc.want == "" {
					require.Empty(t, s.fetches, "nothing to fetch in an empty mailbox")
				} else {
					require.Equal(t, map[string]int{tc.want: 30}, s.fetches)
					require.Equal(t, 30, s.envOnly, "envelopes only")
				}
			})
			require.Eventually(t, func() bool {
				n := 0
				s.locked(func() { n = s.closed })
				return n == 30
			}, waitFor, time.Millisecond, "every session ends")
		})
	}
}

func TestIMAPFailureKinds(t *testing.T) {
	t.Parallel()
	st := stack(t, 1)
	imapAddr := st.Target.Endpoints["imap"]
	for _, tc := range []struct {
		name string
		addr func(t *testing.T) string
		cfg  loadsurge.IMAPConfig
		want loadsurge.IMAPOutcome
	}{
		{"wrong password", func(*testing.T) string { return imapAddr }, loadsurge.IMAPConfig{Password: "wrong"}, loadsurge.IMAPLogin},
		{"unknown user", func(*testing.T) string { return imapAddr }, loadsurge.IMAPConfig{Users: []string{"nobody@example.test"}}, loadsurge.IMAPLogin},
		{"no such mailbox", func(*testing.T) string { return imapAddr }, loadsurge.IMAPConfig{Mailbox: "Nope"}, loadsurge.IMAPSelect},
		{"fetch refused", func(t *testing.T) string { return startMem(t, memOpts{Messages: 3, FailFetch: true}).addr },
			loadsurge.IMAPConfig{}, loadsurge.IMAPFetch},
		{"nothing listens", func(t *testing.T) string { return testnet.FreeAddr(t) }, loadsurge.IMAPConfig{}, loadsurge.IMAPConnect},
		{"greeted with BYE", func(t *testing.T) string { return startMem(t, memOpts{Bye: true}).addr }, loadsurge.IMAPConfig{}, loadsurge.IMAPGreeting},
		{"hung up at once", func(t *testing.T) string { return testnet.Serve(t, func(context.Context, net.Conn) {}).Addr }, loadsurge.IMAPConfig{}, loadsurge.IMAPGreeting},
		{"never greets", func(t *testing.T) string { return silentServer(t) },
			loadsurge.IMAPConfig{Timeout: 100 * time.Millisecond}, loadsurge.IMAPTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Addr, cfg.Count, cfg.Concurrency = tc.addr(t), 12, 3
			r := startIMAP(t, cfg)
			res := waitIMAP(t, r)
			requireIMAPBalanced(t, res)
			require.EqualValues(t, 12, res.Count(tc.want), "every session fails with %s: %s", tc.want, res)
			require.EqualValues(t, 12, res.Failed, res.String())
			require.Zero(t, res.Latency.Max, "no success, no latency")
			require.Contains(t, res.String(), fmt.Sprintf("12 %s", tc.want))
		})
	}
}

func TestIMAPMixedOutcomesAddUp(t *testing.T) {
	t.Parallel()
	// One user in three cannot log in; the others fetch from the stack.
	st := stack(t, 2)
	users := []string{"alice@example.test", "nobody@example.test", "bob@example.test"}
	r := startIMAP(t, loadsurge.IMAPConfig{Addr: st.Target.Endpoints["imap"], Schedule: loadsurge.Constant(200),
		Duration: 450 * time.Millisecond, Users: users, Concurrency: 6, Grace: waitFor})
	res := waitIMAP(t, r)
	requireIMAPBalanced(t, res)
	require.EqualValues(t, 90, res.Scheduled, res.String())
	require.EqualValues(t, 30, res.Login, res.String())
	require.EqualValues(t, 60, res.Succeeded, res.String())
}

func TestIMAPStopIsGraceful(t *testing.T) {
	t.Parallel()
	s := startMem(t, memOpts{Messages: 1})
	r := startIMAP(t, loadsurge.IMAPConfig{Addr: s.addr, Schedule: loadsurge.Constant(100), Duration: time.Hour})
	require.Eventually(t, func() bool { return r.Snapshot().Succeeded >= 10 }, waitFor, time.Millisecond)
	requireStops(t, r)
	res := r.Wait()
	requireIMAPBalanced(t, res)
	require.Less(t, res.Duration, time.Hour)
	s.locked(func() {
		require.EqualValues(t, res.Succeeded, s.logins["alice@example.test"]+s.logins["bob@example.test"])
	})
}

func TestStartIMAPRejectsBadConfig(t *testing.T) {
	t.Parallel()
	for _, cfg := range []loadsurge.IMAPConfig{
		{},
		{Addr: "nowhere"},
		{Addr: "127.0.0.1:143", Concurrency: -1},
		{Addr: "127.0.0.1:143", Users: []string{"a b"}},
		{Addr: "127.0.0.1:143", Users: []string{""}},
		{Addr: "127.0.0.1:143", Fetch: -1},
		{Addr: "127.0.0.1:143", RunID: "has space"},
	} {
		_, err := loadsurge.StartIMAP(context.Background(), cfg)
		var ce *loadsurge.ConfigError
		require.ErrorAs(t, err, &ce, fmt.Sprintf("%+v", cfg))
	}
}

func TestIMAPOutcomeNames(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for o := loadsurge.IMAPSucceeded; o <= loadsurge.IMAPUnsent; o++ {
		require.NotContains(t, o.String(), "outcome(")
		require.False(t, seen[o.String()], o.String())
		seen[o.String()] = true
	}
}

func TestInjectIMAPAgainstMailstack(t *testing.T) {
	t.Parallel()
	// The defaults reach the embedded stack: its imap endpoint, its users
	// and their password.
	st := stack(t, 2)
	inj := loadsurge.New()
	ctx := context.Background()
	req := faults.Request{ID: "imap-1", Owner: "test", Fault: loadsurge.Name, TTL: time.Minute, Target: st.Target,
		Params: faults.Params{"protocol": "imap", "rate": "100/s", "concurrency": "4", "fetch": "2"}}
	require.NoError(t, inj.Validate(ctx, req))
	h, err := inj.Inject(ctx, req)
	require.NoError(t, err)
	t.Cleanup(func() { _ = inj.Remove(ctx, h) })
	require.Eventually(t, func() bool {
		s, err := inj.Status(ctx, h)
		return err == nil && s.Figures["succeeded"] >= 20
	}, waitFor, time.Millisecond)
	s, err := inj.Status(ctx, h)
	require.NoError(t, err)
	require.True(t, s.Active)
	require.Contains(t, s.Detail, "load-surge test-imap-1 (imap, open loop, running)")
	for _, k := range []string{"scheduled", "attempted", "succeeded", "failed", "connect", "greeting", "login", "select", "fetch",
		"logout", "timeout", "unsent", "in_flight", "backlog", "rate", "p50_ms", "p99_ms", "lag_p99_ms"} {
		require.Contains(t, s.Figures, k)
	}

	require.NoError(t, inj.Remove(ctx, h))
	s, err = inj.Status(ctx, h)
	require.NoError(t, err)
	require.False(t, s.Active)
	f := s.Figures
	require.Zero(t, f["failed"], s.Detail)
	require.Equal(t, f["attempted"], f["succeeded"], s.Detail)
	require.Equal(t, f["scheduled"], f["attempted"]+f["unsent"], s.Detail)
	require.Nil(t, inj.Accepted(h), "an IMAP run accepts no messages")
}
