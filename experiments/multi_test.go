package experiments_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/experiments"
	"github.com/mailchaos/mailchaos/experiments/journal"
	"github.com/mailchaos/mailchaos/experiments/probes"
	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/grayfailure"
	"github.com/mailchaos/mailchaos/faults/network"
	"github.com/mailchaos/mailchaos/internal/testnet"
	"github.com/mailchaos/mailchaos/targets/proxy"
)

// fleet is a target whose three links live on three toxiproxy servers
// (three `proxy serve` servers, in-process), as on three hosts: link a on
// the target's server, b and c each on its own.
type fleet struct {
	servers []*proxy.Server
	cat     experiments.Catalog
	yaml    string
}

var fleetLinks = []string{"a", "b", "c"} //nolint:gochecknoglobals // constant list

func newFleet(t *testing.T, third string) *fleet {
	t.Helper()
	up := testnet.Serve(t, func(ctx context.Context, c net.Conn) {
		_, _ = c.Write([]byte("220 ok\r\n"))
		<-ctx.Done()
	})
	f := &fleet{}
	for range 3 {
		s, err := proxy.StartServer(context.Background(), "127.0.0.1:0", nil)
		require.NoError(t, err)
		t.Cleanup(s.Close)
		f.servers = append(f.servers, s)
	}
	urls := []string{f.servers[0].URL(), f.servers[1].URL(), f.servers[2].URL()}
	if third != "" {
		urls[2] = third
	}
	reg := faults.NewRegistry()
	require.NoError(t, reg.Add(context.Background(), grayfailure.New()))
	require.NoError(t, reg.Add(context.Background(), &halfway{}))
	f.cat = experiments.Catalog{Faults: reg, Probes: probes.NewRegistry(probes.Builtin()...)}
	f.yaml = fmt.Sprintf(`target:
  kind: external
  toxiproxy: %s
  endpoints: { svc: "%s" }
  links:
    - { name: a, listen: "127.0.0.1:0", upstream: "%s" }
    - { name: b, listen: "127.0.0.1:0", upstream: "%s", toxiproxy: %s }
    - { name: c, listen: "127.0.0.1:0", upstream: "%s", toxiproxy: %s }
`, urls[0], up.Addr, up.Addr, up.Addr, urls[1], up.Addr, urls[2])
	return f
}

// target creates links a, b and c, each on its server, as a run would,
// and returns the target with them.
func (f *fleet) target(t *testing.T) faults.Target {
	t.Helper()
	ctx := context.Background()
	tg := faults.Target{Toxiproxy: f.servers[0].URL()}
	for i, name := range fleetLinks {
		listen, err := f.servers[i].Link(ctx, name, "127.0.0.1:0", "127.0.0.1:9")
		require.NoError(t, err)
		l := faults.Link{Name: name, Listen: listen, Upstream: "127.0.0.1:9"}
		if i > 0 {
			l.Toxiproxy = f.servers[i].URL()
		}
		tg.Links = append(tg.Links, l)
	}
	return tg
}

func (f *fleet) experiment(t *testing.T, body string) *experiments.Experiment {
	t.Helper()
	e, err := experiments.Parse(context.Background(), "fleet.yaml", []byte("version: 1\ntitle: fleet\n"+f.yaml+body), f.cat)
	require.NoError(t, err)
	return e
}

// toxics counts the toxics on every proxy of a server.
func toxics(t *testing.T, s *proxy.Server) int {
	t.Helper()
	ps, err := s.Client().Proxies(context.Background())
	require.NoError(t, err)
	n := 0
	for _, p := range ps {
		n += len(p.Toxics)
	}
	return n
}

// watch records, until stop, whether each server ever had a toxic.
func (f *fleet) watch(t *testing.T) (seen func() []bool, stop func()) {
	t.Helper()
	hit := make([]atomic.Bool, len(f.servers))
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			// Each server's own link: the link a fault on a, b and c puts
			// on that server.
			for i, s := range f.servers {
				if ts, err := s.Client().Toxics(context.Background(), fleetLinks[i]); err == nil && len(ts) > 0 {
					hit[i].Store(true)
				}
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() []bool {
			out := make([]bool, len(hit))
			for i := range hit {
				out[i] = hit[i].Load()
			}
			return out
		}, func() {
			close(done)
			wg.Wait()
		}
}

// allSeen waits until every server has had a toxic.
func allSeen(t *testing.T, seen func() []bool) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, ok := range seen() {
			if !ok {
				return false
			}
		}
		return true
	}, 20*time.Second, 5*time.Millisecond, "a fault on links a, b and c should land on all three servers")
}

