package targets_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mailchaos/mailchaos/clamd"
	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/avlatency"
	"github.com/mailchaos/mailchaos/faults/grayfailure"
	"github.com/mailchaos/mailchaos/faults/network"
	"github.com/mailchaos/mailchaos/targets"
	"github.com/mailchaos/mailchaos/targets/mailstack"
	"github.com/mailchaos/mailchaos/targets/proxy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestIsLoopback(t *testing.T) {
	for host, want := range map[string]bool{"127.0.0.1": true, "127.3.4.5": true, "::1": true, "[::1]": true,
		"localhost": true, "LOCALHOST": true, "10.0.0.1": false, "192.0.2.1": false, "mx.example.com": false, "": false} {
		require.Equal(t, want, targets.IsLoopback(host), host)
	}
}

func TestParseFile(t *testing.T) {
	f, err := targets.ParseFile("t.yaml", []byte(`
name: lab
endpoints:
  smtp: 127.0.0.1:25
  imap: "[::1]:143"
users: [alice@example.test]
links:
  - name: av-engine-1
    listen: 127.0.0.1:13310
    upstream: 127.0.0.1:3310
`), false)
	require.NoError(t, err)
	tg := f.Target()
	require.Equal(t, "127.0.0.1:25", tg.Endpoints["smtp"])
	require.Equal(t, []faults.Link{{Name: "av-engine-1", Listen: "127.0.0.1:13310", Upstream: "127.0.0.1:3310"}}, tg.Links)
	require.Equal(t, []faults.User{{Address: "alice@example.test"}}, tg.Users)

	for _, tt := range []struct{ yaml, want string }{
		{"endpoints:\n  smtp: 192.0.2.1:25\n", "t.yaml:2:3: endpoints.smtp: 192.0.2.1:25 is not a loopback address"},
		{"endpoints:\n  smtp: 127.0.0.1\n", `t.yaml:2:3: endpoints.smtp: "127.0.0.1" is not a host:port address`},
		{"linkz: []\n", `t.yaml:1:1: linkz: unknown field "linkz"`},
		{"links:\n  - name: a.b\n    upstream: 127.0.0.1:1\n    listen: 127.0.0.1:2\n", "links[0].name: \"a.b\": a link name cannot contain dots"},
		{"links:\n  - name: a\n    listen: 127.0.0.1:2\n", "t.yaml:2:5: links[0].upstream: required"},
		{"name: x\n", "endpoints: a target needs endpoints or links"},
	} {
		_, err := targets.ParseFile("t.yaml", []byte(tt.yaml), false)
		require.ErrorContains(t, err, tt.want)
	}
	// Off loopback needs both the file's and the caller's consent.
	remote := "allow_remote: true\nendpoints:\n  smtp: 192.0.2.1:25\n"
	_, err = targets.ParseFile("t.yaml", []byte(remote), false)
	require.ErrorContains(t, err, "not a loopback address")
	_, err = targets.ParseFile("t.yaml", []byte(remote), true)
	require.NoError(t, err)
	_, err = targets.ParseFile("t.yaml", []byte("endpoints:\n  smtp: 192.0.2.1:25\n"), true)
	require.ErrorContains(t, err, "not a loopback address")
}

