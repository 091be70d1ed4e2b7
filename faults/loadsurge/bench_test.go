package loadsurge_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/faults/loadsurge"
	"github.com/mailchaos/mailchaos/faults/loadsurge/sinktest"
)

// The benchmarks run against an in-process go-smtp sink (sinktest, in
// Discard mode) on loopback, so the sink shares the two cores with the
// generator; figures against a C sink are in compare-smtp-source.sh.
//
//	go test -run=^$ -bench=ClosedLoop -benchtime=20000x ./faults/loadsurge/
//	go test -run=^$ -bench=OpenLoopAccuracy ./faults/loadsurge/   # 10 s
//	go test -run=^$ -bench=Memory5000 -timeout=10m ./faults/loadsurge/   # 2 × 60 s

// BenchmarkClosedLoop sends b.N 4 KB messages back to back over c
// sessions and reports messages per second.
func BenchmarkClosedLoop(b *testing.B) {
	for _, c := range []int{10, 50} {
		b.Run(fmt.Sprintf("c=%d", c), func(b *testing.B) {
			s := sinktest.Start(b, sinktest.Options{Discard: true})
			b.ResetTimer()
			r, err := loadsurge.Start(context.Background(), loadsurge.Config{Addr: s.Addr, Count: int64(b.N), Concurrency: c})
			require.NoError(b, err)
			res := r.Wait()
			reportClosedLoop(b, res, res.Accepted, "msg/s")
		})
	}
}

// BenchmarkOpenLoopAccuracy sends 1000 msg/s for 10 s and reports how far
// the achieved rate is from it and the p99 lag (scheduled → started). Each
// call runs it once, whatever b.N is: run it with the default -benchtime.
func BenchmarkOpenLoopAccuracy(b *testing.B) {
	const rate, d = 1000, 10 * time.Second
	s := sinktest.Start(b, sinktest.Options{Discard: true})
	r, err := loadsurge.Start(context.Background(), loadsurge.Config{Addr: s.Addr, Schedule: loadsurge.Constant(rate), Duration: d})
	require.NoError(b, err)
	res := r.Wait()
	require.EqualValues(b, rate*d.Seconds(), res.Accepted, res.String())
	b.Logf("\n%s", res)
	b.ReportMetric(100*math.Abs(res.AchievedRate-rate)/rate, "rate-error-%")
	b.ReportMetric(ms(res.Lag.P99), "lag-p99-ms")
	b.ReportMetric(ms(res.Lag.Max), "lag-max-ms")
	b.ReportMetric(ms(res.Latency.P99), "p99-ms")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkMemory5000 sends 5000 msg/s of 4 KB messages for 60 s and
// reports the peak RSS: "in-process" is the whole test process, sink
// included; "subprocess" builds bin/mailchaos into a temporary directory,
// runs "mailchaos surge" in a process of its own against the in-process
// sink and reads that process's peak RSS from its rusage.
func BenchmarkMemory5000(b *testing.B) {
	const rate, d = 5000, 60 * time.Second
	b.Run("in-process", func(b *testing.B) {
		s := sinktest.Start(b, sinktest.Options{Discard: true})
		resetPeakRSS()
		r, err := loadsurge.Start(context.Background(), loadsurge.Config{Addr: s.Addr, Schedule: loadsurge.Constant(rate), Duration: d})
		require.NoError(b, err)
		res := r.Wait()
		b.Logf("\n%s", res)
		require.EqualValues(b, rate*d.Seconds(), res.Sent, res.String())
		b.ReportMetric(float64(peakRSS())/(1<<20), "peak-RSS-MiB")
		b.ReportMetric(res.AchievedRate, "msg/s")
		b.ReportMetric(ms(res.Lag.P99), "lag-p99-ms")
		b.ReportMetric(0, "ns/op")
	})
	b.Run("subprocess", func(b *testing.B) {
		bin := filepath.Join(b.TempDir(), "mailchaos")
		build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, "github.com/mailchaos/mailchaos")
		if out, err := build.CombinedOutput(); err != nil {
			b.Fatalf("go build: %v\n%s", err, out)
		}
		s := sinktest.Start(b, sinktest.Options{Discard: true})
		cmd := exec.Command(bin, "surge", "--to", s.Addr, "--rate", strconv.Itoa(rate), "--duration", d.String(), "--json")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		require.NoError(b, cmd.Run(), errb.String())
		var res loadsurge.Result
		require.NoError(b, json.Unmarshal(out.Bytes(), &res), out.String())
		b.Logf("\n%s", res)
		require.EqualValues(b, rate*d.Seconds(), res.Sent, res.String())
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		b.ReportMetric(float64(ru.Maxrss)/1024, "peak-RSS-MiB")
		b.ReportMetric(res.AchievedRate, "msg/s")
		b.ReportMetric(ms(res.Lag.P99), "lag-p99-ms")
		b.ReportMetric(time.Duration(ru.Utime.Nano()+ru.Stime.Nano()).Seconds()/res.Duration.Seconds()*100, "cpu-%")
		b.ReportMetric(0, "ns/op")
	})
}

