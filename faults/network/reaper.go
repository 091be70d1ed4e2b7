package network

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Reaper removes mailchaos toxics whose time-to-live has passed, so that no
// fault outlives its planned end by more than the reaper's interval, even
// when the process that injected it died. It runs next to the toxiproxy
// server it cleans (embedded, or `mailchaos proxy serve`).
type Reaper struct {
	client   *Client
	interval time.Duration
	log      *slog.Logger

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// StartReaper starts reaping the server behind c every interval.
func StartReaper(c *Client, interval time.Duration, log *slog.Logger) *Reaper {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reaper{client: c, interval: interval, log: log, stop: make(chan struct{}), done: make(chan struct{})}
	go r.loop()
	return r
}

func (r *Reaper) loop() {
	defer close(r.done)
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), r.interval+callTimeout)
			if n, err := ReapExpired(ctx, r.client, time.Now()); err != nil {
				r.log.Warn("reaping expired toxics", "err", err)
			} else if n > 0 {
				r.log.Info("removed expired toxics", "count", n)
			}
			cancel()
		}
	}
}

// Stop stops the reaper and waits for it. Safe to call more than once.
func (r *Reaper) Stop() {
	r.once.Do(func() { close(r.stop) })
	<-r.done
}

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
