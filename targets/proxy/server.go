package proxy

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

	"github.com/mailchaos/mailchaos/faults/network"
	"github.com/mailchaos/mailchaos/internal/httpguard"
)

// ReapInterval is how often a server's reaper looks for expired toxics: the
// most a fault can outlive its time-to-live on a server mailchaos runs.
const ReapInterval = 500 * time.Millisecond

// shutdownGrace is how long Close lets API requests under way finish.
const shutdownGrace = 2 * time.Second

// Server is a toxiproxy server run by mailchaos, with mailchaos' toxics
// registered, its HTTP API on a loopback port and a [Reaper]. Its proxies
// live in this process: they go away with it.
type Server struct {
	api    *toxiproxy.ApiServer
	http   *http.Server
	ln     net.Listener
	client *network.Client
	reaper *Reaper
	log    *slog.Logger
	done   chan struct{}

	// statePath is the state file ("" for none); stateMu serialises its
	// writes; saved is what was last written.
	statePath string
	stateMu   sync.Mutex
	saved     []Link
	// closing is set (under stateMu) once Close tears the links down:
	// nothing is saved from then on.
	closing bool

	closeOnce sync.Once
}

// ServerOptions configure a toxiproxy server run by mailchaos.
type ServerOptions struct {
	// Listen is the API's listen address ("127.0.0.1:0" for a free port).
	Listen string
	// Log receives the reaper's messages; nil discards them. Toxiproxy's
	// own logging is off.
	Log *slog.Logger
	// Token, when not empty, is the bearer token every API request must
	// carry (see internal/httpguard).
	Token string
	// AllowRemote lets API clients create proxies that listen off
	// loopback. Without it, POST /proxies, POST or PATCH /proxies/NAME
	// and POST /populate with such a listen address are refused with 403.
	AllowRemote bool
	// Links are created when the server starts, before its API answers,
	// and kept: the links of a links file that belong to this server.
	Links []Link
	// State, when not empty, is the path of a state file: the links the
	// server had when it stopped are restored from it at start (without
	// their toxics: faults never survive a restart), merged with Links as
	// [MergeLinks] says, and every API write that changes the links is
	// saved to it ([SaveState]) before the API answers.
	State string
}

// StartServer starts a toxiproxy server whose API listens on listen
// ("127.0.0.1:0" for a free port), with no token and proxies on loopback
// only. log receives the reaper's messages (nil discards them); toxiproxy's
// own logging is off.
func StartServer(ctx context.Context, listen string, log *slog.Logger) (*Server, error) {
	return StartServerWith(ctx, ServerOptions{Listen: listen, Log: log})
}

// StartServerWith starts a toxiproxy server as opts say. Its API is behind
// the browser guard of internal/httpguard (Host, Origin, JSON writes, the
// token) and a check of the proxies' listen addresses.
func StartServerWith(ctx context.Context, opts ServerOptions) (*Server, error) {
	RegisterToxics()
	links := opts.Links
	if opts.State != "" {
		kept, err := LoadState(opts.State)
		if err != nil {
			return nil, err
		}
		links = MergeLinks(opts.Links, kept)
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("toxiproxy API: listen on %s: %w", opts.Listen, err)
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	api := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	s := &Server{api: api, ln: ln, log: log, statePath: opts.State, done: make(chan struct{})}
	var h http.Handler = api.Routes()
	if opts.State != "" {
		h = s.persisting(h)
	}
	if !opts.AllowRemote {
		h = loopbackProxies(h)
	}
	h = httpguard.Wrap(h, httpguard.Config{Listen: opts.Listen, Token: opts.Token})
	s.http = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	if err := s.createLinks(links, opts.AllowRemote); err != nil {
		api.Collection.Clear()
		_ = ln.Close()
		return nil, err
	}
	if opts.State != "" {
		// The ports chosen for links on port 0 are kept from now on; a
		// state file that cannot be written is found now, not at the
		// first change.
		if err := s.saveLinks(); err != nil {
			api.Collection.Clear()
			_ = ln.Close()
			return nil, err
		}
	}
	go func() {
		defer close(s.done)
		_ = s.http.Serve(ln)
	}()
	s.client = network.NewClient("http://" + ln.Addr().String()).WithToken(opts.Token)
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
func (s *Server) Client() *network.Client { return s.client }

// Close stops the reaper and the API, removes every toxic (so that no
// stalled connection leaks), and closes every proxy and its connections.
// Safe to call more than once. The state file is left as it is: the links
// come back at the next start.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		if s.reaper != nil {
			s.reaper.Stop()
		}
		// The API goes first: handlers under way get a moment to finish
		// (their changes saved), then no handler saves the torn-down
		// links as if they had been removed.
		ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		if err := s.http.Shutdown(ctx); err != nil {
			_ = s.http.Close()
		}
		cancel()
		<-s.done
		s.stateMu.Lock()
		s.closing = true
		s.stateMu.Unlock()
		for _, p := range s.api.Collection.Proxies() {
			p.Toxics.ResetToxics(context.Background())
		}
		s.api.Collection.Clear()
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

// RemoveFaults removes every mailchaos toxic on the server, whoever added
// it (a diverted link is pointed back), and returns how many: what the
// owner of a server does before it lets its links carry traffic that must
// drain cleanly.
func (s *Server) RemoveFaults(ctx context.Context) (int, error) {
	return network.RemoveOwnedAll(ctx, s.client)
}
