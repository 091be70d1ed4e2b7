package plugins_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/mailchaos/mailchaos/faults/grayfailure"
	"github.com/mailchaos/mailchaos/plugins"
)

// BenchmarkStart is a plugin's start: process, handshake with automatic
// mutual TLS, and Describe; then its stop.
func BenchmarkStart(b *testing.B) {
	for b.Loop() {
		h := plugins.NewHost(plugins.Options{})
		if _, err := h.Start(context.Background(), plugins.Launch{Name: "misbehave", Path: misbehave}); err != nil {
			b.Fatal(err)
		}
		h.Close()
	}
}

// BenchmarkInjectRemove is one inject and remove of a link fault (a toxic
// on a real toxiproxy server), through a plugin and, for comparison, in
// process.
func BenchmarkInjectRemove(b *testing.B) {
	f := newFixture(b)
	b.Run("plugin", func(b *testing.B) {
		h := plugins.NewHost(plugins.Options{})
		defer h.Close()
		p, err := h.Start(context.Background(), plugins.Launch{Name: "misbehave", Path: misbehave})
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for b.Loop() {
			n++
			hd, err := p.Inject(context.Background(), f.request(fmt.Sprint("b", n)))
			if err != nil {
				b.Fatal(err)
			}
			if err := p.Remove(context.Background(), hd); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("in-process", func(b *testing.B) {
		inj := grayfailure.New()
		n := 0
		for b.Loop() {
			n++
			req := f.request(fmt.Sprint("b", n))
			req.Fault, req.Params = grayfailure.Name, map[string]string{"mode": "blackhole"}
			hd, err := inj.Inject(context.Background(), req)
			if err != nil {
				b.Fatal(err)
			}
			if err := inj.Remove(context.Background(), hd); err != nil {
				b.Fatal(err)
			}
		}
	})
}
