package access

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailchaos/mailchaos/internal/suggest"
	"github.com/mailchaos/mailchaos/internal/yamlfile"
)

// Options are the parts of a tier's set-up that are code, not
// configuration.
type Options struct {
	// NewSession makes the IMAP session of a new connection, on any site:
	// typically the NewSession method of the imapmemserver.Server that
	// holds every mailbox. Required.
	NewSession func() imapserver.Session
	// Logger receives the tier's log. Nil discards it.
	Logger *slog.Logger
	// Registerer receives the tier's metrics. Nil keeps them unregistered.
	Registerer prometheus.Registerer
	// MaxAppendBytes bounds the message of an APPEND (typically the
	// stack's message size limit). Zero means [DefaultMaxAppend].
	MaxAppendBytes int64
}

// Interpose is called once per site during [Tier.Start], after the site
// listens and before the balancer does: it gets the site, the name of its
// link (imap-<site>) and the address the balancer would dial (the site's
// own, or its configured dial address), and returns the address the
// balancer dials instead (typically a proxy's listen address).
type Interpose func(ctx context.Context, site, link, upstream string) (string, error)

// UnknownSiteError is returned for a site name the tier does not have.
type UnknownSiteError struct {
	// Name is the name asked for.
	Name string
	// Valid are the tier's site names.
	Valid []string
}

// Error names the site asked for and the valid ones.
func (e *UnknownSiteError) Error() string {
	return fmt.Sprintf("access: unknown site %q%s (sites: %s)", e.Name, suggest.Hint(e.Name, e.Valid), strings.Join(e.Valid, ", "))
}

// errNotRunning is returned by maintenance calls before Start or after
// Close.
var errNotRunning = errors.New("access: not running (before Start or after Close)")

// SiteStatus is a site's state as the balancer sees it.
type SiteStatus struct {
	// Name is the site's name.
	Name string `json:"name"`
	// Link is the name of the balancer → site link.
	Link string `json:"link"`
	// Addr is where the site listens.
	Addr string `json:"addr"`
	// Dial is the address the balancer connects to (the link).
	Dial string `json:"dial"`
	// Draining is true from Drain until Restore.
	Draining bool `json:"draining"`
	// Healthy is the verdict of the active health checks (always true
	// with health mode none).
	Healthy bool `json:"healthy"`
	// Ejected is true while outlier ejection keeps the site out, until
	// EjectedUntil.
	Ejected      bool      `json:"ejected"`
	EjectedUntil time.Time `json:"ejected_until,omitzero"`
	// Usable is true when the site takes new sessions: not draining,
	// healthy and not ejected.
	Usable bool `json:"usable"`
	// Sessions is how many sessions the balancer holds on the site,
	// including ones being set up.
	Sessions int `json:"sessions"`
	// Counters are the site's totals since Start.
	Counters SiteCounters `json:"counters"`
}

// SiteCounters are a site's totals since Start.
type SiteCounters struct {
	// Placements counts sessions placed on the site.
	Placements uint64 `json:"placements"`
	// Failures counts failed session starts (all kinds).
	Failures uint64 `json:"failures"`
	// Ejections counts outlier ejections.
	Ejections uint64 `json:"ejections"`
	// Unhealthy counts the times active checks marked the site unhealthy.
	Unhealthy uint64 `json:"unhealthy"`
	// Checks and CheckFailures count active health checks.
	Checks        uint64 `json:"checks"`
	CheckFailures uint64 `json:"check_failures"`
	// Drains counts the times the site was drained; Ended and Cut count the
	// sessions drains ended with BYE and the ones cut after the grace.
	Drains uint64 `json:"drains"`
	Ended  uint64 `json:"ended"`
	Cut    uint64 `json:"cut"`
}

// Tier is the access tier: the sites and the balancer in front of them,
// with its health checkers. Create it with [New], then [Tier.Start]; all
// methods are safe for concurrent use.
type Tier struct {
	cfg Config
	log *slog.Logger
	m   *metrics

	sites  []*siteState
	byName map[string]*siteState

	ctx    context.Context // ends at Close; bounds dials and checks
	cancel context.CancelFunc
	wg     sync.WaitGroup // accept loop, sessions, checkers, site loops

	mu       sync.Mutex
	started  bool
	closed   bool
	ln       net.Listener
	rr       int
	sessions map[*session]struct{}
	changed  chan struct{} // closed and replaced whenever a session ends
}

