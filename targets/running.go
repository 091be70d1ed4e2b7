package targets

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/faults/network"
	"github.com/mailchaos/mailchaos/targets/mailstack"
	"github.com/mailchaos/mailchaos/targets/proxy"
)

// Running is a target ready to be hurt: its description for the faults, and
// whatever mailchaos started for it (the embedded stack, an in-process
// toxiproxy server), which Close stops.
type Running struct {
	// Target is the description faults work on.
	Target faults.Target
	// Stack is the embedded reference stack, or nil for an external target.
	Stack *mailstack.Stack

	proxy *proxy.Server
}

// LinkSMTPIngress is the embedded stack's link from SMTP clients to its
// SMTP server.
const LinkSMTPIngress = "smtp-ingress"

// StartMailstack starts the embedded reference stack with every internal
// hop (MTA → each AV engine, balancer → each access site) and its SMTP
// ingress behind an in-process toxiproxy server, so network faults work on
// it exactly as on an external stack. The target is the stack's
// description (see [Spec.Describe]) with the addresses it listens on.
func StartMailstack(ctx context.Context, cfg mailstack.Config, log *slog.Logger) (*Running, error) {
	return startMailstack(ctx, cfg, "", log)
}

// startMailstack is [StartMailstack] with the smtp-ingress link listening
// on ingress ("" for a free loopback port).
func startMailstack(ctx context.Context, cfg mailstack.Config, ingress string, log *slog.Logger) (*Running, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv, err := proxy.StartServer(ctx, inProcessListen, log.With("component", "toxiproxy"))
	if err != nil {
		return nil, err
	}
	stack, err := mailstack.New(cfg, mailstack.Options{
		Logger: log.With("component", "mailstack"),
		Interpose: func(ctx context.Context, l mailstack.Link) (string, error) {
			return srv.Link(ctx, l.Name, inProcessListen, l.Upstream)
		},
	})
	if err != nil {
		srv.Close()
		return nil, err
	}
	if err := stack.Start(ctx); err != nil {
		srv.Close()
		return nil, err
	}
	r := &Running{Stack: stack, proxy: srv}
	if r.Target, err = addresses(ctx, stack, srv, ingress); err != nil {
		_ = r.Close(ctx)
		return nil, err
	}
	return r, nil
}

// addresses fills in the description of a started stack with where its
// endpoints listen and what its links connect, the SMTP ingress link
// created on srv at ingress (a free port if ""). The stack must have
// exactly the endpoints and links its description names.
func addresses(ctx context.Context, stack *mailstack.Stack, srv *proxy.Server, ingress string) (faults.Target, error) {
	t := describeMailstack(stack.Config())
	t.Toxiproxy = srv.URL()
	eps := stack.Endpoints()
	for _, e := range eps {
		if _, ok := t.Endpoints[e.Name]; !ok {
			return t, fmt.Errorf("targets: the embedded stack has an endpoint %s that its description lacks", e.Name)
		}
		t.Endpoints[e.Name] = e.Addr
	}
	if len(eps) != len(t.Endpoints) {
		return t, fmt.Errorf("targets: the embedded stack has %d endpoints, its description %d", len(eps), len(t.Endpoints))
	}
	hops := map[string]mailstack.Link{}
	for _, l := range stack.Links() {
		hops[l.Name] = l
	}
	if len(hops) != len(t.Links)-1 {
		return t, fmt.Errorf("targets: the embedded stack has %d links, its description %d", len(hops)+1, len(t.Links))
	}
	smtp := t.Endpoints["smtp"]
	for i, l := range t.Links {
		if l.Name == LinkSMTPIngress {
			// Clients reach SMTP through a link too, so that faults can
			// sit on the ingress (the smtp endpoint is the link's side).
			ingress, err := srv.Link(ctx, LinkSMTPIngress, cmp.Or(ingress, inProcessListen), smtp)
			if err != nil {
				return t, fmt.Errorf("link %s: %w", LinkSMTPIngress, err)
			}
			t.Links[i] = faults.Link{Name: l.Name, Listen: ingress, Upstream: smtp}
			t.Endpoints["smtp"] = ingress
			continue
		}
		hop, ok := hops[l.Name]
		if !ok {
			return t, fmt.Errorf("targets: the embedded stack has no link %s, which its description names", l.Name)
		}
		t.Links[i] = faults.Link{Name: l.Name, Listen: hop.Dial, Upstream: hop.Upstream}
	}
	return t, nil
}

