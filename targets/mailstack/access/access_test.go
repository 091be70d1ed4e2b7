package access_test

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mailchaos/mailchaos/internal/testnet"
	"github.com/mailchaos/mailchaos/targets/mailstack/access"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitFor bounds every wait on a condition; generous for a busy machine.
const waitFor = 20 * time.Second

// store returns a mailbox store with alice@example.test / password.
func store(t testing.TB) *imapmemserver.Server {
	t.Helper()
	mem := imapmemserver.New()
	u := imapmemserver.NewUser("alice@example.test", "password")
	require.NoError(t, u.Create("INBOX", nil))
	mem.AddUser(u)
	return mem
}

// quietConfig is a tier on free ports with no active checks and no outlier
// ejection; tests turn on what they look at.
func quietConfig() access.Config {
	c := access.DefaultConfig()
	c.Health.Mode = access.HealthNone
	c.Passive.Enabled = false
	c.DrainGrace = waitFor
	return c
}

// startTier starts a tier and closes it when the test ends. interpose may
// be nil.
func startTier(t testing.TB, cfg access.Config, interpose access.Interpose) (*access.Tier, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	tier, err := access.New(cfg, access.Options{NewSession: store(t).NewSession, Registerer: reg})
	require.NoError(t, err)
	require.NoError(t, tier.Start(context.Background(), "127.0.0.1:0", interpose))
	t.Cleanup(func() { require.NoError(t, tier.Close()) })
	return tier, reg
}

// login logs in through addr with a real IMAP client; the client is closed
// when the test ends.
func login(t testing.TB, addr string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	require.NoError(t, c.Login("alice@example.test", "password").Wait())
	return c
}

// loginOnce logs in and out through addr.
func loginOnce(addr string) error {
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Login("alice@example.test", "password").Wait(); err != nil {
		return err
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		return err
	}
	return c.Logout().Wait()
}

// rawSession is an IMAP session spoken by hand, to see the exact lines.
type rawSession struct {
	c net.Conn
	r *bufio.Reader
}

func rawLogin(t testing.TB, addr string) *rawSession {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	s := &rawSession{c: c, r: bufio.NewReader(c)}
	require.True(t, strings.HasPrefix(s.line(t), "* OK"))
	_, err = c.Write([]byte("a1 LOGIN alice@example.test password\r\n"))
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(s.line(t), "a1 OK"))
	return s
}

func (s *rawSession) line(t testing.TB) string {
	t.Helper()
	require.NoError(t, s.c.SetReadDeadline(time.Now().Add(waitFor)))
	l, err := s.r.ReadString('\n')
	require.NoError(t, err)
	return l
}

func byName(t testing.TB, tier *access.Tier, name string) access.SiteStatus {
	t.Helper()
	st, err := tier.Site(name)
	require.NoError(t, err)
	return st
}

func sessionsPerSite(tier *access.Tier) map[string]int {
	m := map[string]int{}
	for _, s := range tier.Sites() {
		m[s.Name] = s.Sessions
	}
	return m
}

func TestLeastConnectionsSpreadsSessions(t *testing.T) {
	t.Parallel()
	tier, _ := startTier(t, quietConfig(), nil)
	for i := 0; i < 6; i++ {
		login(t, tier.Addr())
	}
	require.Equal(t, map[string]int{"site-a": 2, "site-b": 2, "site-c": 2}, sessionsPerSite(tier))
}

func TestRoundRobinTakesSitesInTurn(t *testing.T) {
	t.Parallel()
	cfg := quietConfig()
	cfg.Placement = access.PlacementRoundRobin
	tier, _ := startTier(t, cfg, nil)
	// One long session on site-a does not change the turn order.
	login(t, tier.Addr())
	for i := 0; i < 5; i++ {
		require.NoError(t, loginOnce(tier.Addr()))
	}
	for _, s := range tier.Sites() {
		require.Equal(t, uint64(2), s.Counters.Placements, s.Name)
	}
}

