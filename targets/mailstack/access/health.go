package access

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
)

// checkLoop checks st every interval until the tier closes.
func (t *Tier) checkLoop(st *siteState) {
	tick := time.NewTicker(t.cfg.Health.Interval)
	defer tick.Stop()
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-tick.C:
		}
		err := t.check(t.ctx, st)
		if t.ctx.Err() != nil {
			return
		}
		t.recordCheck(st, err)
	}
}

// check runs one active health check of st through the address sessions
// use, within the check timeout.
func (t *Tier) check(ctx context.Context, st *siteState) error {
	h := t.cfg.Health
	ctx, cancel := context.WithTimeout(ctx, h.Timeout)
	defer cancel()
	t.mu.Lock()
	dial := st.dial
	t.mu.Unlock()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", dial)
	if h.Mode == HealthShallow && errors.Is(err, syscall.ECONNRESET) {
		// The handshake completed and the peer reset the connection at
		// once, before the dial looked (a refused one is ECONNREFUSED):
		// it opened, which is all a shallow check asks.
		return nil
	}
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	if h.Mode == HealthShallow {
		return conn.Close()
	}
	// The client sets its own deadlines; the check's timeout closes the
	// connection instead, which ends whatever the client waits for.
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	c := imapclient.New(conn, nil)
	defer c.Close()
	step := func(what string, err error) error {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, ctx.Err())
		}
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
	if err := step("greeting", c.WaitGreeting()); err != nil {
		return err
	}
	if h.Login != nil {
		if err := step("login", c.Login(h.Login.Address, h.Login.Password).Wait()); err != nil {
			return err
		}
	} else if err := step("noop", c.Noop().Wait()); err != nil {
		return err
	}
	return step("logout", c.Logout().Wait())
}

// recordCheck applies a check's result to st's health.
func (t *Tier) recordCheck(st *siteState, err error) {
	h := t.cfg.Health
	t.mu.Lock()
	defer t.mu.Unlock()
	st.c.Checks++
	if err == nil {
		t.m.checks.WithLabelValues(st.cfg.Name, "ok").Inc()
		st.okRun, st.failRun = st.okRun+1, 0
		if !st.healthy && st.okRun >= h.HealthyThreshold {
			st.healthy = true
			t.log.Info("site healthy", "site", st.cfg.Name)
		}
		return
	}
	st.c.CheckFailures++
	t.m.checks.WithLabelValues(st.cfg.Name, "failed").Inc()
	st.failRun, st.okRun = st.failRun+1, 0
	t.log.Debug("health check failed", "site", st.cfg.Name, "err", err)
	if st.healthy && st.failRun >= h.UnhealthyThreshold {
		st.healthy = false
		st.c.Unhealthy++
		t.m.ejections.WithLabelValues(st.cfg.Name, ByHealthCheck).Inc()
		t.log.Warn("site unhealthy", "site", st.cfg.Name, "err", err)
	}
}
