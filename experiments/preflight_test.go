package experiments_test

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/experiments"
	"github.com/mailchaos/mailchaos/experiments/journal"
	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/network"
	"github.com/mailchaos/mailchaos/internal/exitcode"
	"github.com/mailchaos/mailchaos/internal/testnet"
	"github.com/mailchaos/mailchaos/targets/proxy"
)

// stockToxiproxy builds the stock toxiproxy server (the version in go.mod)
// from the module cache, runs it on a free loopback port and returns its
// API. The process is killed when the test ends.
func stockToxiproxy(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "toxiproxy")
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(goTool, "build", "-o", bin, "github.com/Shopify/toxiproxy/v2/cmd/server").CombinedOutput()
	require.NoError(t, err, "build stock toxiproxy: %s", out)
	_, port, err := net.SplitHostPort(testnet.FreeAddr(t))
	require.NoError(t, err)
	var logs bytes.Buffer
	cmd := exec.Command(bin, "-host", "127.0.0.1", "-port", port)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	url := "http://127.0.0.1:" + port
	c := network.NewClient(url)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx)
		cancel()
		if err == nil {
			return url
		}
		select {
		case err := <-exited:
			t.Fatalf("stock toxiproxy exited: %v\n%s", err, logs.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("stock toxiproxy did not answer at %s: %v", url, err)
		}
	}
}

// support is whether one fault in one mode works on a server.
type support map[string]bool // by "fault (mode)"

// measure injects every built-in fault that adds toxics, in each mode, on
// a link of the server at url, and records which injections the server
// accepted; each is removed again. It checks that the preflight's verdict
// for each agrees with what happened.
func measure(t *testing.T, url string) support {
	t.Helper()
	ctx := context.Background()
	up := testnet.Serve(t, testnet.Hold)
	c := network.NewClient(url)
	p, err := c.CreateProxy(ctx, "l", "127.0.0.1:0", up.Addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.DeleteProxy(context.Background(), "l") })
	tg := faults.Target{Toxiproxy: url, Links: []faults.Link{{Name: "l", Listen: p.Listen, Upstream: up.Addr}}}
	probe := experiments.NewToxicProbe()
	out := support{}
	cat := builtinCatalog(t)
	for _, name := range cat.Faults.Names() {
		inj, spec, err := cat.Faults.Get(name)
		require.NoError(t, err)
		if len(spec.Toxics) == 0 {
			continue
		}
		mode, ok := spec.Param("mode")
		require.True(t, ok, "%s: a fault with toxics that depend on no mode", name)
		for _, m := range mode.Enum {
			key := fmt.Sprintf("%s (%s)", name, m)
			req := faults.Request{ID: "m", Owner: "measure", Fault: name, Target: tg, Links: []string{"l"},
				Params: faults.Params{"mode": m}, TTL: time.Minute}
			h, err := inj.Inject(ctx, req)
			out[key] = err == nil
			if err == nil {
				require.NoError(t, inj.Remove(ctx, h), key)
			} else {
				require.True(t, network.IsInvalidToxicType(err), "%s: %v", key, err)
			}
			pre := experiments.CheckToxics(ctx, probe, inj, spec, req, "measure")
			require.Equal(t, out[key], pre == nil, "%s: the preflight says %v, the injection did otherwise", key, pre)
			// What travels over the plugin wire (the spec) says the same
			// as the injector.
			need := spec.ToxicsFor(req.Params)
			lacks, err := probe.Lacks(ctx, url, need)
			require.NoError(t, err)
			require.Equal(t, out[key], len(lacks) == 0, "%s: the spec says it needs %v", key, need)
		}
	}
	ps, err := c.Proxies(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"l"}, slices.Sorted(maps.Keys(ps)), "the probe must leave no proxy behind")
	require.Empty(t, ps["l"].Toxics)
	return out
}