func TestParseFileUsers(t *testing.T) {
	f, err := targets.ParseFile("t.yaml", []byte(`
endpoints: {smtp: 127.0.0.1:25, imap: 127.0.0.1:143}
users:
  - alice@example.test
  - address: tester@realstack.test
    login: tester
    password: tester-pass
  - {address: bob@example.test}
`), false)
	require.NoError(t, err)
	require.Equal(t, []faults.User{
		{Address: "alice@example.test"},
		{Address: "tester@realstack.test", Login: "tester", Password: "tester-pass"},
		{Address: "bob@example.test"},
	}, f.Target().Users)
	u := f.Target().Users
	require.Equal(t, []string{"alice@example.test", "tester", "bob@example.test"}, []string{u[0].LoginName(), u[1].LoginName(), u[2].LoginName()})
	require.Equal(t, []string{"password", "tester-pass", "password"}, []string{u[0].Secret(), u[1].Secret(), u[2].Secret()})

	const head = "endpoints: {smtp: 127.0.0.1:25}\nusers:\n"
	for _, tt := range []struct{ yaml, want string }{
		{"  - address: tester@realstack.test\n    logn: tester\n",
			`t.yaml:4:5: users[0].logn: unknown field "logn"; valid fields here: address, login, password; did you mean "login"?`},
		{"  - alice@example.test\n  - address: not an address\n    login: tester\n",
			`t.yaml:4:5: users[1].address: "not an address" is not a plain e-mail address such as alice@example.test`},
		{"  - Alice <alice@example.test>\n", `t.yaml:3:5: users[0].address: "Alice <alice@example.test>" is not a plain e-mail address`},
		{"  - login: tester\n", "t.yaml:3:5: users[0].address: required: the user's e-mail address"},
		{"  - {address: a@example.test, login: a b}\n", `t.yaml:3:31: users[0].login: "a b" is not a log-in name`},
		{"  - a@example.test\n  - A@example.test\n", "t.yaml:4:5: users[1].address: user A@example.test is listed twice"},
		{"  - [a@example.test]\n", "t.yaml:3:5: users[0]: cannot use a list here: want a string or a mapping"},
	} {
		_, err := targets.ParseFile("t.yaml", []byte(head+tt.yaml), false)
		require.ErrorContains(t, err, tt.want, tt.yaml)
	}
}

func TestFileUserJSON(t *testing.T) {
	var users []targets.FileUser
	require.NoError(t, json.Unmarshal([]byte(`["a@example.test", {"address": "t@example.test", "login": "t"}]`), &users))
	require.Equal(t, []targets.FileUser{{Address: "a@example.test"}, {Address: "t@example.test", Login: "t"}}, users)
	b, err := json.Marshal(targets.FileUser{Address: "t@example.test", Login: "t", Password: "secret"})
	require.NoError(t, err)
	require.JSONEq(t, `{"address": "t@example.test", "login": "t"}`, string(b), "passwords stay out of journals")
	require.Error(t, json.Unmarshal([]byte(`[1]`), &users))
}

func startStack(t *testing.T) *targets.Running {
	t.Helper()
	cfg := mailstack.DefaultConfig()
	cfg.SMTP.Listen, cfg.IMAP.Listen, cfg.Metrics.Listen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Scan.Timeout = 300 * time.Millisecond
	r, err := targets.StartMailstack(context.Background(), cfg, nil)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, r.Close(ctx))
	})
	return r
}

func send(t *testing.T, addr, id, body string) {
	t.Helper()
	c, err := smtp.Dial(addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.Hello("test"))
	require.NoError(t, c.Mail("alice@example.test", nil))
	require.NoError(t, c.Rcpt("bob@example.test", nil))
	w, err := c.Data()
	require.NoError(t, err)
	_, err = fmt.Fprintf(w, "Subject: t\r\nMessage-ID: %s\r\n\r\n%s\r\n", id, body)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	require.NoError(t, c.Quit())
}

func final(t *testing.T, s *mailstack.Stack, id string) mailstack.Record {
	t.Helper()
	var rec mailstack.Record
	require.Eventually(t, func() bool {
		rs := s.MessagesByID(id)
		if len(rs) == 1 && rs[0].State.Final() {
			rec = rs[0]
			return true
		}
		return false
	}, 20*time.Second, 5*time.Millisecond)
	return rec
}