// siteState is a site and what the balancer knows about it. Fields below
// the line are guarded by Tier.mu.
type siteState struct {
	cfg  SiteConfig
	site *Site
	addr string // where the site listens
	dial string // what the balancer dials

	draining  bool
	healthy   bool
	okRun     int // consecutive passed checks
	failRun   int // consecutive failed checks
	ejected   bool
	until     time.Time
	ejections int  // ejections since the last successful session: the back-off exponent
	probation bool // back from an ejection: one failure ejects again
	failures  int  // consecutive failed sessions
	sessions  map[*session]struct{}
	c         SiteCounters
}

// New validates cfg (filling defaults) and builds a tier; nothing listens
// until [Tier.Start]. Invalid configuration is a [yamlfile.Errors] without
// positions.
func New(cfg Config, opts Options) (*Tier, error) {
	cfg.FillDefaults()
	if err := yamlfile.Unpositioned(cfg.Validate()); err != nil {
		return nil, err
	}
	if opts.NewSession == nil {
		return nil, errors.New("access: Options.NewSession is required")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Tier{cfg: cfg, log: log, byName: map[string]*siteState{}, sessions: map[*session]struct{}{},
		changed: make(chan struct{})}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	for _, sc := range cfg.Sites {
		st := &siteState{cfg: sc, healthy: true, sessions: map[*session]struct{}{},
			site: NewSite(sc.Name, opts.NewSession, log.With("site", sc.Name))}
		t.sites = append(t.sites, st)
		t.byName[sc.Name] = st
	}
	m, err := newMetrics(t, opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("access: metrics: %w", err)
	}
	t.m = m
	for _, st := range t.sites {
		name := st.cfg.Name
		st.site.SetLimits(SiteLimits{
			MaxConnections:   cfg.MaxConnections,
			MaxLoginFailures: cfg.MaxLoginFailures,
			MaxAppendBytes:   opts.MaxAppendBytes,
			OnRefused:        func() { m.connRefused.WithLabelValues(name).Inc() },
			OnLockout:        func() { m.lockouts.WithLabelValues(name).Inc() },
			OnRejected:       func(reason string) { m.rejected.WithLabelValues(name, reason).Inc() },
		})
	}
	return t, nil
}

// Config returns the tier's configuration, defaults filled in.
func (t *Tier) Config() Config { return t.cfg }

// Start binds every site's listener, asks interpose (when not nil) for the
// address to reach each site by, binds the balancer on listen and starts
// the health checkers. It returns once everything accepts connections; ctx
// bounds only the start-up. On error, everything already started is
// stopped.
func (t *Tier) Start(ctx context.Context, listen string, interpose Interpose) (err error) {
	t.mu.Lock()
	if t.started || t.closed {
		t.mu.Unlock()
		return errors.New("access: already started")
	}
	t.started = true
	t.mu.Unlock()
	defer func() {
		if err != nil {
			_ = t.Close()
		}
	}()
	var lc net.ListenConfig
	for _, st := range t.sites {
		ln, err := lc.Listen(ctx, "tcp", st.cfg.Listen)
		if err != nil {
			return fmt.Errorf("access: site %s: listen on %s: %w", st.cfg.Name, st.cfg.Listen, err)
		}
		addr := ln.Addr().String()
		t.mu.Lock()
		st.addr = addr
		t.mu.Unlock()
		t.goServe(func() error { return st.site.Serve(ln) })
		upstream := st.cfg.Dial
		if upstream == "" {
			upstream = addr
		}
		dial := upstream
		if interpose != nil {
			if dial, err = interpose(ctx, st.cfg.Name, st.cfg.Link(), upstream); err != nil {
				return fmt.Errorf("access: interpose link %s: %w", st.cfg.Link(), err)
			}
		}
		t.mu.Lock()
		st.dial = dial
		t.mu.Unlock()
	}
	ln, err := lc.Listen(ctx, "tcp", listen)
	if err != nil {
		return fmt.Errorf("access: balancer: listen on %s: %w", listen, err)
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		_ = ln.Close()
		return errors.New("access: closed during start")
	}
	t.ln = ln
	t.mu.Unlock()
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		t.accept(ln)
	}()
	if t.cfg.Health.Mode != HealthNone {
		for _, st := range t.sites {
			t.wg.Add(1)
			go func() {
				defer t.wg.Done()
				t.checkLoop(st)
			}()
		}
	}
	t.log.Info("access tier started", "balancer", ln.Addr().String(), "sites", len(t.sites),
		"health", t.cfg.Health.Mode, "passive", t.cfg.Passive.Enabled, "placement", t.cfg.Placement)
	return nil
}

// goServe runs a site's serve loop in a goroutine owned by the tier.
func (t *Tier) goServe(loop func() error) {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		if err := loop(); err != nil {
			t.log.Error("site stopped", "err", err)
		}
	}()
}

// Addr returns the balancer's address (the users' IMAP endpoint), "" before
// Start.
func (t *Tier) Addr() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ln == nil {
		return ""
	}
	return t.ln.Addr().String()
}