func TestDrainEndsSessionsWithBYEAndRestoreBringsTheSiteBack(t *testing.T) {
	t.Parallel()
	tier, reg := startTier(t, quietConfig(), nil)
	var held []*rawSession
	for i := 0; i < 6; i++ {
		held = append(held, rawLogin(t, tier.Addr()))
	}
	require.NoError(t, tier.Drain(context.Background(), "site-b"))
	st := byName(t, tier, "site-b")
	require.True(t, st.Draining)
	require.False(t, st.Usable)
	require.Zero(t, st.Sessions)
	require.Equal(t, uint64(2), st.Counters.Ended)
	require.Zero(t, st.Counters.Cut)

	// The two sessions on site-b got a BYE, then the connection closed;
	// the others go on.
	byes := 0
	for _, s := range held {
		_, err := s.c.Write([]byte("a2 NOOP\r\n"))
		require.NoError(t, err)
		l := s.line(t)
		if strings.HasPrefix(l, "* BYE") {
			byes++
			require.Contains(t, l, "maintenance")
			continue
		}
		require.True(t, strings.HasPrefix(l, "a2 OK"), l)
	}
	require.Equal(t, 2, byes)

	// No new session lands on the drained site.
	placed := st.Counters.Placements
	for i := 0; i < 10; i++ {
		require.NoError(t, loginOnce(tier.Addr()))
	}
	require.Equal(t, placed, byName(t, tier, "site-b").Counters.Placements)
	require.Equal(t, 1.0, value(t, reg, access.MetricSiteDraining, "site", "site-b"))

	// Draining again is harmless; restoring brings it back at once (no
	// active checks here), and least-connections sends it the next session.
	require.NoError(t, tier.Drain(context.Background(), "site-b"))
	require.NoError(t, tier.Restore("site-b"))
	require.True(t, byName(t, tier, "site-b").Usable)
	login(t, tier.Addr())
	require.Equal(t, 1, byName(t, tier, "site-b").Sessions)
}

func TestEverySiteDrainedRefusesWithBYE(t *testing.T) {
	t.Parallel()
	tier, reg := startTier(t, quietConfig(), nil)
	for _, n := range tier.SiteNames() {
		require.NoError(t, tier.Drain(context.Background(), n))
	}
	c, err := net.Dial("tcp", tier.Addr())
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(waitFor)))
	l, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(l, "* BYE no mailbox site available"), l)
	require.Equal(t, 1.0, value(t, reg, access.MetricRefused, "reason", access.RefusedNoUsableSite))
}

func TestUnknownSiteNamesTheValidOnes(t *testing.T) {
	t.Parallel()
	tier, _ := startTier(t, quietConfig(), nil)
	for _, err := range []error{tier.Drain(context.Background(), "site-x"), tier.Restore("site-x")} {
		var ue *access.UnknownSiteError
		require.True(t, errors.As(err, &ue), "%T", err)
		require.Equal(t, []string{"site-a", "site-b", "site-c"}, ue.Valid)
	}
	_, err := tier.Site("siteb")
	require.EqualError(t, err, `access: unknown site "siteb"; did you mean "site-b"? (sites: site-a, site-b, site-c)`)
}

// silentAddr returns the address of a server that accepts connections and
// never says anything, like a site behind a black hole.
func silentAddr(t testing.TB) string {
	return testnet.Serve(t, testnet.Hold).Addr
}

// routeSite sends the balancer's traffic for one site to addr.
func routeSite(site, addr string) access.Interpose {
	return func(_ context.Context, s, _, upstream string) (string, error) {
		if s == site {
			return addr, nil
		}
		return upstream, nil
	}
}

func TestShallowChecksMarkARefusingSiteUnhealthyAndSessionsGoElsewhere(t *testing.T) {
	t.Parallel()
	cfg := quietConfig()
	cfg.Health = access.HealthConfig{Mode: access.HealthShallow, Interval: 20 * time.Millisecond,
		Timeout: time.Second, HealthyThreshold: 1, UnhealthyThreshold: 2}
	tier, reg := startTier(t, cfg, routeSite("site-c", testnet.FreeAddr(t)))
	// Before the checks notice, a session placed on site-c fails to
	// connect and is placed on another site: every log-in succeeds.
	for i := 0; i < 6; i++ {
		require.NoError(t, loginOnce(tier.Addr()))
	}
	require.Eventually(t, func() bool { return !byName(t, tier, "site-c").Healthy }, waitFor, 10*time.Millisecond)
	require.True(t, byName(t, tier, "site-a").Healthy)
	require.Equal(t, 1.0, value(t, reg, access.MetricEjections, "site", "site-c", "by", access.ByHealthCheck))
	require.Equal(t, 0.0, value(t, reg, access.MetricSiteUsable, "site", "site-c"))
	placed := byName(t, tier, "site-c").Counters.Placements
	for i := 0; i < 6; i++ {
		require.NoError(t, loginOnce(tier.Addr()))
	}
	require.Equal(t, placed, byName(t, tier, "site-c").Counters.Placements, "sessions placed on an unhealthy site")
}

func TestDeepChecksMarkASilentSiteUnhealthy(t *testing.T) {
	t.Parallel()
	cfg := quietConfig()
	cfg.Health = access.HealthConfig{Mode: access.HealthDeep, Interval: 20 * time.Millisecond,
		Timeout: 200 * time.Millisecond, HealthyThreshold: 1, UnhealthyThreshold: 2,
		Login: &access.Login{Address: "alice@example.test", Password: "password"}}
	tier, _ := startTier(t, cfg, routeSite("site-b", silentAddr(t)))
	require.Eventually(t, func() bool { return !byName(t, tier, "site-b").Healthy }, waitFor, 10*time.Millisecond)
	// The real sites pass the deep check (LOGIN with the probe account);
	// a slow check on a busy machine may fail once, so wait for them.
	require.Eventually(t, func() bool {
		return byName(t, tier, "site-a").Healthy && byName(t, tier, "site-c").Healthy &&
			byName(t, tier, "site-a").Counters.Checks > 2
	}, waitFor, 10*time.Millisecond)
}

