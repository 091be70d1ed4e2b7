package access

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metric names, for probes and experiment files. Every per-site series has
// a site label.
const (
	// MetricSessions is a gauge: sessions the balancer holds, by site.
	MetricSessions = "mailstack_access_sessions"
	// MetricPlacements counts sessions placed, by site.
	MetricPlacements = "mailstack_access_placements_total"
	// MetricSessionFailures counts failed session starts, by site and kind
	// (connect, greeting-timeout, greeting-error, greeting-bye,
	// reply-timeout, reply-error).
	MetricSessionFailures = "mailstack_access_session_failures_total"
	// MetricEjections counts sites taken out of placement, by site and by
	// what took them out (health-check or outlier).
	MetricEjections = "mailstack_access_ejections_total"
	// MetricRefused counts sessions refused with BYE, by reason
	// (no-usable-site: every site is draining, unhealthy or ejected;
	// sites-failed: every usable site was tried and failed).
	MetricRefused = "mailstack_access_refused_total"
	// MetricHealthChecks counts active health checks, by site and result
	// (ok, failed).
	MetricHealthChecks = "mailstack_access_health_checks_total"
	// MetricDrained counts sessions ended by maintenance, by site and how
	// (bye: the site said BYE; cut: still open after the drain grace).
	MetricDrained = "mailstack_access_drained_sessions_total"
	// MetricSiteHealthy is 1 while the active health checks pass.
	MetricSiteHealthy = "mailstack_access_site_healthy"
	// MetricSiteEjected is 1 while outlier ejection keeps the site out.
	MetricSiteEjected = "mailstack_access_site_ejected"
	// MetricSiteDraining is 1 while the site is drained for maintenance.
	MetricSiteDraining = "mailstack_access_site_draining"
	// MetricSiteUsable is 1 while the site takes new sessions.
	MetricSiteUsable = "mailstack_access_site_usable"
	// MetricConnectionsRefused counts connections answered "* BYE too many
	// connections" because their listener was at its cap, by listener
	// (balancer, or a site's name).
	MetricConnectionsRefused = "mailstack_access_connections_refused_total"
	// MetricConnectionsEvicted counts silent sessions the balancer ended to
	// make room for a new connection at its cap, by listener (balancer).
	MetricConnectionsEvicted = "mailstack_access_connections_evicted_total"
	// MetricLoginLockouts counts connections closed after too many failed
	// log-ins, by site.
	MetricLoginLockouts = "mailstack_access_login_lockouts_total"
	// MetricCommandsRejected counts commands a site answered BAD before
	// parsing them, by site and reason (literal, range, search, too-long).
	MetricCommandsRejected = "mailstack_access_commands_rejected_total"
)

// ListenerBalancer is the listener label of the balancer's series of
// [MetricConnectionsRefused] and [MetricConnectionsEvicted]; a site's
// listener is labelled with the site's name.
const ListenerBalancer = "balancer"

// Reasons a site rejects a command before parsing it (the reason label of
// [MetricCommandsRejected]).
const (
	RejectLiteral = "literal"
	RejectRange   = "range"
	RejectSearch  = "search"
	RejectTooLong = "too-long"
)

// Failure kinds of a session start (the kind label of
// [MetricSessionFailures]).
const (
	FailConnect         = "connect"
	FailGreetingTimeout = "greeting-timeout"
	FailGreetingError   = "greeting-error"
	FailGreetingBye     = "greeting-bye"
	FailReplyTimeout    = "reply-timeout"
	FailReplyError      = "reply-error"
)

// Refusal reasons (the reason label of [MetricRefused]).
const (
	RefusedNoUsableSite = "no-usable-site"
	RefusedSitesFailed  = "sites-failed"
)

// What took a site out of placement (the by label of [MetricEjections]).
const (
	ByHealthCheck = "health-check"
	ByOutlier     = "outlier"
)

type metrics struct {
	placements  *prometheus.CounterVec
	failures    *prometheus.CounterVec
	ejections   *prometheus.CounterVec
	refused     *prometheus.CounterVec
	checks      *prometheus.CounterVec
	drained     *prometheus.CounterVec
	connRefused *prometheus.CounterVec
	connEvicted *prometheus.CounterVec
	lockouts    *prometheus.CounterVec
	rejected    *prometheus.CounterVec
}