func (f *fleet) clean(t *testing.T) {
	t.Helper()
	for i, s := range f.servers {
		require.Zero(t, toxics(t, s), "a toxic was left on server %d (%s)", i+1, s.URL())
	}
}

// halfway is a fault that adds a toxic on links a and b, then fails on c
// (a type no server has): an error in the middle of an injection that
// spans servers.
type halfway struct{}

func (*halfway) Describe(context.Context) (faults.Spec, error) {
	return faults.Spec{Name: "halfway", NeedsLink: true}, nil
}
func (*halfway) Validate(context.Context, faults.Request) error { return nil }
func (*halfway) Inject(ctx context.Context, req faults.Request) (faults.Handle, error) {
	return network.Apply(ctx, req, []network.ToxicOn{
		{Link: "a", Type: "latency", Stream: network.Downstream, Attributes: map[string]any{"latency": 1}},
		{Link: "b", Type: "latency", Stream: network.Downstream, Attributes: map[string]any{"latency": 1}},
		{Link: "c", Type: "no-such-type", Stream: network.Downstream},
	})
}
func (*halfway) Remove(ctx context.Context, h faults.Handle) error { return network.Remove(ctx, h) }
func (*halfway) Status(ctx context.Context, h faults.Handle) (faults.Status, error) {
	active, err := network.Active(ctx, h)
	return faults.Status{Active: active}, err
}

const fleetBody = `
steady-state:
  - { name: up, probe: tcp, interval: 100ms, params: { endpoint: svc }, tolerance: { max: 2s } }
baseline: 200ms
method:
  - fault: gray-failure
    at: 0s
    for: FOR
    links: [a, b, c]
    params: { mode: stall-after, after: "0", direction: downstream }
recovery: { within: 2s, hold: 100ms }
`

func (f *fleet) run(t *testing.T, ctx context.Context, e *experiments.Experiment) (experiments.Result, []journal.Event) {
	t.Helper()
	var buf bytes.Buffer
	res := experiments.Run(ctx, e, experiments.Options{Catalog: f.cat, Journal: journal.NewWriter(&buf, "fleet")})
	evs, err := journal.Read(&buf)
	require.NoError(t, err)
	require.Empty(t, journal.Outstanding(evs), "the journal shows a fault never removed")
	return res, evs
}

// TestLinksOnThreeServers: one experiment drives three servers: a fault
// on links a, b and c lands on each link's server, and is rolled back on
// every one at the normal end, after an error in the middle of an
// injection, and after an abort.
func TestLinksOnThreeServers(t *testing.T) {
	t.Run("normal end", func(t *testing.T) {
		f := newFleet(t, "")
		seen, stop := f.watch(t)
		res, evs := f.run(t, context.Background(), f.experiment(t, replaceFor(fleetBody, "600ms")))
		stop()
		require.Equal(t, journal.StatusCompleted, res.Status, res.Message)
		require.Equal(t, []bool{true, true, true}, seen(), "the fault should have been on every server")
		f.clean(t)
		var h *faults.Handle
		for _, ev := range evs {
			if ev.Type == journal.TypeInject {
				h = ev.Handle
			}
		}
		require.NotNil(t, h)
		require.Len(t, h.AllServers(), 3, "the handle names every server")
	})
	t.Run("error mid-injection", func(t *testing.T) {
		f := newFleet(t, "")
		seen, stop := f.watch(t)
		e := f.experiment(t, strings.Replace(replaceFor(fleetBody, "30s"), "recovery:",
			"  - { fault: halfway, at: 300ms, for: 1s, links: [a, b, c] }\nrecovery:", 1))
		res, _ := f.run(t, context.Background(), e)
		stop()
		require.Equal(t, journal.StatusAborted, res.Status)
		require.ErrorContains(t, res.Err, "no-such-type")
		require.Equal(t, []bool{true, true, true}, seen())
		f.clean(t)
	})
	t.Run("abort", func(t *testing.T) {
		f := newFleet(t, "")
		seen, stop := f.watch(t)
		defer stop()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			allSeen(t, seen)
			cancel()
		}()
		res, _ := f.run(t, ctx, f.experiment(t, replaceFor(fleetBody, "1m")))
		require.Equal(t, journal.StatusInterrupted, res.Status, res.Message)
		f.clean(t)
	})
}

