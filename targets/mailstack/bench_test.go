package mailstack_test

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/targets/mailstack"
)

// BenchmarkStackThroughput pushes clean 4 KB messages through the whole
// stack: SMTP in (benchClients sessions, each reused for many messages),
// three bundled engines over clamd, delivery to a mailbox, then checks over
// IMAP that every message is visible. It reports messages per second from
// the first send to the last delivery, the accept→mailbox latency
// percentiles taken from the ledger, and the process's peak RSS.
//
//	go test -run=^$ -bench=StackThroughput -benchtime=20000x ./targets/mailstack/
func BenchmarkStackThroughput(b *testing.B) {
	const benchClients = 8
	cfg := testConfig(b, mailstack.ProfileRemediated)
	s := startStack(b, cfg)
	addr := s.Endpoint("smtp")
	body := strings.Repeat("The quick brown fox jumps over the lazy dog 0123456789.\r\n", 4096/57)

	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, benchClients)
	b.ResetTimer()
	start := time.Now()
	for c := 0; c < benchClients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl, err := smtp.Dial(addr)
			if err != nil {
				errs <- err
				return
			}
			defer cl.Close()
			if err := cl.Hello("bench.test"); err != nil {
				errs <- err
				return
			}
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					_ = cl.Quit()
					return
				}
				if err := sendOne(cl, i, body); err != nil {
					errs <- fmt.Errorf("message %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for s.Counts().Delivered < b.N {
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d delivered", s.Counts().Delivered, b.N)
		}
		time.Sleep(time.Millisecond)
	}
	var last time.Time
	h := hdrhistogram.New(1, int64(10*time.Minute/time.Microsecond), 3)
	for _, r := range s.Messages() {
		if r.Finished.After(last) {
			last = r.Finished
		}
		_ = h.RecordValue(r.Finished.Sub(r.Accepted).Microseconds())
	}
	elapsed := last.Sub(start)
	b.StopTimer()

	imapc := imapLogin(b, s.Endpoint("imap"), "bob@example.test")
	sel, err := imapc.Select("INBOX", nil).Wait()
	require.NoError(b, err)
	require.Equal(b, uint32(b.N), sel.NumMessages, "not every message is visible over IMAP")

	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msg/s")
	b.ReportMetric(float64(h.ValueAtQuantile(50))/1000, "p50-ms")
	b.ReportMetric(float64(h.ValueAtQuantile(99))/1000, "p99-ms")
	if rss := peakRSS(); rss > 0 {
		b.ReportMetric(float64(rss)/(1<<20), "peak-RSS-MiB")
	}
	b.ReportMetric(0, "ns/op")
}

func sendOne(c *smtp.Client, i int64, body string) error {
	if err := c.Mail("alice@example.test", nil); err != nil {
		return err
	}
	if err := c.Rcpt("bob@example.test", nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(w, "From: alice@example.test\r\nTo: bob@example.test\r\nSubject: bench %d\r\nMessage-ID: <bench-%d@test>\r\n\r\n%s", i, i, body); err != nil {
		return err
	}
	return w.Close()
}

// peakRSS returns the process's peak resident set size in bytes (VmHWM),
// or 0 where /proc is not available.
func peakRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}