// imapServers are the IMAP servers the log-in benchmarks run against: the
// embedded stack's IMAP endpoint (started as mailchaos starts it) and
// go-imap's in-memory server alone, for the generator's ceiling. Each
// user's INBOX holds 5 messages, so every session fetches 5 envelopes.
func imapServers() []imapServer {
	return []imapServer{
		{"mailstack", func(b *testing.B) string { return stack(b, 5).Target.Endpoints["imap"] }},
		{"imapmemserver", func(b *testing.B) string { return startMem(b, memOpts{Messages: 5, Plain: true}).addr }},
	}
}

// imapServer is a benchmark's IMAP server: start starts it and returns its
// address.
type imapServer struct {
	name  string
	start func(b *testing.B) string
}

// BenchmarkIMAPClosedLoop runs b.N log-in sessions (connect, LOGIN,
// SELECT INBOX, FETCH 5 envelopes, LOGOUT) back to back over c
// concurrent sessions and reports log-ins per second.
//
//	go test -run=^$ -bench=IMAPClosedLoop -benchtime=5000x ./faults/loadsurge/
func BenchmarkIMAPClosedLoop(b *testing.B) {
	for _, srv := range imapServers() {
		for _, c := range []int{1, 10, 50} {
			b.Run(fmt.Sprintf("%s/c=%d", srv.name, c), func(b *testing.B) {
				addr := srv.start(b)
				b.ResetTimer()
				r, err := loadsurge.StartIMAP(context.Background(), loadsurge.IMAPConfig{Addr: addr, Count: int64(b.N), Concurrency: c})
				require.NoError(b, err)
				res := r.Wait()
				reportClosedLoop(b, res, res.Succeeded, "logins/s")
			})
		}
	}
}

// BenchmarkIMAPOpenLoopMax offers log-ins at increasing constant rates,
// 3 s each over up to 200 sessions, and reports the highest rate that was
// sustained: every session due in the 3 s succeeded and the p99 lag
// (scheduled → started) stayed under 50 ms, so no backlog built up. Each
// call runs the whole ladder once, whatever b.N is: run it with the
// default -benchtime.
//
//	go test -run=^$ -bench=IMAPOpenLoopMax ./faults/loadsurge/
func BenchmarkIMAPOpenLoopMax(b *testing.B) {
	const d, maxLag = 3 * time.Second, 50 * time.Millisecond
	for _, srv := range imapServers() {
		b.Run(srv.name, func(b *testing.B) {
			addr := srv.start(b)
			var best float64
			var bestRes loadsurge.IMAPResult
			for _, rate := range []float64{250, 500, 750, 1000, 1250, 1500, 2000, 2500, 3000, 4000} {
				r, err := loadsurge.StartIMAP(context.Background(), loadsurge.IMAPConfig{Addr: addr,
					Schedule: loadsurge.Constant(rate), Duration: d, Concurrency: 200, Timeout: 5 * time.Second})
				require.NoError(b, err)
				res := r.Wait()
				b.Logf("%.0f/s: %s", rate, res)
				if res.Succeeded != int64(rate*d.Seconds()) || res.Lag.P99 > maxLag {
					break
				}
				best, bestRes = rate, res
			}
			b.ReportMetric(best, "max-sustained-logins/s")
			b.ReportMetric(ms(bestRes.Latency.P99), "p99-ms")
			b.ReportMetric(ms(bestRes.Lag.P99), "lag-p99-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// reportClosedLoop stops the timer, checks that all b.N items of a
// closed-loop run succeeded and reports their rate (in unit) and latency.
func reportClosedLoop(b *testing.B, res loadsurge.Report, succeeded int64, unit string) {
	b.Helper()
	b.StopTimer()
	require.EqualValues(b, b.N, succeeded, res.String())
	f := res.StatusFigures()
	b.ReportMetric(f["rate"], unit)
	b.ReportMetric(f["p50_ms"], "p50-ms")
	b.ReportMetric(f["p99_ms"], "p99-ms")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// resetPeakRSS resets the process's VmHWM to its current RSS (Linux: "5"
// to /proc/self/clear_refs), so earlier benchmarks do not count.
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

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
