package mailstack_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/grayfailure"
	"github.com/mailchaos/mailchaos/targets"
	"github.com/mailchaos/mailchaos/targets/mailstack"
	"github.com/mailchaos/mailchaos/targets/mailstack/access"
)

// BenchmarkIMAPLogin measures an IMAP log-in (connect, greeting, LOGIN
// answered) with the default (remediated) access tier, directly to a site
// and through the balancer, with and without the embedded toxiproxy on the
// balancer → site links (as experiments run it). Each op also logs out;
// the figures are the log-in's p50 and p99 in microseconds.
//
//	go test -run='^$' -bench=IMAPLogin -benchtime=3000x ./targets/mailstack/
func BenchmarkIMAPLogin(b *testing.B) {
	cfg := testConfig(b, mailstack.ProfileRemediated)
	b.Run("direct-to-site", func(b *testing.B) {
		s := startStack(b, cfg)
		benchLogin(b, s.Endpoint("imap-site-a"))
	})
	b.Run("balancer", func(b *testing.B) {
		s := startStack(b, cfg)
		benchLogin(b, s.Endpoint("imap"))
	})
	b.Run("balancer+toxiproxy", func(b *testing.B) {
		r := startProxied(b, cfg)
		benchLogin(b, r.Target.Endpoints["imap"])
	})
}

func benchLogin(b *testing.B, addr string) {
	h := hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		c, err := imapclient.DialInsecure(addr, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Login("alice@example.test", "password").Wait(); err != nil {
			b.Fatal(err)
		}
		_ = h.RecordValue(time.Since(start).Microseconds())
		if err := c.Logout().Wait(); err != nil {
			b.Fatal(err)
		}
		_ = c.Close()
	}
	b.StopTimer()
	b.ReportMetric(float64(h.ValueAtQuantile(50)), "p50-µs")
	b.ReportMetric(float64(h.ValueAtQuantile(99)), "p99-µs")
}

// BenchmarkEjectGraySite measures how long each health-checking set-up of
// the balancer, at its default settings, takes to stop placing sessions on
// a site whose link suffers each gray-failure mode (default parameters),
// while four clients log in back to back through the balancer (5 s client
// timeout, 50 ms pause after a failed log-in). Each op starts a fresh stack behind the embedded toxiproxy,
// injects the fault on imap-site-b and waits up to 10 s. Reported: the
// share of ops in which the site was taken out, the mean and max time to
// that, and how many of the log-ins started from the injection until then
// (or until the 10 s were over) failed.
//
//	go test -run='^$' -bench='EjectGraySite/.*/stall-after' -benchtime=5x ./targets/mailstack/
func BenchmarkEjectGraySite(b *testing.B) {
	for _, m := range []struct {
		name string
		set  func(*access.Config)
	}{
		{"shallow", func(c *access.Config) { *c = access.IncidentConfig() }},
		{"deep", func(c *access.Config) { *c = access.DefaultConfig(); c.Passive.Enabled = false }},
		{"passive", func(c *access.Config) { *c = access.DefaultConfig(); c.Health.Mode = access.HealthNone }},
		{"deep+passive", func(c *access.Config) { *c = access.DefaultConfig() }},
	} {
		for _, gm := range grayModes {
			b.Run(m.name+"/"+gm.name, func(b *testing.B) {
				const window = 10 * time.Second
				var ejected int
				var total, worst time.Duration
				var failed int64
				for i := 0; i < b.N; i++ {
					cfg := testConfig(b, mailstack.ProfileRemediated)
					m.set(&cfg.Access)
					took, ok, f := ejectOnce(b, cfg, gm.params, window)
					failed += f
					if ok {
						ejected++
						total += took
						worst = max(worst, took)
					}
				}
				b.ReportMetric(float64(ejected)/float64(b.N), "ejected/op")
				if ejected > 0 {
					b.ReportMetric(float64(total.Milliseconds())/float64(ejected), "eject-ms")
					b.ReportMetric(float64(worst.Milliseconds()), "max-eject-ms")
				}
				b.ReportMetric(float64(failed)/float64(b.N), "failed-logins/op")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}

// ejectOnce starts a stack, loads it, puts a gray failure on site-b's link
// and returns how long it took until site-b was out of placement (and
// whether it was within window), and how many log-ins failed meanwhile.
func ejectOnce(b *testing.B, cfg mailstack.Config, gray faults.Params, window time.Duration) (time.Duration, bool, int64) {
	r, err := targets.StartMailstack(context.Background(), cfg, nil)
	require.NoError(b, err)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		require.NoError(b, r.Close(ctx))
	}()
	addr := r.Target.Endpoints["imap"]
	require.NoError(b, tryLogin(addr, waitFor))

	// The load: each client records when each log-in started and whether
	// it failed. Once the measurement is over no new log-in starts and the
	// ones under way end by themselves (at the latest at their timeout).
	type attempt struct {
		at     time.Time
		failed bool
	}
	var stop atomic.Bool
	var mu sync.Mutex
	var attempts []attempt
	var wg sync.WaitGroup
	for c := 0; c < 4; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				at := time.Now()
				err := tryLogin(addr, 5*time.Second)
				mu.Lock()
				attempts = append(attempts, attempt{at, err != nil})
				mu.Unlock()
				if err != nil {
					time.Sleep(50 * time.Millisecond) // a client's pause before reconnecting
				}
			}
		}()
	}
	// The clock starts as the fault is asked for: sessions placed while
	// the toxic is being added are hit too.
	start := time.Now()
	h, err := grayfailure.New().Inject(context.Background(), faults.Request{ID: "bench", Owner: "bench",
		Fault: grayfailure.Name, Target: r.Target, Links: []string{"imap-site-b"},
		Params: gray, TTL: time.Minute})
	require.NoError(b, err)
	end, out := start.Add(window), false
	tick := time.NewTicker(time.Millisecond)
	for time.Now().Before(end) {
		st, err := r.Stack.Site("site-b")
		require.NoError(b, err)
		if !st.Usable {
			end, out = time.Now(), true
			break
		}
		<-tick.C
	}
	tick.Stop()
	stop.Store(true)
	wg.Wait()
	require.NoError(b, grayfailure.New().Remove(context.Background(), h))
	var failed int64
	for _, a := range attempts {
		if a.failed && !a.at.Before(start) && a.at.Before(end) {
			failed++
		}
	}
	return end.Sub(start), out, failed
}
