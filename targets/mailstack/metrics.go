package mailstack

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/mailchaos/mailchaos/targets/mailstack/access"
)

// Metric names, for probes and experiment files.
const (
	MetricQueueDepth      = "mailstack_queue_depth"
	MetricQueueMessages   = "mailstack_queue_messages"
	MetricScansInFlight   = "mailstack_scans_in_flight"
	MetricScans           = "mailstack_scans_total"
	MetricScanTimeouts    = "mailstack_scan_timeouts_total"
	MetricScanErrors      = "mailstack_scan_errors_total"
	MetricScanRetries     = "mailstack_scan_retries_total"
	MetricScanDuration    = "mailstack_scan_duration_seconds"
	MetricAccepted        = "mailstack_accepted_total"
	MetricRejected        = "mailstack_rejected_total"
	MetricDeferred        = "mailstack_deferred_total"
	MetricQuarantined     = "mailstack_quarantined_total"
	MetricDelivered       = "mailstack_delivered_total"
	MetricBounced         = "mailstack_bounced_total"
	MetricDeliveryLatency = "mailstack_delivery_latency_seconds"
	MetricWorkers         = "mailstack_scan_workers"
	MetricWorkersBusy     = "mailstack_scan_workers_busy"
	MetricSMTPConnections = "mailstack_smtp_connections"
	MetricSMTPRefused     = "mailstack_smtp_refused_total"
	MetricSpooled         = "mailstack_spooled_total"
	MetricResumed         = "mailstack_spool_resumed_total"

	// The access tier's series (see package access), registered on the
	// same registry.
	MetricAccessSessions        = access.MetricSessions
	MetricAccessPlacements      = access.MetricPlacements
	MetricAccessSessionFailures = access.MetricSessionFailures
	MetricAccessEjections       = access.MetricEjections
	MetricAccessRefused         = access.MetricRefused
	MetricAccessHealthChecks    = access.MetricHealthChecks
	MetricAccessDrained         = access.MetricDrained
	MetricAccessSiteHealthy     = access.MetricSiteHealthy
	MetricAccessSiteEjected     = access.MetricSiteEjected
	MetricAccessSiteDraining    = access.MetricSiteDraining
	MetricAccessSiteUsable      = access.MetricSiteUsable
	// The access tier's limits (see docs/access.md, "Limits").
	MetricAccessConnectionsRefused = access.MetricConnectionsRefused
	MetricAccessConnectionsEvicted = access.MetricConnectionsEvicted
	MetricAccessLoginLockouts      = access.MetricLoginLockouts
	MetricAccessCommandsRejected   = access.MetricCommandsRejected
)

// engineMetrics are the per-engine series, resolved once so the hot path
// does no label lookups.
type engineMetrics struct {
	clean, infected, failed prometheus.Counter
	timeouts, errors        prometheus.Counter
	retries                 prometheus.Counter
	duration                prometheus.Observer
}

// metrics holds every series the stack exports, on a registry of its own.
type metrics struct {
	reg *prometheus.Registry

	queueDepth    prometheus.Gauge
	queueReady    prometheus.Gauge
	queueDeferred prometheus.Gauge
	queueScanning prometheus.Gauge
	inFlight      prometheus.Gauge
	workers       prometheus.Gauge
	workersBusy   prometheus.Gauge
	accepted      prometheus.Counter
	rejected      *prometheus.CounterVec
	deferred      prometheus.Counter
	quarantined   *prometheus.CounterVec
	delivered     prometheus.Counter
	bounced       prometheus.Counter
	latency       prometheus.Histogram
	engines       map[string]*engineMetrics
	smtpConns     prometheus.Gauge
	smtpRefused   prometheus.Counter
	spooled       prometheus.Counter
	resumed       prometheus.Counter
}

