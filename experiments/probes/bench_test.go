package probes_test

import (
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/mailchaos/mailchaos/experiments/probes"
	"github.com/mailchaos/mailchaos/faults"
)

// BenchmarkCanary measures sequential canary round trips through the
// embedded stack (SMTP session, three engines over clamd, delivery, seen by
// the probe's IMAP poller) and reports their p50 and p99, at the default
// poll interval and at a short one: the value's resolution is the poll
// interval.
//
//	go test -run=^$ -bench=Canary -benchtime=500x ./experiments/probes/
func BenchmarkCanary(b *testing.B) {
	for _, poll := range []string{"20ms", "2ms"} {
		b.Run("poll="+poll, func(b *testing.B) { benchmarkCanary(b, poll) })
	}
}

func benchmarkCanary(b *testing.B, poll string) {
	_, target := startStack(b, testConfig(b))
	p := newProbe(b, probes.CanaryKind(), target, faults.Params{"to": "bob@example.test", "poll": poll})
	h := hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
	b.ResetTimer()
	for range b.N {
		s := measure(p, waitFor)
		if s.Failed {
			b.Fatal(s.Err)
		}
		_ = h.RecordValue(int64(s.Value * 1e6))
	}
	b.StopTimer()
	b.ReportMetric(float64(h.ValueAtQuantile(50))/1000, "p50-ms")
	b.ReportMetric(float64(h.ValueAtQuantile(99))/1000, "p99-ms")
}
