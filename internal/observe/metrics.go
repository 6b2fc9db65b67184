package observe

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/pipeline"
)

// Metrics are Warden's Prometheus metrics, on a registry of their own (with
// the Go runtime and process collectors), so that nothing a library
// registers globally is exposed. Its methods are safe for concurrent use,
// and a nil *Metrics records nothing, so components may take one optionally.
//
// Labels are only values that configuration bounds: method, target name,
// decision, error code, redaction kind, authentication failure reason.
// Never a principal, tenant, session or argument: one series per caller
// would grow without bound, and would put identities in a store with weaker
// access control than the audit log.
type Metrics struct {
	reg *prometheus.Registry

	calls       *prometheus.CounterVec   // method, target, decision, error_code
	duration    *prometheus.HistogramVec // method, target
	rateLimited *prometheus.CounterVec   // method, target
	redactions  *prometheus.CounterVec   // kind
	authFails   *prometheus.CounterVec   // reason
	httpRefused *prometheus.CounterVec   // reason

	// series caches each target's allowed-call counter and duration
	// observer by *pipeline.Spec, which is built once per target at load
	// time: the common path then skips hashing four label values.
	series sync.Map // *pipeline.Spec → *series
}

type series struct {
	allowed  prometheus.Counter
	duration prometheus.Observer
}

// DurationBuckets are the bounds, in seconds, of warden_call_duration_seconds:
// from a refusal or cache hit (well under a millisecond) to a call that
// runs into a generous timeout.
var DurationBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// NewMetrics returns Warden's metrics on a new registry.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warden_calls_total",
			Help: "Calls that reached the pipeline, by method, target, decision (allow, refuse, error) and error code.",
		}, []string{"method", "target", "decision", "error_code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "warden_call_duration_seconds",
			Help:    "Time calls spent in the pipeline, refusals included, by method and target.",
			Buckets: DurationBuckets,
		}, []string{"method", "target"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warden_rate_limited_total",
			Help: "Calls refused with RATE_LIMITED, by method and target.",
		}, []string{"method", "target"}),
		redactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warden_redactions_total",
			Help: "Values redacted from results, by kind.",
		}, []string{"kind"}),
		authFails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warden_auth_failures_total",
			Help: "Requests whose authentication failed, by reason.",
		}, []string{"reason"}),
		httpRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warden_http_refused_total",
			Help: "Connections and requests the HTTP transport refused or cut off before any MCP parsing, by reason (max_connections, max_connections_per_client, body_timeout).",
		}, []string{"reason"}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.calls, m.duration, m.rateLimited, m.redactions, m.authFails, m.httpRefused,
	)
	return m
}

// Registry is the registry the metrics are on, for components that add
// metrics of their own.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus text exposition format, for
// /metrics. The metrics name targets and show traffic, so serve them where
// only the scraper can reach, or behind authentication.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		Registry: m.reg, // counts its own failures
		// Scrapes are cheap but not free; a flood of them must not take
		// CPU from calls.
		MaxRequestsInFlight: 4,
	})
}

// Stage counts and times every call. Put it outermost, so that it sees
// refusals from every stage, the audit stage's included, and times the
// whole pipeline.
func (m *Metrics) Stage(next pipeline.Handler) pipeline.Handler {
	if m == nil {
		return next
	}
	return func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
		start := time.Now()
		res, err := next(ctx, c)
		d := time.Since(start).Seconds()
		decision, code := outcome(res, err)
		if decision == decisionAllow && c.Spec != nil {
			s := m.seriesOf(c.Spec)
			s.duration.Observe(d)
			s.allowed.Inc()
			return res, err
		}
		method, target := names(c)
		m.duration.WithLabelValues(method, target).Observe(d)
		m.calls.WithLabelValues(method, target, decision, string(code)).Inc()
		if code == pipeline.RateLimited {
			m.rateLimited.WithLabelValues(method, target).Inc()
		}
		return res, err
	}
}