func TestPassiveEjectsASilentSiteRetriesItAndNeverLosesASession(t *testing.T) {
	t.Parallel()
	cfg := quietConfig()
	cfg.Passive = access.PassiveConfig{Enabled: true, Failures: 2, Slow: 500 * time.Millisecond,
		Ejection: 300 * time.Millisecond, MaxEjection: time.Second}
	tier, reg := startTier(t, cfg, routeSite("site-b", silentAddr(t)))
	// Sessions placed on the silent site get no greeting: each is placed
	// again elsewhere, and two in a row eject the site.
	for byName(t, tier, "site-b").Counters.Ejections < 1 {
		require.NoError(t, loginOnce(tier.Addr()))
	}
	require.True(t, byName(t, tier, "site-b").Ejected)
	require.GreaterOrEqual(t, value(t, reg, access.MetricSessionFailures,
		"site", "site-b", "kind", access.FailGreetingTimeout), 2.0)
	// Once the back-off is over the site is tried again, and the first
	// failure ejects it again.
	require.Eventually(t, func() bool {
		if err := loginOnce(tier.Addr()); err != nil {
			t.Log(err)
			return false
		}
		return byName(t, tier, "site-b").Counters.Ejections >= 2
	}, waitFor, 10*time.Millisecond)
	require.Zero(t, byName(t, tier, "site-a").Counters.Ejections)
	require.Zero(t, byName(t, tier, "site-c").Counters.Ejections)
	require.Equal(t, 0.0, value(t, reg, access.MetricRefused, "reason", access.RefusedSitesFailed))
}

func TestPassiveNeverEjectsTheLastUsableSite(t *testing.T) {
	t.Parallel()
	cfg := quietConfig()
	cfg.Sites = []access.SiteConfig{{Name: "one"}, {Name: "two"}}
	cfg.Passive = access.PassiveConfig{Enabled: true, Failures: 1, Slow: 300 * time.Millisecond,
		Ejection: time.Minute, MaxEjection: time.Minute}
	silent := silentAddr(t)
	tier, reg := startTier(t, cfg, func(_ context.Context, _, _, _ string) (string, error) { return silent, nil })
	// Both sites are silent: the first to fail is ejected, the other stays
	// and the session is refused once both were tried.
	c, err := net.Dial("tcp", tier.Addr())
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(waitFor)))
	l, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(l, "* BYE"), l)
	ejected := 0
	for _, s := range tier.Sites() {
		if s.Ejected {
			ejected++
		}
	}
	require.Equal(t, 1, ejected)
	require.Equal(t, 1.0, value(t, reg, access.MetricRefused, "reason", access.RefusedSitesFailed))
}

func TestCloseEndsSessionsAndStopsEverything(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	cfg := access.DefaultConfig()
	cfg.Health.Interval = 10 * time.Millisecond
	tier, err := access.New(cfg, access.Options{NewSession: store(t).NewSession, Registerer: reg})
	require.NoError(t, err)
	require.NoError(t, tier.Start(context.Background(), "127.0.0.1:0", nil))
	c := login(t, tier.Addr())
	require.NoError(t, tier.Close())
	require.NoError(t, tier.Close())
	select {
	case <-c.Closed():
	case <-time.After(waitFor):
		t.Fatal("a session outlived Close")
	}
	_, err = net.Dial("tcp", tier.Addr())
	require.Error(t, err)
	require.Error(t, tier.Drain(context.Background(), "site-a"))
}

func TestInvalidConfig(t *testing.T) {
	t.Parallel()
	cfg := access.DefaultConfig()
	cfg.Sites = append(cfg.Sites, access.SiteConfig{Name: "site-a", Listen: "nowhere"})
	cfg.Placement = "least-conections"
	cfg.Health.Mode = "deeep"
	cfg.Passive.MaxEjection = time.Second
	_, err := access.New(cfg, access.Options{NewSession: store(t).NewSession})
	require.EqualError(t, err, "5 errors:\n"+
		"  sites[3].name: site \"site-a\" is defined twice\n"+
		"  sites[3].listen: \"nowhere\" is not a host:port address\n"+
		"  placement: \"least-conections\" is not one of least-connections, round-robin; did you mean \"least-connections\"?\n"+
		"  health.mode: \"deeep\" is not one of none, shallow, deep; did you mean \"deep\"?\n"+
		"  passive.max-ejection: must be at least ejection (10s), got 1s")
}

// value gathers reg and returns the value of the counter or gauge named
// name whose labels include the given name, value pairs.
func value(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || (lp.GetName() == labels[i] && lp.GetValue() == labels[i+1])
				}
				if !found {
					continue next
				}
			}
			return m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}
