package network

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Divert points link's proxy at to instead of its upstream, for req, and
// returns the toxic ([ToxicDivert]) that records the upstream to restore. The toxic is
// added first, so that a diverted link is never without it; if pointing
// the proxy fails, the toxic is removed again. Toxiproxy restarts the proxy
// to change its upstream, so connections through the link are closed.
func Divert(ctx context.Context, c *Client, owner, id, link, to string, expires time.Time, n int) (Toxic, error) {
	p, err := c.Proxy(ctx, link)
	if err != nil {
		return Toxic{}, fmt.Errorf("divert link %s: %w", link, err)
	}
	for _, t := range p.Toxics {
		if t.Type == ToxicDivert {
			return Toxic{}, fmt.Errorf("divert link %s: it is already diverted (toxic %s)", link, t.Name)
		}
	}
	t := Toxic{Name: ToxicName(owner, id, expires, n), Type: ToxicDivert, Stream: Downstream,
		Attributes: map[string]any{"restore": p.Upstream}}
	if err := c.AddToxic(ctx, link, t); err != nil {
		return Toxic{}, fmt.Errorf("divert link %s: %w", link, err)
	}
	if _, err := c.SetUpstream(ctx, link, to); err != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), CallTimeout)
		defer cancel()
		return Toxic{}, errors.Join(fmt.Errorf("divert link %s: %w", link, err), c.RemoveToxic(rctx, link, t.Name))
	}
	return t, nil
}

// removeToxic removes one toxic of a proxy; a divert toxic's proxy is
// pointed back at its upstream first.
func removeToxic(ctx context.Context, c *Client, proxy string, t Toxic) error {
	if t.Type == ToxicDivert {
		restore, _ := t.Attributes["restore"].(string)
		if restore == "" {
			return fmt.Errorf("divert toxic %s on %s names no upstream to restore", t.Name, proxy)
		}
		if _, err := c.SetUpstream(ctx, proxy, restore); err != nil && !IsNotFound(err) {
			return fmt.Errorf("restore the upstream of %s to %s: %w", proxy, restore, err)
		}
	}
	return c.RemoveToxic(ctx, proxy, t.Name)
}