func newMetrics(engines []string) *metrics {
	reg := prometheus.NewRegistry()
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	m := &metrics{reg: reg, engines: map[string]*engineMetrics{}}
	m.queueDepth = prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricQueueDepth,
		Help: "Accepted messages not yet delivered, quarantined or bounced."})
	qm := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: MetricQueueMessages,
		Help: "Messages in the queue by state (ready, deferred, scanning)."}, []string{"state"})
	m.queueReady = qm.WithLabelValues("ready")
	m.queueDeferred = qm.WithLabelValues("deferred")
	m.queueScanning = qm.WithLabelValues("scanning")
	m.inFlight = prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricScansInFlight,
		Help: "Engine scans under way."})
	m.workers = prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricWorkers,
		Help: "Size of the scan worker pool."})
	m.workersBusy = prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricWorkersBusy,
		Help: "Scan workers holding a message."})
	m.accepted = prometheus.NewCounter(prometheus.CounterOpts{Name: MetricAccepted,
		Help: "Messages accepted over SMTP."})
	m.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricRejected,
		Help: "SMTP commands rejected, by reason."}, []string{"reason"})
	m.deferred = prometheus.NewCounter(prometheus.CounterOpts{Name: MetricDeferred,
		Help: "Message deferrals after scan failures."})
	m.quarantined = prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricQuarantined,
		Help: "Messages quarantined, by reason (virus, interceptor, unscannable)."}, []string{"reason"})
	m.delivered = prometheus.NewCounter(prometheus.CounterOpts{Name: MetricDelivered,
		Help: "Messages delivered to mailboxes."})
	m.bounced = prometheus.NewCounter(prometheus.CounterOpts{Name: MetricBounced,
		Help: "Messages bounced to their sender."})
	m.latency = prometheus.NewHistogram(prometheus.HistogramOpts{Name: MetricDeliveryLatency,
		Help:    "Time from SMTP acceptance to the message being in every recipient's mailbox.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800}})
	scans := prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricScans,
		Help: "Scan attempts by engine and result (clean, infected, failed)."}, []string{"engine", "result"})
	timeouts := prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricScanTimeouts,
		Help: "Scan attempts that hit the scan timeout, by engine."}, []string{"engine"})
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricScanErrors,
		Help: "Scan attempts that failed with an error other than a timeout, by engine."}, []string{"engine"})
	retries := prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricScanRetries,
		Help: "Scan attempts that were retries, by engine."}, []string{"engine"})
	dur := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: MetricScanDuration,
		Help:    "Duration of scan attempts, by engine.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, []string{"engine"})
	for _, name := range engines {
		m.engines[name] = &engineMetrics{
			clean:    scans.WithLabelValues(name, "clean"),
			infected: scans.WithLabelValues(name, "infected"),
			failed:   scans.WithLabelValues(name, "failed"),
			timeouts: timeouts.WithLabelValues(name),
			errors:   errs.WithLabelValues(name),
			retries:  retries.WithLabelValues(name),
			duration: dur.WithLabelValues(name),
		}
	}
	for _, reason := range []string{reasonVirus, reasonInterceptor, reasonUnscannable} {
		m.quarantined.WithLabelValues(reason)
	}
	for _, reason := range []string{rejectUnknownUser, rejectRelay, rejectTooLarge} {
		m.rejected.WithLabelValues(reason)
	}
	m.smtpConns = prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricSMTPConnections,
		Help: "Open SMTP connections."})
	m.smtpRefused = prometheus.NewCounter(prometheus.CounterOpts{Name: MetricSMTPRefused,
		Help: "SMTP connections refused with 421 because smtp.max-connections were open."})
	m.spooled = prometheus.NewCounter(prometheus.CounterOpts{Name: MetricSpooled,
		Help: "Queued messages written to the spool when the stack stopped."})
	m.resumed = prometheus.NewCounter(prometheus.CounterOpts{Name: MetricResumed,
		Help: "Messages taken back from the spool when the stack started."})
	f(m.smtpConns)
	f(m.smtpRefused)
	f(m.spooled)
	f(m.resumed)
	for _, c := range []prometheus.Collector{m.queueDepth, qm, m.inFlight, m.workers, m.workersBusy,
		m.accepted, m.rejected, m.deferred, m.quarantined, m.delivered, m.bounced, m.latency,
		scans, timeouts, errs, retries, dur,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		f(c)
	}
	return m
}