func TestEmbeddedStackHopsGoThroughTheProxy(t *testing.T) {
	r := startStack(t)
	names := r.Target.LinkNames()
	for _, want := range []string{targets.LinkSMTPIngress, "av-engine-1", "av-engine-2", "av-engine-3"} {
		require.Contains(t, names, want)
	}
	for _, l := range r.Target.Links {
		require.NotEqual(t, l.Listen, l.Upstream, "link %s is not proxied", l.Name)
		if l.Name == targets.LinkSMTPIngress {
			// Clients reach SMTP through the link: the endpoint is its
			// proxy side.
			require.Equal(t, r.Target.Endpoints["smtp"], l.Listen)
			continue
		}
		require.Equal(t, r.Target.Endpoints[l.Name], l.Upstream)
	}
	require.Equal(t, []faults.User{
		{Address: "alice@example.test", Login: "alice@example.test", Password: "password"},
		{Address: "bob@example.test", Login: "bob@example.test", Password: "password"},
	}, r.Target.Users, "the stack's users log in by their address")

	// A fault on the MTA → engine link changes what the stack does.
	inj := grayfailure.New()
	h, err := inj.Inject(context.Background(), faults.Request{ID: "g", Owner: "test", Target: r.Target,
		Links: []string{"av-engine-3"}, Params: faults.Params{"mode": "stall-after", "after": "0"}, TTL: time.Minute})
	require.NoError(t, err)
	send(t, r.Target.Endpoints["smtp"], "<stalled@test>", "hello")
	require.Eventually(t, func() bool {
		rs := r.Stack.MessagesByID("<stalled@test>")
		return len(rs) == 1 && rs[0].State == mailstack.StateDeferred
	}, 20*time.Second, 5*time.Millisecond, "a stalled engine link should get the message deferred")
	require.NoError(t, inj.Remove(context.Background(), h))
	require.Equal(t, mailstack.StateDelivered, final(t, r.Stack, "<stalled@test>").State, "mail flows again after removal")
	assertNoToxics(t, r.Target)
}

func TestAVLatencyOnTheEmbeddedStackSlowsOnlyInfectedScans(t *testing.T) {
	r := startStack(t)
	inj := avlatency.New()
	h, err := inj.Inject(context.Background(), faults.Request{ID: "a", Owner: "test", Target: r.Target,
		Links: []string{"av-engine-2"}, Params: faults.Params{"latency": "5s"}, TTL: time.Minute})
	require.NoError(t, err)
	send(t, r.Target.Endpoints["smtp"], "<clean@test>", "hello")
	send(t, r.Target.Endpoints["smtp"], "<infected@test>", clamd.EICAR)
	clean := final(t, r.Stack, "<clean@test>")
	require.Equal(t, mailstack.StateDelivered, clean.State)
	require.Zero(t, clean.Deferrals)
	inf := final(t, r.Stack, "<infected@test>")
	require.Equal(t, mailstack.StateQuarantined, inf.State)
	// The slow engine's scan hit the 300 ms scan timeout; the others found the virus.
	require.GreaterOrEqual(t, inf.Finished.Sub(inf.Accepted), 300*time.Millisecond)
	require.NoError(t, inj.Remove(context.Background(), h))
	assertNoToxics(t, r.Target)
}

func assertNoToxics(t *testing.T, tg faults.Target) {
	t.Helper()
	ps, err := network.NewClient(tg.Toxiproxy).Proxies(context.Background())
	require.NoError(t, err)
	for name, p := range ps {
		require.Empty(t, p.Toxics, "link %s still has toxics", name)
	}
}

func TestOpenCreatesMissingLinksAndChecksExistingOnes(t *testing.T) {
	srv, err := proxy.StartServer(context.Background(), "127.0.0.1:0", nil)
	require.NoError(t, err)
	defer srv.Close()
	_, err = srv.Link(context.Background(), "a", "127.0.0.1:0", "127.0.0.1:1")
	require.NoError(t, err)
	f := targets.File{Toxiproxy: srv.URL(), Links: []targets.FileLink{
		{Name: "a", Upstream: "127.0.0.1:1"}, {Name: "b", Listen: "127.0.0.1:0", Upstream: "127.0.0.1:2"}}}
	r, err := targets.Open(context.Background(), f, "", nil)
	require.NoError(t, err)
	require.NoError(t, r.Close(context.Background()))
	for _, l := range r.Target.Links {
		require.True(t, strings.HasPrefix(l.Listen, "127.0.0.1:") && !strings.HasSuffix(l.Listen, ":0"), l.Listen)
	}
	f.Links[0].Upstream = "127.0.0.1:3"
	_, err = targets.Open(context.Background(), f, "", nil)
	require.ErrorContains(t, err, "forwards to 127.0.0.1:1, the target file says 127.0.0.1:3")
}

