package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
)

// ProxyChange is a change to a proxy; empty fields are left as they are.
type ProxyChange struct {
	Listen   string `json:"listen,omitempty"`
	Upstream string `json:"upstream,omitempty"`
	Enabled  *bool  `json:"enabled,omitempty"`
}

// UpdateProxy changes a proxy. Toxiproxy restarts a proxy whose listen
// address or upstream changes: its connections are closed.
func (c *Client) UpdateProxy(ctx context.Context, name string, ch ProxyChange) (Proxy, error) {
	var out Proxy
	err := c.do(ctx, http.MethodPatch, "/proxies/"+url.PathEscape(name), ch, &out)
	return out, err
}

// What [SyncLinks] did to a link.
const (
	LinkCreated   = "created"
	LinkUpdated   = "updated"
	LinkUnchanged = "unchanged"
	LinkRemoved   = "removed"
)

// LinkSync is what [SyncLinks] did to one link: Action (LinkCreated, ...)
// and the link as it is now, or Err if it failed.
type LinkSync struct {
	Name, Action, Listen, Upstream string
	Err                            error
}

// SyncLinks makes the server behind c have the links want (Name, Listen,
// Upstream; an empty listen address or port 0 means any): missing ones are
// created, ones whose upstream or fixed listen address differ are updated
// (toxiproxy restarts them), and with prune the server's other proxies are
// removed. A link that a fault diverted ([Divert]) is compared by the
// upstream it will be restored to and is not changed while the fault
// lasts. It returns one entry per link, want's first in order, then the
// removed ones by name; the error is for the server as a whole (it could
// not be listed), a link's own failure is in its entry.
func SyncLinks(ctx context.Context, c *Client, want []Proxy, prune bool) ([]LinkSync, error) {
	have, err := c.Proxies(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]LinkSync, 0, len(want))
	named := map[string]bool{}
	for _, w := range want {
		named[w.Name] = true
		out = append(out, syncLink(ctx, c, w, have))
	}
	if !prune {
		return out, nil
	}
	var extra []string
	for name := range have {
		if !named[name] {
			extra = append(extra, name)
		}
	}
	slices.Sort(extra)
	for _, name := range extra {
		p := have[name]
		r := LinkSync{Name: name, Action: LinkRemoved, Listen: p.Listen, Upstream: p.Upstream}
		r.Err = c.DeleteProxy(ctx, name)
		out = append(out, r)
	}
	return out, nil
}

func syncLink(ctx context.Context, c *Client, w Proxy, have map[string]Proxy) LinkSync {
	r := LinkSync{Name: w.Name, Listen: w.Listen, Upstream: w.Upstream}
	p, ok := have[w.Name]
	if !ok {
		listen := w.Listen
		if listen == "" {
			listen = "127.0.0.1:0"
		}
		got, err := c.CreateProxy(ctx, w.Name, listen, w.Upstream)
		r.Action, r.Listen, r.Err = LinkCreated, got.Listen, err
		return r
	}
	upstream, divert := p.Upstream, ""
	for _, t := range p.Toxics {
		if restore, _ := t.Attributes["restore"].(string); t.Type == ToxicDivert && restore != "" {
			upstream, divert = restore, t.Name
		}
	}
	var ch ProxyChange
	if w.Upstream != upstream {
		ch.Upstream = w.Upstream
	}
	if fixedPort(w.Listen) && !sameAddr(w.Listen, p.Listen) {
		ch.Listen = w.Listen
	}
	r.Listen, r.Upstream = p.Listen, upstream
	if ch == (ProxyChange{}) {
		r.Action = LinkUnchanged
		return r
	}
	r.Action = LinkUpdated
	if divert != "" {
		r.Err = fmt.Errorf("a fault diverts it (toxic %s): left as it is; sync again once the fault has ended", divert)
		return r
	}
	got, err := c.UpdateProxy(ctx, w.Name, ch)
	if err != nil {
		r.Err = err
		return r
	}
	r.Listen, r.Upstream = got.Listen, got.Upstream
	return r
}

// fixedPort reports whether addr names a port (not empty, not 0).
func fixedPort(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	return err == nil && port != "" && port != "0"
}

// sameAddr reports whether two host:port addresses are the same, by name
// or resolved.
func sameAddr(a, b string) bool {
	if a == b {
		return true
	}
	ra, err1 := net.ResolveTCPAddr("tcp", a)
	rb, err2 := net.ResolveTCPAddr("tcp", b)
	return errors.Join(err1, err2) == nil && ra.String() == rb.String()
}
