package network

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mailchaos/mailchaos/faults"
)

// ToxicOn is one toxic to add to the proxy of a link.
type ToxicOn struct {
	Link       string
	Type       string
	Stream     string
	Toxicity   float32 // 0 means 1
	Attributes map[string]any
}

// Apply adds toxics for req, each on the toxiproxy server of its link
// ([faults.Target.Server]), named after req's owner, ID and expiry, and
// returns the handle that removes them. If one cannot be added, those
// already added are removed (on every server) and the error is returned.
func Apply(ctx context.Context, req faults.Request, toxics []ToxicOn) (faults.Handle, error) {
	for _, t := range toxics {
		if req.Target.Server(t.Link) == "" {
			return faults.Handle{}, fmt.Errorf("link %s has no toxiproxy server", t.Link)
		}
	}
	now := time.Now()
	h := faults.Intent(req)
	h.Toxiproxy, h.Servers = normalize(h.Toxiproxy), normalizeAll(h.Servers)
	h.Injected, h.Expires = now, now.Add(req.TTL)
	clients := map[string]*Client{}
	for i, t := range toxics {
		if ctx.Err() != nil {
			return faults.Handle{}, rollback(ctx, h, fmt.Errorf("add the toxics of %s: %w", req.ID, context.Cause(ctx)))
		}
		server := normalize(req.Target.Server(t.Link))
		c, ok := clients[server]
		if !ok {
			c = NewClient(server)
			clients[server] = c
		}
		name := ToxicName(req.Owner, req.ID, h.Expires, i)
		// Noted before the call: a call that fails on our side (a time-out)
		// may still have added the toxic on the server's.
		ref := faults.ToxicRef{Proxy: t.Link, Name: name}
		if server != h.Toxiproxy {
			ref.Toxiproxy = server
		}
		h.Toxics = append(h.Toxics, ref)
		// A call under way is not cut short by ctx: the server would go on
		// and add the toxic after the rollback below had looked for it,
		// leaving it in place. ctx is checked between calls instead.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), CallTimeout)
		err := c.AddToxic(actx, t.Link, Toxic{Name: name, Type: t.Type, Stream: t.Stream,
			Toxicity: t.Toxicity, Attributes: t.Attributes})
		cancel()
		if err == nil && ctx.Err() != nil {
			err = context.Cause(ctx)
		}
		if err != nil {
			return faults.Handle{}, rollback(ctx, h, fmt.Errorf("add %s toxic on link %s (toxiproxy %s): %w", t.Type, t.Link, server, err))
		}
	}
	return h, nil
}

// normalize is the URL a [Client] of base uses, so that servers compare
// equal however they were written.
func normalize(base string) string {
	if base == "" {
		return ""
	}
	return NewClient(base).URL()
}

func normalizeAll(bases []string) []string {
	var out []string
	for _, b := range bases {
		out = append(out, normalize(b))
	}
	return out
}

// rollback removes the toxics h lists after err ended their application,
// and returns err, or a [*faults.RollbackError] when some may be left.
func rollback(ctx context.Context, h faults.Handle, err error) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), CallTimeout)
	defer cancel()
	if rerr := Remove(rctx, h); rerr != nil {
		return &faults.RollbackError{Handle: h, Err: errors.Join(err, rerr)}
	}
	return err
}

// byServer groups the toxics of h by the server that holds them, servers
// in the order of their first toxic.
func byServer(h faults.Handle) (servers []string, refs map[string][]faults.ToxicRef) {
	refs = map[string][]faults.ToxicRef{}
	for _, ref := range h.Toxics {
		s := h.ServerOf(ref)
		if _, ok := refs[s]; !ok {
			servers = append(servers, s)
		}
		refs[s] = append(refs[s], ref)
	}
	return servers, refs
}

// Remove removes the toxics of a handle, each from its own server. It is
// idempotent: toxics or proxies already gone are not an error. Every
// toxic is tried even if one fails (or its server cannot be reached), and
// every error names the server.
func Remove(ctx context.Context, h faults.Handle) error {
	servers, refs := byServer(h)
	var errs []error
	for _, s := range servers {
		if err := removeOn(ctx, NewClient(s), refs[s]); err != nil {
			errs = append(errs, fmt.Errorf("toxiproxy %s: %w", s, err))
		}
	}
	return errors.Join(errs...)
}

// RemoveOn removes those toxics of h that are on server (compared as
// [Client.URL] writes it); the others are left alone.
func RemoveOn(ctx context.Context, h faults.Handle, server string) error {
	c := NewClient(server)
	servers, refs := byServer(h)
	var mine []faults.ToxicRef
	for _, s := range servers {
		if normalize(s) == c.URL() {
			mine = append(mine, refs[s]...)
		}
	}
	return removeOn(ctx, c, mine)
}

func removeOn(ctx context.Context, c *Client, refs []faults.ToxicRef) error {
	var errs []error
	present := map[string]map[string]Toxic{} // by proxy, by name
	for _, ref := range refs {
		if _, ok := present[ref.Proxy]; !ok {
			ts, err := c.Toxics(ctx, ref.Proxy)
			if err != nil && !IsNotFound(err) {
				errs = append(errs, fmt.Errorf("list the toxics of link %s: %w", ref.Proxy, err))
				continue
			}
			present[ref.Proxy] = map[string]Toxic{}
			for _, t := range ts {
				present[ref.Proxy][t.Name] = t
			}
		}
		t, ok := present[ref.Proxy][ref.Name]
		if !ok {
			continue // already gone
		}
		if err := removeToxic(ctx, c, ref.Proxy, t); err != nil {
			errs = append(errs, fmt.Errorf("remove toxic %s from link %s: %w", ref.Name, ref.Proxy, err))
		}
	}
	return errors.Join(errs...)
}

// Active reports whether any toxic of h is still on its proxy, on
// whichever server holds it.
func Active(ctx context.Context, h faults.Handle) (bool, error) {
	servers, refs := byServer(h)
	for _, s := range servers {
		c := NewClient(s)
		for _, t := range refs[s] {
			ts, err := c.Toxics(ctx, t.Proxy)
			if IsNotFound(err) {
				continue
			}
			if err != nil {
				return false, fmt.Errorf("toxiproxy %s: %w", s, err)
			}
			for _, x := range ts {
				if x.Name == t.Name {
					return true, nil
				}
			}
		}
	}
	return false, nil
}

// CheckLinks returns a ParamError-style error for link names req's target
// does not have, or for no links at all.
func CheckLinks(fault string, target faults.Target, links []string) error {
	if len(links) == 0 {
		return &faults.ParamError{Fault: fault, Param: "link", Msg: "is required",
			Allowed: "one of the target's links: " + joinOr(target.LinkNames())}
	}
	for _, l := range links {
		if _, ok := target.Link(l); !ok {
			return &faults.ParamError{Fault: fault, Param: "link", Value: l,
				Msg:     "the target has no such link" + faults.Suggest(l, target.LinkNames()),
				Allowed: "one of " + joinOr(target.LinkNames())}
		}
	}
	return nil
}

func joinOr(names []string) string {
	if len(names) == 0 {
		return "(none)"
	}
	s := names[0]
	for _, n := range names[1:] {
		s += ", " + n
	}
	return s
}