// SiteNames lists the sites in configuration order.
func (t *Tier) SiteNames() []string {
	names := make([]string, len(t.sites))
	for i, st := range t.sites {
		names[i] = st.cfg.Name
	}
	return names
}

// Sites returns every site's state, in configuration order.
func (t *Tier) Sites() []SiteStatus {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]SiteStatus, len(t.sites))
	for i, st := range t.sites {
		t.expire(st, now)
		out[i] = SiteStatus{
			Name: st.cfg.Name, Link: st.cfg.Link(), Addr: st.addr, Dial: st.dial,
			Draining: st.draining, Healthy: st.healthy, Ejected: st.ejected,
			Usable: st.usable(), Sessions: len(st.sessions), Counters: st.c,
		}
		if st.ejected {
			out[i].EjectedUntil = st.until
		}
	}
	return out
}

// Site returns the named site's state, or an [*UnknownSiteError].
func (t *Tier) Site(name string) (SiteStatus, error) {
	st, err := t.lookup(name)
	if err != nil {
		return SiteStatus{}, err
	}
	for _, s := range t.Sites() {
		if s.Name == st.cfg.Name {
			return s, nil
		}
	}
	return SiteStatus{}, &UnknownSiteError{Name: name, Valid: t.SiteNames()}
}

func (t *Tier) lookup(name string) (*siteState, error) {
	st, ok := t.byName[name]
	if !ok {
		return nil, &UnknownSiteError{Name: name, Valid: t.SiteNames()}
	}
	return st, nil
}

// Drain takes a site out for maintenance. At once, the balancer stops
// placing sessions on it and the site greets new connections with BYE;
// then every open session of the site gets an untagged BYE and is closed,
// and Drain waits until the balancer holds no session on the site. Sessions
// still open after the drain grace (or when ctx ends) are cut. It returns
// once the site holds no balancer session: nil, or ctx's error wrapped
// when ctx ended first (the site is drained all the same). Draining a
// drained site ends whatever it still has. An unknown name is an
// [*UnknownSiteError].
func (t *Tier) Drain(ctx context.Context, name string) error {
	st, err := t.lookup(name)
	if err != nil {
		return err
	}
	t.mu.Lock()
	if !t.started || t.closed {
		t.mu.Unlock()
		return errNotRunning
	}
	if !st.draining {
		st.draining = true
		st.c.Drains++
	}
	t.mu.Unlock()
	st.site.SetDraining(true)
	t.log.Info("draining site", "site", name)

	gctx, cancel := context.WithTimeout(ctx, t.cfg.DrainGrace)
	defer cancel()
	ended := st.site.EndSessions(gctx)
	if werr := t.waitIdle(gctx, st); werr != nil {
		cut := t.cut(st)
		t.mu.Lock()
		st.c.Cut += uint64(cut)
		t.mu.Unlock()
		t.m.drained.WithLabelValues(name, "cut").Add(float64(cut))
		t.log.Warn("drain grace over: sessions cut", "site", name, "cut", cut)
		// Cut sessions end as soon as their goroutines see the closed
		// connections; ones still connecting give up within the connect
		// timeout and the greeting bound.
		bound := t.cfg.ConnectTimeout + t.cfg.Passive.Slow + time.Second
		wctx, wcancel := context.WithTimeout(context.WithoutCancel(ctx), bound)
		err = t.waitIdle(wctx, st)
		wcancel()
		if err != nil {
			return fmt.Errorf("access: drain %s: sessions still open after being cut: %w", name, err)
		}
	}
	t.mu.Lock()
	st.c.Ended += uint64(ended)
	t.mu.Unlock()
	t.m.drained.WithLabelValues(name, "bye").Add(float64(ended))
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("access: drain %s: %w", name, err)
	}
	t.log.Info("site drained", "site", name, "ended", ended)
	return nil
}

// Restore ends a site's maintenance: it takes sessions again as soon as its
// health checks pass. Restoring a site that is not drained does nothing. An
// unknown name is an [*UnknownSiteError].
func (t *Tier) Restore(name string) error {
	st, err := t.lookup(name)
	if err != nil {
		return err
	}
	st.site.SetDraining(false)
	t.mu.Lock()
	st.draining = false
	t.mu.Unlock()
	t.log.Info("site restored", "site", name)
	return nil
}

