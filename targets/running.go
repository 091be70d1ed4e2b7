package targets

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

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
	if r.Target, err = addresses(ctx, stack, srv); err != nil {
		_ = r.Close(ctx)
		return nil, err
	}
	return r, nil
}

// addresses fills in the description of a started stack with where its
// endpoints listen and what its links connect, the SMTP ingress link
// created on srv. The stack must have exactly the endpoints and links its
// description names.
func addresses(ctx context.Context, stack *mailstack.Stack, srv *proxy.Server) (faults.Target, error) {
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
			ingress, err := srv.Link(ctx, LinkSMTPIngress, inProcessListen, smtp)
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

// Open makes an external target ready: with a toxiproxy server in the file
// (or given by toxiproxyURL, which wins), links are expected to exist there
// and are created when missing; without one, an in-process server is
// started and the links are created on it at their listen addresses.
func Open(ctx context.Context, f File, toxiproxyURL string, log *slog.Logger) (*Running, error) {
	t := f.Target()
	r := &Running{Target: t}
	if toxiproxyURL != "" {
		t.Toxiproxy = toxiproxyURL
	}
	if t.Toxiproxy == "" && len(t.Links) > 0 {
		// The file's links may listen off loopback only when the file
		// allows it (and its validation had the command line's consent).
		srv, err := proxy.StartServerWith(ctx, proxy.ServerOptions{Listen: inProcessListen, Log: log, AllowRemote: f.AllowRemote})
		if err != nil {
			return nil, err
		}
		r.proxy, t.Toxiproxy = srv, srv.URL()
	}
	r.Target = t
	if len(t.Links) == 0 {
		return r, nil
	}
	c := network.NewClient(t.Toxiproxy)
	existing, err := c.Proxies(ctx)
	if err != nil {
		r.Close(ctx)
		return nil, fmt.Errorf("toxiproxy at %s: %w", t.Toxiproxy, err)
	}
	for i, l := range t.Links {
		if p, ok := existing[l.Name]; ok {
			if l.Upstream != "" && p.Upstream != l.Upstream {
				r.Close(ctx)
				return nil, fmt.Errorf("link %s: the proxy on %s forwards to %s, the target file says %s", l.Name, t.Toxiproxy, p.Upstream, l.Upstream)
			}
			r.Target.Links[i].Listen = p.Listen
			continue
		}
		p, err := c.CreateProxy(ctx, l.Name, l.Listen, l.Upstream)
		if err != nil {
			r.Close(ctx)
			return nil, fmt.Errorf("create link %s: %w", l.Name, err)
		}
		r.Target.Links[i].Listen = p.Listen
	}
	return r, nil
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