// TestOpenLinksOnManyServers: each link is created on its own server; an
// in-process server is started only for links that name none; the
// target's server is one of the links' when every link names its own.
func TestOpenLinksOnManyServers(t *testing.T) {
	ctx := context.Background()
	var srvs []*proxy.Server
	for range 2 {
		s, err := proxy.StartServer(ctx, "127.0.0.1:0", nil)
		require.NoError(t, err)
		defer s.Close()
		srvs = append(srvs, s)
	}
	f := targets.File{Links: []targets.FileLink{
		{Name: "a", Listen: "127.0.0.1:0", Upstream: "127.0.0.1:1"},
		{Name: "b", Listen: "127.0.0.1:0", Upstream: "127.0.0.1:2", Toxiproxy: srvs[0].URL()},
		{Name: "c", Listen: "127.0.0.1:0", Upstream: "127.0.0.1:3", Toxiproxy: srvs[1].URL()}}}
	r, err := targets.Open(ctx, f, "", nil)
	require.NoError(t, err)
	inProcess := r.Target.Toxiproxy
	require.NotContains(t, []string{srvs[0].URL(), srvs[1].URL()}, inProcess, "link a names no server: an in-process one")
	require.Equal(t, []string{inProcess, srvs[0].URL(), srvs[1].URL()}, r.Target.Servers())
	for i, s := range srvs {
		ps, err := s.Client().Proxies(ctx)
		require.NoError(t, err)
		require.Len(t, ps, 1, "server %d", i)
		require.Contains(t, ps, []string{"b", "c"}[i])
	}
	require.NoError(t, r.Close(ctx))

	// Every link on a server of its own: no in-process server.
	f.Links = f.Links[1:]
	r, err = targets.Open(ctx, f, "", nil)
	require.NoError(t, err)
	require.Equal(t, srvs[0].URL(), r.Target.Toxiproxy)
	require.Equal(t, []string{srvs[0].URL(), srvs[1].URL()}, r.Target.Servers())
	require.NoError(t, r.Close(ctx))
	require.Equal(t, srvs[0].URL(), targets.Spec{File: f}.Describe().Toxiproxy, "validation sees the same server")
}

// TestOpenRefusesAnUnreachableServer: a server that does not answer fails
// Open before any link is created on the others, naming it and its links.
func TestOpenRefusesAnUnreachableServer(t *testing.T) {
	ctx := context.Background()
	s, err := proxy.StartServer(ctx, "127.0.0.1:0", nil)
	require.NoError(t, err)
	defer s.Close()
	dead, err := proxy.StartServer(ctx, "127.0.0.1:0", nil)
	require.NoError(t, err)
	deadURL := dead.URL()
	dead.Close()
	f := targets.File{Toxiproxy: s.URL(), Links: []targets.FileLink{
		{Name: "a", Listen: "127.0.0.1:0", Upstream: "127.0.0.1:1"},
		{Name: "b", Listen: "127.0.0.1:0", Upstream: "127.0.0.1:2", Toxiproxy: deadURL},
		{Name: "c", Listen: "127.0.0.1:0", Upstream: "127.0.0.1:3", Toxiproxy: deadURL}}}
	_, err = targets.Open(ctx, f, "", nil)
	require.ErrorContains(t, err, "toxiproxy at "+deadURL+" (links b, c) does not answer")
	ps, err := s.Client().Proxies(ctx)
	require.NoError(t, err)
	require.Empty(t, ps, "nothing may be created before every server answers")
}
