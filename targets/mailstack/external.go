package mailstack

import (
	"context"
	"time"

	"github.com/mailchaos/mailchaos/clamd"
)

// externalPingTimeout bounds the start-up check of each external engine.
const externalPingTimeout = 2 * time.Second

// warnSilentEngines pings every external engine once (clamd PING, at its
// own address, not through a link) and logs an error for each that does
// not answer: the stack starts all the same, but every message it scans
// waits for that engine and is deferred until it answers. It blocks for at
// most externalPingTimeout per engine, and less if ctx ends.
func (s *Stack) warnSilentEngines(ctx context.Context) {
	for _, ec := range s.cfg.Engines {
		if !ec.External {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, externalPingTimeout)
		err := (&clamd.Client{Addr: ec.Dial}).Ping(pctx)
		cancel()
		if err != nil {
			s.log.Error("engine "+ec.Name+" at "+ec.Dial+" does not answer: every message scanned by it will be deferred until it does",
				"engine", ec.Name, "addr", ec.Dial, "err", err)
		}
	}
}
