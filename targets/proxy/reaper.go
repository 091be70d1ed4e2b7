package proxy

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/mailchaos/mailchaos/faults/network"
)

// Reaper removes mailchaos toxics whose time-to-live has passed, so that no
// fault outlives its planned end by more than the reaper's interval, even
// when the process that injected it died. It runs next to the toxiproxy
// server it cleans (embedded, or `mailchaos proxy serve`).
type Reaper struct {
	client   *network.Client
	interval time.Duration
	log      *slog.Logger

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// StartReaper starts reaping the server behind c every interval.
func StartReaper(c *network.Client, interval time.Duration, log *slog.Logger) *Reaper {
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
			ctx, cancel := context.WithTimeout(context.Background(), r.interval+network.CallTimeout)
			if n, err := network.ReapExpired(ctx, r.client, time.Now()); err != nil {
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