// Open makes an external target ready. Each link lives on a toxiproxy
// server: its own (toxiproxy: on the link), else the file's (or
// toxiproxyURL, which wins over the file's), else an in-process server
// started for the links that name none. Links are expected to exist on
// their server and are created when missing.
//
// Every server must answer before anything is created: one that cannot be
// reached fails Open with an error naming it and the links on it, and
// nothing is touched on the others.
func Open(ctx context.Context, f File, toxiproxyURL string, log *slog.Logger) (*Running, error) {
	t := f.Target()
	if toxiproxyURL != "" {
		t.Toxiproxy = toxiproxyURL
	}
	r := &Running{Target: t}
	if t.Toxiproxy == "" {
		t.Toxiproxy = defaultServer(t)
	}
	if len(t.Links) == 0 {
		return r, nil
	}
	// Servers elsewhere first: one that does not answer fails the target
	// before anything is started or created.
	servers, existing, err := reach(ctx, t)
	if err != nil {
		return nil, err
	}
	if t.Toxiproxy == "" {
		// The file's links may listen off loopback only when the file
		// allows it (and its validation had the command line's consent).
		srv, err := proxy.StartServerWith(ctx, proxy.ServerOptions{Listen: inProcessListen, Log: log, AllowRemote: f.AllowRemote})
		if err != nil {
			return nil, err
		}
		r.proxy, t.Toxiproxy = srv, srv.URL()
		servers, existing[srv.URL()] = append(servers, srv.URL()), nil
	}
	r.Target = t
	for _, server := range servers {
		c := network.NewClient(server)
		for i, l := range t.Links {
			if t.Server(l.Name) != server {
				continue
			}
			if p, ok := existing[server][l.Name]; ok {
				if l.Upstream != "" && p.Upstream != l.Upstream {
					_ = r.Close(ctx)
					return nil, fmt.Errorf("link %s: the proxy on %s forwards to %s, the target file says %s", l.Name, server, p.Upstream, l.Upstream)
				}
				r.Target.Links[i].Listen = p.Listen
				continue
			}
			p, err := c.CreateProxy(ctx, l.Name, l.Listen, l.Upstream)
			if err != nil {
				_ = r.Close(ctx)
				return nil, fmt.Errorf("create link %s on %s: %w", l.Name, server, err)
			}
			r.Target.Links[i].Listen = p.Listen
		}
	}
	return r, nil
}

// defaultServer is the server of a target whose every link names its own:
// the first link's, so that the target's server is one of its own (the
// links do not use it). It is "" when a link names none.
func defaultServer(t faults.Target) string {
	if len(t.Links) == 0 {
		return ""
	}
	for _, l := range t.Links {
		if l.Toxiproxy == "" {
			return ""
		}
	}
	return t.Links[0].Toxiproxy
}

// reach asks every toxiproxy server of t's links for its proxies, all at
// once, and returns the servers (in the order of [faults.Target.Servers])
// and each one's proxies. Links without a server (t has none) are left
// out. A server that does not answer is an error that
// names it and the links on it; all such servers are in the error.
func reach(ctx context.Context, t faults.Target) ([]string, map[string]map[string]network.Proxy, error) {
	links := map[string][]string{}
	for _, l := range t.Links {
		if s := t.Server(l.Name); s != "" {
			links[s] = append(links[s], l.Name)
		}
	}
	var servers []string
	for _, s := range t.Servers() {
		if len(links[s]) > 0 {
			servers = append(servers, s)
		}
	}
	existing := make([]map[string]network.Proxy, len(servers))
	errs := make([]error, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := network.NewClient(s).Proxies(ctx)
			if err != nil {
				errs[i] = fmt.Errorf("toxiproxy at %s (links %s) does not answer: %w", s, strings.Join(links[s], ", "), err)
			}
			existing[i] = p
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	out := map[string]map[string]network.Proxy{}
	for i, s := range servers {
		out[s] = existing[i]
	}
	return servers, out, nil
}

// Close stops what mailchaos started for the target: the embedded stack is
// shut down gracefully within ctx and the in-process toxiproxy server (with
// every toxic on it) is closed. An external stack is left running.
func (r *Running) Close(ctx context.Context) error {
	var errs []error
	if r.proxy != nil {
		// Faults go first, so that the stack can drain through healthy links.
		if _, err := r.proxy.RemoveFaults(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if r.Stack != nil {
		if err := r.Stack.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("mailstack shutdown: %w", err))
		}
		_ = r.Stack.Close()
	}
	if r.proxy != nil {
		r.proxy.Close()
	}
	return errors.Join(errs...)
}