func replaceFor(body, d string) string { return strings.Replace(body, "FOR", d, 1) }

// TestUnreachableServerFailsFirst: a run whose third server does not
// answer fails before anything is created or injected on the other two,
// with an error that names the server and its links.
func TestUnreachableServerFailsFirst(t *testing.T) {
	dead := "http://" + testnet.FreeAddr(t)
	f := newFleet(t, dead)
	res, evs := f.run(t, context.Background(), f.experiment(t, replaceFor(fleetBody, "1s")))
	require.Equal(t, journal.StatusAborted, res.Status)
	require.ErrorContains(t, res.Err, "toxiproxy at "+dead+" (links c) does not answer")
	for _, ev := range evs {
		require.NotEqual(t, journal.TypeIntent, ev.Type, "nothing may be injected")
	}
	for i, s := range f.servers[:2] {
		ps, err := s.Client().Proxies(context.Background())
		require.NoError(t, err)
		require.Empty(t, ps, "server %d: no link may be created before every server answers", i+1)
	}
}

// TestRecoverOnThreeServers: `mailchaos recover` undoes, on all three
// servers, a crashed run's fault (its handle lists toxics on each) and
// what an injection cut short left (only its intent was journalled).
func TestRecoverOnThreeServers(t *testing.T) {
	f := newFleet(t, "")
	ctx := context.Background()
	tg := f.target(t)
	const run = "run-crashed"
	req := faults.Request{ID: "s0", Owner: run, Fault: grayfailure.Name, Target: tg, Links: fleetLinks,
		Params: faults.Params{"mode": "blackhole"}, TTL: time.Hour}
	h, err := grayfailure.New().Inject(ctx, req)
	require.NoError(t, err)
	// A second injection killed half-way: its toxic on c is not in any
	// handle, only named after its owner and ID.
	cut := faults.Request{ID: "s1", Owner: run, Fault: grayfailure.Name, Target: tg, TTL: time.Hour}
	require.NoError(t, f.servers[2].Client().AddToxic(ctx, "c", network.Toxic{Name: network.ToxicName(run, "s1", time.Now().Add(time.Hour), 0),
		Type: "latency", Stream: network.Downstream}))
	for _, s := range f.servers {
		require.NotZero(t, toxics(t, s))
	}
	path := filepath.Join(t.TempDir(), "crashed.jsonl")
	jw, err := journal.Create(path, run)
	require.NoError(t, err)
	intent := faults.Intent(req)
	require.NoError(t, jw.Write(journal.Event{Type: journal.TypeIntent, Fault: req.Fault, Handle: &intent}))
	require.NoError(t, jw.Write(journal.Event{Type: journal.TypeInject, Fault: req.Fault, Handle: &h}))
	cutIntent := faults.Intent(cut)
	require.NoError(t, jw.Write(journal.Event{Type: journal.TypeIntent, Step: 1, Fault: cut.Fault, Handle: &cutIntent}))
	require.NoError(t, jw.Close())
	require.Len(t, cutIntent.AllServers(), 3, "an intent knows every server of the target")

	require.NoError(t, experiments.Recover(ctx, path, experiments.RecoverOptions{Faults: f.cat.Faults}))
	f.clean(t)
	evs, err := journal.ReadFile(path)
	require.NoError(t, err)
	require.Empty(t, journal.Outstanding(evs))
	require.True(t, errors.Is(experiments.Recover(ctx, path, experiments.RecoverOptions{Faults: f.cat.Faults}), experiments.ErrNothingToRecover))
}

// TestTTLOnThreeServers: a fault whose process is gone ends by itself on
// every server: each server's reaper removes the toxics on its own links
// once their time-to-live has passed.
func TestTTLOnThreeServers(t *testing.T) {
	f := newFleet(t, "")
	ctx := context.Background()
	tg := f.target(t)
	h, err := grayfailure.New().Inject(ctx, faults.Request{ID: "s0", Owner: "gone", Fault: grayfailure.Name, Target: tg,
		Links: fleetLinks, Params: faults.Params{"mode": "blackhole"}, TTL: 300 * time.Millisecond})
	require.NoError(t, err)
	require.Len(t, h.Toxics, 6, "both directions of three links")
	require.Len(t, h.AllServers(), 3)
	require.Eventually(t, func() bool {
		for _, s := range f.servers {
			if toxics(t, s) > 0 {
				return false
			}
		}
		return true
	}, 20*time.Second, 20*time.Millisecond, "every server should reap the expired toxics on its links")
}
