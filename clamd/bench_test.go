package clamd

import (
	"context"
	"testing"
)

func BenchmarkScan(b *testing.B) {
	rs := start(b, &Server{})
	c := &Client{Addr: rs.addr}
	msg := plainMessage(4096)
	ctx := context.Background()
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		res, err := c.Scan(ctx, msg)
		if err != nil || res.Infected {
			b.Fatal(res, err)
		}
	}
}

func BenchmarkMatch4K(b *testing.B) {
	m := NewMatcher(DefaultSignatures())
	msg := plainMessage(4096)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, found := m.Match(msg); found {
			b.Fatal("clean message matched")
		}
	}
}

func BenchmarkMatch4KBase64(b *testing.B) {
	m := NewMatcher(DefaultSignatures())
	msg := withAttachment(plainMessage(3000))
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, found := m.Match(msg); found {
			b.Fatal("clean message matched")
		}
	}
}