func (m *Metrics) seriesOf(spec *pipeline.Spec) *series {
	if s, ok := m.series.Load(spec); ok {
		return s.(*series)
	}
	method, target := spec.Method.String(), spec.Name
	s, _ := m.series.LoadOrStore(spec, &series{
		allowed:  m.calls.WithLabelValues(method, target, decisionAllow, ""),
		duration: m.duration.WithLabelValues(method, target),
	})
	return s.(*series)
}

// Redactions counts n values of one kind ("email", "aws_key", ...)
// redacted from a result. The kind must come from a fixed set, never from
// the data.
func (m *Metrics) Redactions(kind string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.redactions.WithLabelValues(kind).Add(float64(n))
}

// AuthFailures counts one request whose authentication failed. The reason
// must come from a fixed set ("missing", "invalid", "expired", "revoked",
// ...), never from an error's text or the credential.
func (m *Metrics) AuthFailures(reason string) {
	if m == nil {
		return
	}
	m.authFails.WithLabelValues(reason).Inc()
}

// HTTPRefused counts one connection or request the HTTP transport refused
// or cut off. The reason must come from a fixed set (max_connections,
// max_connections_per_client, body_timeout), never from the request.
func (m *Metrics) HTTPRefused(reason string) {
	if m == nil {
		return
	}
	m.httpRefused.WithLabelValues(reason).Inc()
}

// ObserveAudit exports an audit writer's counters, read from stats at each
// scrape: pass (*audit.Writer).Stats. It panics if called twice.
func (m *Metrics) ObserveAudit(stats func() audit.Stats) {
	if m == nil {
		return
	}
	m.reg.MustRegister(auditCollector{stats})
}

// auditCollector reads an audit writer's stats at scrape time, so the
// writer keeps only its atomic counters and the hot path does nothing more.
type auditCollector struct {
	stats func() audit.Stats
}

var (
	auditRecords = prometheus.NewDesc("warden_audit_records_total",
		"Audit records durably appended.", nil, nil)
	auditBatches = prometheus.NewDesc("warden_audit_batches_total",
		"Successful audit appends (group commits); records_total / batches_total is the mean batch size.", nil, nil)
	auditLastBatch = prometheus.NewDesc("warden_audit_last_batch_size",
		"Records in the latest successful audit append.", nil, nil)
	auditMaxBatch = prometheus.NewDesc("warden_audit_max_batch_size",
		"Records in the largest successful audit append since start.", nil, nil)
	auditFailed = prometheus.NewDesc("warden_audit_failed_records_total",
		"Audit records whose append failed: their calls were refused.", nil, nil)
	auditRejected = prometheus.NewDesc("warden_audit_rejected_records_total",
		"Audit records refused because the queue was full: their calls were refused.", nil, nil)
	auditSinkErrors = prometheus.NewDesc("warden_audit_sink_errors_total",
		"Failed writes of audit records to streaming sinks.", nil, nil)
	auditQueueDepth = prometheus.NewDesc("warden_audit_queue_depth",
		"Audit records waiting to be appended.", nil, nil)
	auditQueueSize = prometheus.NewDesc("warden_audit_queue_capacity",
		"How many audit records may wait before calls are refused.", nil, nil)
	auditSpooled = prometheus.NewDesc("warden_audit_spooled_total",
		"Outcomes of calls that ran which the store did not take in time, kept in the spool.", nil, nil)
	auditReplayed = prometheus.NewDesc("warden_audit_replayed_total",
		"Spooled outcomes since written to the store, marked late.", nil, nil)
	auditSpoolPending = prometheus.NewDesc("warden_audit_spool_pending",
		"Outcomes waiting in the spool for the store.", nil, nil)
	auditUnrecorded = prometheus.NewDesc("warden_audit_outcome_unrecorded_total",
		"Calls that ran whose outcome neither the store nor the spool took: alert on any.", nil, nil)
)

