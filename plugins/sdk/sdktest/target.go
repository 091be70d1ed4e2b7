// Package sdktest is the conformance kit for fault plugins: [Run] checks
// an injector against the contract mailchaos relies on, through the real
// gRPC boundary, against a real toxiproxy server. Run it in the plugin's
// own `go test`.
package sdktest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mailchaos/mailchaos/faults/network"
	"github.com/mailchaos/mailchaos/plugins/sdk"
	"github.com/mailchaos/mailchaos/targets/proxy"
)

// Target is a test target: a toxiproxy server (with mailchaos' toxics and
// its reaper) with links in front of a line echo server, which greets each
// connection with "220 sdktest" and echoes every line.
type Target struct {
	sdk.Target
	srv *proxy.Server
}

// Links of a [Target].
const (
	LinkA = "link-a"
	LinkB = "link-b"
)

// StartTarget starts a test target with links [LinkA] and [LinkB]; it is
// stopped when the test ends.
func StartTarget(t testing.TB) *Target {
	t.Helper()
	ctx := context.Background()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("sdktest: listen: %v", err)
	}
	var wg sync.WaitGroup
	conns := map[net.Conn]struct{}{}
	var mu sync.Mutex
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				echo(c)
			}()
		}
	}()
	srv, err := proxy.StartServer(ctx, "127.0.0.1:0", nil)
	if err != nil {
		t.Fatalf("sdktest: start toxiproxy: %v", err)
	}
	tg := &Target{srv: srv, Target: sdk.Target{Toxiproxy: srv.URL(), Endpoints: map[string]string{"echo": ln.Addr().String()}}}
	for _, name := range []string{LinkA, LinkB} {
		listen, err := srv.Link(ctx, name, "127.0.0.1:0", ln.Addr().String())
		if err != nil {
			t.Fatalf("sdktest: %v", err)
		}
		tg.Links = append(tg.Links, sdk.Link{Name: name, Listen: listen, Upstream: ln.Addr().String()})
	}
	t.Cleanup(func() {
		srv.Close()
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return tg
}

// echo greets and echoes lines until the peer leaves.
func echo(c net.Conn) {
	if _, err := c.Write([]byte("220 sdktest\r\n")); err != nil {
		return
	}
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if _, err := c.Write([]byte(line)); err != nil {
			return
		}
	}
}

// RoundTrip connects through a link, reads the greeting and echoes one
// line, within timeout.
func (tg *Target) RoundTrip(link string, timeout time.Duration) error {
	l, ok := tg.Link(link)
	if !ok {
		return fmt.Errorf("no link %s", link)
	}
	c, err := net.DialTimeout("tcp", l.Listen, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	r := bufio.NewReader(c)
	if line, err := r.ReadString('\n'); err != nil || line != "220 sdktest\r\n" {
		return fmt.Errorf("greeting through %s: %q, %v", link, line, err)
	}
	if _, err := c.Write([]byte("ping\r\n")); err != nil {
		return err
	}
	if line, err := r.ReadString('\n'); err != nil || line != "ping\r\n" {
		return fmt.Errorf("echo through %s: %q, %v", link, line, err)
	}
	return nil
}

// Toxics lists the toxics on a link's proxy.
func (tg *Target) Toxics(t testing.TB, link string) []network.Toxic {
	t.Helper()
	ts, err := tg.srv.Client().Toxics(context.Background(), link)
	if err != nil {
		t.Fatalf("sdktest: toxics of %s: %v", link, err)
	}
	return ts
}

// Upstream is where a link's proxy forwards to now.
func (tg *Target) Upstream(t testing.TB, link string) string {
	t.Helper()
	p, err := tg.srv.Client().Proxy(context.Background(), link)
	if err != nil {
		t.Fatalf("sdktest: proxy %s: %v", link, err)
	}
	return p.Upstream
}
