package network

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

// ReapInterval is how often a server's reaper looks for expired toxics: the
// most a fault can outlive its time-to-live on a server mailchaos runs.
const ReapInterval = 500 * time.Millisecond

// Server is a toxiproxy server run by mailchaos, with mailchaos' toxics
// registered, its HTTP API on a loopback port and a [Reaper]. Its proxies
// live in this process: they go away with it.
type Server struct {
	api    *toxiproxy.ApiServer
	http   *http.Server
	ln     net.Listener
	client *Client
	reaper *Reaper
	done   chan struct{}

	closeOnce sync.Once
}

// StartServer starts a toxiproxy server whose API listens on listen
// ("127.0.0.1:0" for a free port). log receives the reaper's messages (nil
// discards them); toxiproxy's own logging is off.
func StartServer(ctx context.Context, listen string, log *slog.Logger) (*Server, error) {
	RegisterToxics()
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("toxiproxy API: listen on %s: %w", listen, err)
	}
	api := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	s := &Server{
		api:  api,
		ln:   ln,
		http: &http.Server{Handler: api.Routes(), ReadHeaderTimeout: 10 * time.Second},
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		_ = s.http.Serve(ln)
	}()
	s.client = NewClient("http://" + ln.Addr().String())
	if err := s.client.Ping(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("toxiproxy API does not answer: %w", err)
	}
	s.reaper = StartReaper(s.client, ReapInterval, log)
	return s, nil
}

// URL is the base URL of the server's API.
func (s *Server) URL() string { return s.client.URL() }

// Client returns a client of the server's API.
func (s *Server) Client() *Client { return s.client }

// Close stops the reaper, removes every toxic (so that no stalled connection
// leaks), closes every proxy and its connections and stops the API. Safe to
// call more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		if s.reaper != nil {
			s.reaper.Stop()
		}
		for _, p := range s.api.Collection.Proxies() {
			p.Toxics.ResetToxics(context.Background())
		}
		s.api.Collection.Clear()
		_ = s.http.Close()
		<-s.done
	})
}

// Link creates a proxy named name from listen to upstream and returns the
// address it listens on. It is how a target's hops are put behind the
// server.
func (s *Server) Link(ctx context.Context, name, listen, upstream string) (string, error) {
	p, err := s.client.CreateProxy(ctx, name, listen, upstream)
	if err != nil {
		return "", fmt.Errorf("link %s: %w", name, err)
	}
	return p.Listen, nil
}