func (auditCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{auditRecords, auditBatches, auditLastBatch, auditMaxBatch,
		auditFailed, auditRejected, auditSinkErrors, auditQueueDepth, auditQueueSize,
		auditSpooled, auditReplayed, auditSpoolPending, auditUnrecorded} {
		ch <- d
	}
}

func (a auditCollector) Collect(ch chan<- prometheus.Metric) {
	s := a.stats()
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	gauge := func(d *prometheus.Desc, v int) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	counter(auditRecords, s.Records)
	counter(auditBatches, s.Batches)
	gauge(auditLastBatch, s.LastBatch)
	gauge(auditMaxBatch, s.MaxBatch)
	counter(auditFailed, s.Failed)
	counter(auditRejected, s.Rejected)
	counter(auditSinkErrors, s.SinkErrors)
	gauge(auditQueueDepth, s.QueueDepth)
	gauge(auditQueueSize, s.QueueSize)
	counter(auditSpooled, s.Spooled)
	counter(auditReplayed, s.Replayed)
	gauge(auditSpoolPending, s.SpoolPending)
	counter(auditUnrecorded, s.Unrecorded)
}

var _ prometheus.Collector = auditCollector{}

// UpstreamStats is what the metrics show of one upstream server of the
// gateway.
type UpstreamStats struct {
	Name string
	// Up: connected, and its listing checked against the pins (/readyz's
	// test).
	Up bool
	// Connections counts the connections opened to it: the first and each
	// reconnection.
	Connections uint64
	// Served and Quarantined count its targets: listed and callable, and
	// held back until an operator decides.
	Served, Quarantined int
}

var (
	upstreamUp = prometheus.NewDesc("warden_upstream_up",
		"1 if the upstream is connected and its definitions are checked against the pins, else 0.", []string{"upstream"}, nil)
	upstreamConnections = prometheus.NewDesc("warden_upstream_connections_total",
		"Connections opened to the upstream: the first and each reconnection.", []string{"upstream"}, nil)
	upstreamTargets = prometheus.NewDesc("warden_upstream_targets",
		"The upstream's targets, by state: served, or quarantined until an operator approves them.", []string{"upstream", "state"}, nil)
)

// ObserveUpstreams exports the gateway's upstreams, read from stats at each
// scrape. It panics if called twice.
func (m *Metrics) ObserveUpstreams(stats func() []UpstreamStats) {
	if m == nil {
		return
	}
	m.reg.MustRegister(upstreamCollector{stats})
}

type upstreamCollector struct {
	stats func() []UpstreamStats
}

func (upstreamCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- upstreamUp
	ch <- upstreamConnections
	ch <- upstreamTargets
}

func (c upstreamCollector) Collect(ch chan<- prometheus.Metric) {
	for _, u := range c.stats() {
		up := 0.0
		if u.Up {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(upstreamUp, prometheus.GaugeValue, up, u.Name)
		ch <- prometheus.MustNewConstMetric(upstreamConnections, prometheus.CounterValue, float64(u.Connections), u.Name)
		ch <- prometheus.MustNewConstMetric(upstreamTargets, prometheus.GaugeValue, float64(u.Served), u.Name, "served")
		ch <- prometheus.MustNewConstMetric(upstreamTargets, prometheus.GaugeValue, float64(u.Quarantined), u.Name, "quarantined")
	}
}

// CacheStats exports the cache's hits and misses, read at scrape time: the
// hit rate is warden_cache_hits_total over hits plus misses.
func (m *Metrics) CacheStats(stats func() (hits, misses uint64)) {
	if m == nil {
		return
	}
	m.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "warden_cache_hits_total", Help: "Read tool calls answered from the cache."},
			func() float64 { h, _ := stats(); return float64(h) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "warden_cache_misses_total", Help: "Cacheable read tool calls that ran."},
			func() float64 { _, mi := stats(); return float64(mi) }),
	)
}
