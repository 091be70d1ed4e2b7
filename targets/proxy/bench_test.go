package proxy_test

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/mailchaos/mailchaos/faults/network"
	"github.com/mailchaos/mailchaos/internal/testnet"
	"github.com/mailchaos/mailchaos/targets/proxy"
)

// benchServer runs fn on every connection accepted on a loopback port.
func benchServer(b *testing.B, fn func(net.Conn)) string {
	b.Helper()
	return testnet.Serve(b, func(_ context.Context, c net.Conn) { fn(c) }).Addr
}

// benchPath returns the address to dial for one variant: direct, through
// an embedded proxy with no toxic, or with the clamd-aware latency toxic
// (which parses the stream but never matches it).
func benchPath(b *testing.B, variant, upstream string) string {
	b.Helper()
	if variant == "direct" {
		return upstream
	}
	srv, err := proxy.StartServer(context.Background(), "127.0.0.1:0", nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Close)
	listen, err := srv.Link(context.Background(), "bench", "127.0.0.1:0", upstream)
	if err != nil {
		b.Fatal(err)
	}
	if variant == "clamd-toxic" {
		err := srv.Client().AddToxic(context.Background(), "bench", network.Toxic{Name: "t", Type: network.ToxicClamdLatency,
			Stream: network.Upstream, Attributes: map[string]any{"latency": 5000, "pattern": "NEVER-IN-THE-PAYLOAD"}})
		if err != nil {
			b.Fatal(err)
		}
	}
	return listen
}

var variants = []string{"direct", "proxy", "clamd-toxic"}

// BenchmarkLinkBulk measures bulk throughput client → server: a stream of
// clamd INSTREAM scans (1 MiB payloads in 64 KiB chunks) that the server
// discards. b.SetBytes makes go test report MB/s.
func BenchmarkLinkBulk(b *testing.B) {
	const chunk, perScan = 64 << 10, 16
	payload := make([]byte, 4+chunk)
	binary.BigEndian.PutUint32(payload, chunk)
	for i := 4; i < len(payload); i++ {
		payload[i] = byte('a' + i%26)
	}
	for _, v := range variants {
		b.Run(v, func(b *testing.B) {
			done := make(chan int64, 1)
			addr := benchPath(b, v, benchServer(b, func(c net.Conn) {
				n, _ := io.Copy(io.Discard, c)
				done <- n
			}))
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(payload)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i%perScan == 0 {
					if _, err := c.Write([]byte("zINSTREAM\x00")); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := c.Write(payload); err != nil {
					b.Fatal(err)
				}
				if i%perScan == perScan-1 || i == b.N-1 {
					if _, err := c.Write([]byte{0, 0, 0, 0}); err != nil {
						b.Fatal(err)
					}
				}
			}
			_ = c.(*net.TCPConn).CloseWrite()
			select {
			case <-done:
			case <-time.After(time.Minute):
				b.Fatal("the sink never finished")
			}
			b.StopTimer()
			_ = c.Close()
		})
	}
}

// BenchmarkLinkRTT measures the round trip of a 64-byte request and its
// echo, reporting p50 and p99 in microseconds.
func BenchmarkLinkRTT(b *testing.B) {
	for _, v := range variants {
		b.Run(v, func(b *testing.B) {
			addr := benchPath(b, v, benchServer(b, func(c net.Conn) { _, _ = io.Copy(c, c) }))
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			msg, buf := make([]byte, 64), make([]byte, 64)
			for i := range msg {
				msg[i] = 'x'
			}
			h := hdrhistogram.New(1, 10_000_000, 3)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
				_ = h.RecordValue(time.Since(start).Microseconds())
			}
			b.StopTimer()
			b.ReportMetric(float64(h.ValueAtQuantile(50)), "p50-µs")
			b.ReportMetric(float64(h.ValueAtQuantile(99)), "p99-µs")
		})
	}
}