// docTable reads the table of docs/faults.md between the stock-toxiproxy
// markers: fault (mode) -> works.
func docTable(t *testing.T) support {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "docs", "faults.md"))
	require.NoError(t, err)
	doc := string(b)
	start := strings.Index(doc, "<!-- stock-toxiproxy -->")
	end := strings.Index(doc, "<!-- /stock-toxiproxy -->")
	require.True(t, start >= 0 && end > start, "docs/faults.md has no stock toxiproxy table")
	row := regexp.MustCompile("^\\| `([a-z-]+)` \\| `([a-z-]+)` \\| (yes|no) ")
	out := support{}
	for _, line := range strings.Split(doc[start:end], "\n") {
		if m := row.FindStringSubmatch(line); m != nil {
			out[fmt.Sprintf("%s (%s)", m[1], m[2])] = m[3] == "yes"
		}
	}
	return out
}

// TestStockToxiproxy measures which fault in which mode works on stock
// toxiproxy (the server of go.mod's version, built and run as a process)
// and on mailchaos' own server, checks the preflight against each
// injection, and checks the table of docs/faults.md against the
// measurement.
func TestStockToxiproxy(t *testing.T) {
	stock := measure(t, stockToxiproxy(t))
	for k, v := range stock {
		t.Logf("stock toxiproxy: %-30s works: %v", k, v)
	}
	require.Equal(t, docTable(t), stock, "docs/faults.md's stock toxiproxy table disagrees with the measurement")
	own, err := proxy.StartServer(context.Background(), "127.0.0.1:0", nil)
	require.NoError(t, err)
	t.Cleanup(own.Close)
	for k, v := range measure(t, own.URL()) {
		require.True(t, v, "%s should work on mailchaos proxy serve", k)
	}
}

// TestPreflightRefusesStockToxiproxy: a run whose fault needs one of
// mailchaos' own toxics on a stock toxiproxy fails before its baseline,
// with exit code 2 and an error that says what and where, and nothing is
// injected.
func TestPreflightRefusesStockToxiproxy(t *testing.T) {
	url := stockToxiproxy(t)
	up := testnet.Serve(t, testnet.Hold)
	src := fmt.Sprintf(`version: 1
title: stock
target:
  kind: external
  toxiproxy: %s
  endpoints: { svc: "%s" }
  links:
    - { name: l, listen: "127.0.0.1:0", upstream: "%s" }
steady-state:
  - { name: up, probe: tcp, interval: 100ms, params: { endpoint: svc }, tolerance: { max: 2s } }
method:
  - { fault: av-latency, for: 1s, link: l, params: { mode: latency } }
  - { fault: gray-failure, for: 1s, link: l, params: { mode: stall-after } }
recovery: { within: 1s }
`, url, up.Addr, up.Addr)
	cat := builtinCatalog(t)
	e, err := experiments.Parse(context.Background(), "stock.yaml", []byte(src), cat)
	require.NoError(t, err)
	var buf bytes.Buffer
	res := experiments.Run(context.Background(), e, experiments.Options{Catalog: cat, Journal: journal.NewWriter(&buf, "stock")})
	require.Equal(t, journal.StatusAborted, res.Status)
	require.Equal(t, exitcode.Invalid, exitcode.Of(experiments.Outcome(res)))
	for _, want := range []string{"method[1]", "gray-failure", network.ToxicStall, url, "mailchaos proxy serve"} {
		require.ErrorContains(t, res.Err, want)
	}
	evs, err := journal.Read(&buf)
	require.NoError(t, err)
	for _, ev := range evs {
		require.NotEqual(t, journal.TypeIntent, ev.Type, "nothing may be injected")
		require.NotEqual(t, journal.TypeSample, ev.Type, "the run must stop before its baseline")
	}
	ps, err := network.NewClient(url).Proxies(context.Background())
	require.NoError(t, err)
	require.Len(t, ps, 1, "the link alone, no scratch proxy")
	require.Empty(t, ps["l"].Toxics)
}
