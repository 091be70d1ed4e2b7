package network

import (
	"context"
	"time"
)

// ReapExpired removes every mailchaos toxic that expired before now and
// returns how many it removed.
func ReapExpired(ctx context.Context, c *Client, now time.Time) (int, error) {
	return removeToxics(ctx, c, func(info ToxicInfo) bool { return info.Expires.Before(now) })
}

// RemoveOwned removes every mailchaos toxic of an owner (and, when id is not
// empty, of one injection): what a host does for a plugin that crashed, and
// what `mailchaos recover` does for a crashed run.
func RemoveOwned(ctx context.Context, c *Client, owner, id string) (int, error) {
	return removeToxics(ctx, c, func(info ToxicInfo) bool {
		return info.Owner == clean(owner) && (id == "" || info.ID == clean(id))
	})
}

func removeToxics(ctx context.Context, c *Client, match func(ToxicInfo) bool) (int, error) {
	proxies, err := c.Proxies(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for name, p := range proxies {
		for _, t := range p.Toxics {
			info, ok := ParseToxicName(t.Name)
			if !ok || !match(info) {
				continue
			}
			if err := removeToxic(ctx, c, name, t); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// RemoveOwnedAll removes every mailchaos toxic on the server, whoever added
// it.
func RemoveOwnedAll(ctx context.Context, c *Client) (int, error) {
	return removeToxics(ctx, c, func(ToxicInfo) bool { return true })
}
