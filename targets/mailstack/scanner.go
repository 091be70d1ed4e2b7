package mailstack

import (
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailchaos/mailchaos/clamd"
)

// Quarantine and bounce reasons.
const (
	reasonVirus       = "virus"
	reasonInterceptor = "interceptor"
	reasonUnscannable = "unscannable"
)

// engine is the MTA's side of one anti-virus engine.
type engine struct {
	name   string
	client *clamd.Client
	m      *engineMetrics
}

// outcome is the result of one scan pass over a message.
type outcome int

const (
	outcomeClean outcome = iota
	outcomeInfected
	outcomeFailed  // some engine gave no verdict; the message may be deferred
	outcomeAborted // the stack is stopping; the message goes back to the queue
)

// worker takes messages from the queue until it closes. ctx ends the scans
// of a stack that stops without waiting.
func (s *Stack) worker(ctx context.Context) {
	for {
		msg, ok := s.queue.pop()
		if !ok {
			return
		}
		s.metrics.workersBusy.Inc()
		s.process(ctx, msg)
		s.queue.done()
		s.metrics.workersBusy.Dec()
	}
}

// process runs one pass over msg and acts on its outcome.
func (s *Stack) process(ctx context.Context, msg *message) {
	s.metrics.queueScanning.Inc()
	defer s.metrics.queueScanning.Dec()
	s.ledger.update(msg.queueID, func(r *Record) { r.State = StateScanning; r.Attempts++ })

	if pattern, ok := s.intercepted(msg.data); ok {
		s.log.Info("intercepted", "queue_id", msg.queueID, "pattern", pattern)
		s.quarantine(msg, reasonInterceptor, "")
		return
	}
	out, signature := s.scanPass(ctx, msg)
	switch out {
	case outcomeClean:
		s.deliver(msg)
	case outcomeInfected:
		s.quarantine(msg, reasonVirus, signature)
	case outcomeAborted:
		s.ledger.update(msg.queueID, func(r *Record) { r.State = StateQueued })
		s.queue.push(msg)
	case outcomeFailed:
		d := s.cfg.Scan.Defer
		if d.Enabled && msg.deferrals < d.MaxDeferrals {
			backoff := d.Backoff << msg.deferrals
			if backoff > d.MaxBackoff || backoff <= 0 {
				backoff = d.MaxBackoff
			}
			msg.deferrals++
			s.ledger.update(msg.queueID, func(r *Record) { r.State = StateDeferred; r.Deferrals = msg.deferrals })
			s.metrics.deferred.Inc()
			s.log.Debug("deferred", "queue_id", msg.queueID, "backoff", backoff, "deferrals", msg.deferrals)
			s.queue.deferUntil(msg, time.Now().Add(backoff))
			return
		}
		if s.cfg.Scan.OnUnscannable == UnscannableBounce {
			s.bounce(msg, reasonUnscannable)
			return
		}
		s.quarantine(msg, reasonUnscannable, "")
	}
}

// intercepted reports whether data contains a blocked pattern, in its raw
// bytes or in a decoded MIME part.
func (s *Stack) intercepted(data []byte) (string, bool) {
	if s.block == nil {
		return "", false
	}
	return s.block.Match(data)
}

// scanPass scans msg with every engine in parallel and waits for every
// verdict. An engine retries a failed attempt up to the configured number of
// retries. With deferral on, the pass stops as soon as K attempts have
// failed. Any engine reporting a virus makes the message infected, even when
// another engine gave no verdict.
func (s *Stack) scanPass(ctx context.Context, msg *message) (outcome, string) {
	pass, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		failures atomic.Int32
		mu       sync.Mutex
		sig      string
		infected bool
		missing  int
		wg       sync.WaitGroup
	)
	d := s.cfg.Scan.Defer
	for _, e := range s.engines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, ok := s.scanWithRetries(pass, e, msg.data, func() {
				if n := failures.Add(1); d.Enabled && int(n) >= d.After {
					cancel()
				}
			})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case !ok:
				missing++
			case res.Infected:
				if !infected {
					infected, sig = true, res.Signature
				}
			}
		}()
	}
	wg.Wait()
	switch {
	case infected:
		return outcomeInfected, sig
	case ctx.Err() != nil:
		return outcomeAborted, ""
	case missing > 0:
		return outcomeFailed, ""
	}
	return outcomeClean, ""
}

// scanWithRetries asks one engine for a verdict, retrying failed attempts.
// failed is called after each failed attempt. It returns false when the
// engine gave no verdict.
func (s *Stack) scanWithRetries(ctx context.Context, e *engine, data []byte, failed func()) (clamd.Result, bool) {
	for attempt := 0; attempt <= s.cfg.Scan.Retries; attempt++ {
		if ctx.Err() != nil {
			return clamd.Result{}, false
		}
		if attempt > 0 {
			e.m.retries.Inc()
		}
		actx, cancel := context.WithTimeout(ctx, s.cfg.Scan.Timeout)
		s.metrics.inFlight.Inc()
		start := time.Now()
		res, err := e.client.Scan(actx, data)
		e.m.duration.Observe(time.Since(start).Seconds())
		s.metrics.inFlight.Dec()
		timedOut := errors.Is(actx.Err(), context.DeadlineExceeded) ||
			errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded)
		cancel()
		if err == nil {
			if res.Infected {
				e.m.infected.Inc()
			} else {
				e.m.clean.Inc()
			}
			return res, true
		}
		if ctx.Err() != nil {
			// The pass was stopped (deferral or shutdown), not this engine's fault.
			return clamd.Result{}, false
		}
		e.m.failed.Inc()
		if timedOut {
			e.m.timeouts.Inc()
		} else {
			e.m.errors.Inc()
		}
		s.log.Debug("scan failed", "engine", e.name, "attempt", attempt+1, "err", err)
		failed()
	}
	return clamd.Result{}, false
}