// waitIdle waits until the balancer holds no session on st, or ctx ends.
func (t *Tier) waitIdle(ctx context.Context, st *siteState) error {
	for {
		t.mu.Lock()
		n, ch := len(st.sessions), t.changed
		t.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// cut closes the site side of every session the balancer holds on st and
// returns how many there were.
func (t *Tier) cut(st *siteState) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	for s := range st.sessions {
		s.cut = true
		if s.up != nil {
			_ = s.up.Close()
		}
		_ = s.client.Close()
	}
	return len(st.sessions)
}

// Close stops the tier at once: the balancer's listener and every session
// are closed, health checkers stop, sites close. It returns once every
// goroutine of the tier has ended. Safe to call more than once.
func (t *Tier) Close() error {
	t.mu.Lock()
	t.closed = true
	if t.ln != nil {
		_ = t.ln.Close()
	}
	for s := range t.sessions {
		_ = s.client.Close()
		if s.up != nil {
			_ = s.up.Close()
		}
	}
	t.mu.Unlock()
	t.cancel()
	var errs []error
	for _, st := range t.sites {
		if err := st.site.Close(); err != nil {
			errs = append(errs, fmt.Errorf("site %s: %w", st.cfg.Name, err))
		}
	}
	t.wg.Wait()
	return errors.Join(errs...)
}

// expire ends an ejection whose time is over; the site is then on
// probation. Called with t.mu held.
func (t *Tier) expire(st *siteState, now time.Time) {
	if st.ejected && !now.Before(st.until) {
		st.ejected, st.probation, st.failures = false, true, 0
		t.log.Info("site back from ejection", "site", st.cfg.Name)
	}
}

// usable reports whether st takes new sessions. Called with t.mu held,
// after expire.
func (st *siteState) usable() bool { return !st.draining && st.healthy && !st.ejected }

// notify wakes whoever waits for sessions to end. Called with t.mu held.
func (t *Tier) notify() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// place picks a usable site not in tried for s and counts the session on
// it; nil and a refusal reason when there is none.
func (t *Tier) place(s *session, tried []*siteState) (*siteState, string) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, ""
	}
	n := len(t.sites)
	var pick *siteState
	pickAt, untried := -1, 0
	for i := 0; i < n; i++ {
		at := (t.rr + i) % n
		st := t.sites[at]
		t.expire(st, now)
		if !st.usable() {
			continue
		}
		if slices.Contains(tried, st) {
			untried++ // usable, but failed this session already
			continue
		}
		if pick == nil || (t.cfg.Placement == PlacementLeastConnections && len(st.sessions) < len(pick.sessions)) {
			pick, pickAt = st, at
			if t.cfg.Placement == PlacementRoundRobin {
				break
			}
		}
	}
	if pick == nil {
		if untried > 0 {
			return nil, RefusedSitesFailed
		}
		return nil, RefusedNoUsableSite
	}
	t.rr = pickAt + 1
	pick.sessions[s] = struct{}{}
	pick.c.Placements++
	t.m.placements.WithLabelValues(pick.cfg.Name).Inc()
	s.site = pick
	return pick, ""
}

// release takes s off its site and, when fail is not "", records the
// failure for outlier ejection.
func (t *Tier) release(s *session, fail string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := s.site
	if st == nil {
		return
	}
	delete(st.sessions, s)
	s.site, s.up = nil, nil
	t.notify()
	if fail != "" {
		t.failedLocked(st, fail)
	}
}

// succeeded records a session that started well on st.
func (t *Tier) succeeded(st *siteState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st.failures, st.ejections, st.probation = 0, 0, false
}

// failed records a failed session start on st.
func (t *Tier) failed(st *siteState, kind string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failedLocked(st, kind)
}

func (t *Tier) failedLocked(st *siteState, kind string) {
	if st.draining || t.closed {
		return // maintenance, not an outlier
	}
	st.c.Failures++
	t.m.failures.WithLabelValues(st.cfg.Name, kind).Inc()
	t.log.Debug("session failed", "site", st.cfg.Name, "kind", kind)
	p := t.cfg.Passive
	if !p.Enabled || st.ejected {
		return
	}
	st.failures++
	if !st.probation && st.failures < p.Failures {
		return
	}
	others := 0
	for _, o := range t.sites {
		if o != st && o.usable() {
			others++
		}
	}
	if others == 0 {
		// Ejecting the last site would refuse everyone: keep it, and keep
		// counting.
		t.log.Warn("outlier not ejected: it is the last usable site", "site", st.cfg.Name)
		return
	}
	d := p.Ejection
	for i := 0; i < st.ejections && d < p.MaxEjection; i++ {
		d *= 2
	}
	d = min(d, p.MaxEjection)
	st.ejected, st.until = true, time.Now().Add(d)
	st.ejections++
	st.failures, st.probation = 0, false
	st.c.Ejections++
	t.m.ejections.WithLabelValues(st.cfg.Name, ByOutlier).Inc()
	t.log.Warn("site ejected", "site", st.cfg.Name, "for", d, "after", kind)
}
