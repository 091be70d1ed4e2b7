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
			b.StopTimer()
			require.EqualValues(b, b.N, res.Accepted, res.String())
			b.ReportMetric(res.AchievedRate, "msg/s")
			b.ReportMetric(ms(res.Latency.P99), "p99-ms")
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