func newMetrics(t *Tier, reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		placements: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricPlacements,
			Help: "Sessions placed by the balancer, by site."}, []string{"site"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricSessionFailures,
			Help: "Failed session starts seen by the balancer, by site and kind."}, []string{"site", "kind"}),
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricEjections,
			Help: "Sites taken out of placement, by site and by what (health-check, outlier)."}, []string{"site", "by"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricRefused,
			Help: "Sessions refused because no site could take them, by reason."}, []string{"reason"}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricHealthChecks,
			Help: "Active health checks, by site and result."}, []string{"site", "result"}),
		drained: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricDrained,
			Help: "Sessions ended by maintenance, by site and how (bye, cut)."}, []string{"site", "how"}),
		connRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricConnectionsRefused,
			Help: "Connections refused because their listener was at its cap, by listener."}, []string{"listener"}),
		connEvicted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricConnectionsEvicted,
			Help: "Silent sessions ended to make room at the cap, by listener."}, []string{"listener"}),
		lockouts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricLoginLockouts,
			Help: "Connections closed after too many failed log-ins, by site."}, []string{"site"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricCommandsRejected,
			Help: "Commands answered BAD before parsing, by site and reason."}, []string{"site", "reason"}),
	}
	m.connRefused.WithLabelValues(ListenerBalancer)
	m.connEvicted.WithLabelValues(ListenerBalancer)
	for _, s := range t.sites {
		n := s.cfg.Name
		m.placements.WithLabelValues(n)
		for _, k := range []string{FailConnect, FailGreetingTimeout, FailGreetingError, FailGreetingBye, FailReplyTimeout, FailReplyError} {
			m.failures.WithLabelValues(n, k)
		}
		m.ejections.WithLabelValues(n, ByHealthCheck)
		m.ejections.WithLabelValues(n, ByOutlier)
		m.checks.WithLabelValues(n, "ok")
		m.checks.WithLabelValues(n, "failed")
		m.drained.WithLabelValues(n, "bye")
		m.drained.WithLabelValues(n, "cut")
		m.connRefused.WithLabelValues(n)
		m.lockouts.WithLabelValues(n)
		for _, r := range []string{RejectLiteral, RejectRange, RejectSearch, RejectTooLong} {
			m.rejected.WithLabelValues(n, r)
		}
	}
	m.refused.WithLabelValues(RefusedNoUsableSite)
	m.refused.WithLabelValues(RefusedSitesFailed)
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.placements, m.failures, m.ejections, m.refused, m.checks, m.drained,
		m.connRefused, m.connEvicted, m.lockouts, m.rejected, newStateCollector(t)} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// stateCollector reports the per-site gauges from the tier's state at
// scrape time, so an ejection that has run out shows as over without a
// timer.
type stateCollector struct {
	t                                         *Tier
	sessions, healthy, ejected, draining, use *prometheus.Desc
}

func newStateCollector(t *Tier) *stateCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, []string{"site"}, nil)
	}
	return &stateCollector{t: t,
		sessions: d(MetricSessions, "Sessions held by the balancer, by site."),
		healthy:  d(MetricSiteHealthy, "1 while the site passes its active health checks."),
		ejected:  d(MetricSiteEjected, "1 while outlier ejection keeps the site out of placement."),
		draining: d(MetricSiteDraining, "1 while the site is drained for maintenance."),
		use:      d(MetricSiteUsable, "1 while the site takes new sessions."),
	}
}

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.sessions, c.healthy, c.ejected, c.draining, c.use} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	for _, s := range c.t.Sites() {
		ch <- prometheus.MustNewConstMetric(c.sessions, prometheus.GaugeValue, float64(s.Sessions), s.Name)
		ch <- prometheus.MustNewConstMetric(c.healthy, prometheus.GaugeValue, b(s.Healthy), s.Name)
		ch <- prometheus.MustNewConstMetric(c.ejected, prometheus.GaugeValue, b(s.Ejected), s.Name)
		ch <- prometheus.MustNewConstMetric(c.draining, prometheus.GaugeValue, b(s.Draining), s.Name)
		ch <- prometheus.MustNewConstMetric(c.use, prometheus.GaugeValue, b(s.Usable), s.Name)
	}
}
