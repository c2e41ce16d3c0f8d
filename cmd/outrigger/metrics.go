package main

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/outrigger-mesh/outrigger/proxy"
)

// Metrics: the admin server's /metrics, in Prometheus text format, from a
// registry of our own (client_golang; no global registry). Every metric is
// documented in docs/metrics.md; keep the two in step.
//
// Two kinds of metric, by where their numbers come from:
//   - Traffic (requests, TCP connections) is counted as it happens by
//     metrics, which is the proxy's Observer and TCPObserver. The request
//     path never calls WithLabelValues (it allocates): the children of a
//     label set are bound once, on its first request, and found again
//     through a copy-on-write map keyed by a comparable struct, so an
//     observation costs one map lookup and a few atomic adds and
//     allocates nothing.
//   - State (endpoints, breakers, ejections, health, sources, reloads,
//     build) is read at scrape time by stateCollector (metrics_state.go)
//     from the balancers, catalog, supervisor and reload status; nothing
//     is added to the data path for it.

// durationBuckets suit a sidecar: from half a millisecond (a hop on
// loopback) to ten seconds (a slow upstream at its timeout).
var durationBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// metrics holds the registry and the traffic instruments. It implements
// proxy.Observer and proxy.TCPObserver; both are safe for concurrent use
// and allocate nothing once a label set has been seen.
type metrics struct {
	reg *prometheus.Registry

	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	attempts    *prometheus.CounterVec
	retries     *prometheus.CounterVec
	respBytes   *prometheus.CounterVec
	proxyErrors *prometheus.CounterVec
	reqs        bound[reqKey, *reqSeries]

	tcpOpened *prometheus.CounterVec
	tcpClosed *prometheus.CounterVec
	tcpActive *prometheus.GaugeVec
	tcpRecv   *prometheus.CounterVec
	tcpSent   *prometheus.CounterVec
	conns     bound[connKey, *connSeries]
	closes    bound[closeKey, prometheus.Counter]
}

// Label names, as Istio's standard metrics spell them where one applies.
const (
	lListener = "listener"
	lRoute    = "route"
	lService  = "destination_service"
	lMethod   = "method"
	lCode     = "response_code"
	lClass    = "response_code_class"
	lCause    = "cause"
	lReason   = "reason"
)

// newMetrics returns the registry with the traffic instruments, the Go
// runtime and process collectors, and state (nil: none).
func newMetrics(state prometheus.Collector) *metrics {
	route := []string{lListener, lRoute, lService}
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_requests_total",
			Help: "HTTP requests answered, by listener, route, destination service, method and response code.",
		}, []string{lListener, lRoute, lService, lMethod, lCode, lClass}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "outrigger_request_duration_seconds",
			Help:    "Time from a request's first byte to the end of its response, in seconds.",
			Buckets: durationBuckets,
		}, []string{lListener, lRoute, lService, lClass}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_upstream_attempts_total",
			Help: "Upstream attempts of HTTP requests: endpoints picked and tried, failed connects included.",
		}, route),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_upstream_retries_total",
			Help: "Attempts the retry policy added after a request's first (reconnects after a failed connect excluded).",
		}, route),
		respBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_response_bytes_total",
			Help: "HTTP response body bytes written to clients.",
		}, route),
		proxyErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_proxy_errors_total",
			Help: "HTTP requests the proxy answered itself with an error, by cause (the X-Outrigger-Error value).",
		}, []string{lListener, lRoute, lService, lCause}),

		tcpOpened: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_tcp_connections_opened_total",
			Help: "TCP connections accepted for L4 forwarding.",
		}, []string{lListener, lService}),
		tcpClosed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_tcp_connections_closed_total",
			Help: "TCP connections of L4 forwarding that ended, by reason (eof, idle, drain, error, no_upstream).",
		}, []string{lListener, lService, lReason}),
		tcpActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "outrigger_tcp_connections_active",
			Help: "TCP connections of L4 forwarding open now.",
		}, []string{lListener, lService}),
		tcpRecv: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_tcp_received_bytes_total",
			Help: "Bytes received from clients and sent on to endpoints, counted when a connection closes.",
		}, []string{lListener, lService}),
		tcpSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_tcp_sent_bytes_total",
			Help: "Bytes received from endpoints and sent to clients, counted when a connection closes.",
		}, []string{lListener, lService}),
	}
	m.reqs.new = m.bindRequest
	m.conns.new = m.bindConn
	m.closes.new = func(k closeKey) prometheus.Counter {
		return m.tcpClosed.WithLabelValues(k.listener, k.service, k.reason)
	}
	m.reg.MustRegister(m.requests, m.duration, m.attempts, m.retries, m.respBytes, m.proxyErrors,
		m.tcpOpened, m.tcpClosed, m.tcpActive, m.tcpRecv, m.tcpSent,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if state != nil {
		m.reg.MustRegister(state)
	}
	return m
}

// handler serves the registry in the Prometheus text format (or OpenMetrics
// when asked). Errors collecting a metric are reported in the response.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// reqKey is one label set of the request metrics. Its strings may point
// into connection buffers until bound copies them (see proxy.RequestRecord).
type reqKey struct {
	listener, route, service, method, cause string
	code                                    int
}

func (k reqKey) owned() reqKey {
	k.listener, k.route, k.service = strings.Clone(k.listener), strings.Clone(k.route), strings.Clone(k.service)
	k.method, k.cause = strings.Clone(k.method), strings.Clone(k.cause)
	return k
}

// reqSeries is every child a request of one label set touches.
type reqSeries struct {
	requests  prometheus.Counter
	duration  prometheus.Observer
	attempts  prometheus.Counter
	retries   prometheus.Counter
	respBytes prometheus.Counter
	errors    prometheus.Counter // nil when the key has no cause
}

func (m *metrics) bindRequest(k reqKey) *reqSeries {
	code, class := codeLabels(k.code)
	s := &reqSeries{
		requests:  m.requests.WithLabelValues(k.listener, k.route, k.service, k.method, code, class),
		duration:  m.duration.WithLabelValues(k.listener, k.route, k.service, class),
		attempts:  m.attempts.WithLabelValues(k.listener, k.route, k.service),
		retries:   m.retries.WithLabelValues(k.listener, k.route, k.service),
		respBytes: m.respBytes.WithLabelValues(k.listener, k.route, k.service),
	}
	if k.cause != "" {
		s.errors = m.proxyErrors.WithLabelValues(k.listener, k.route, k.service, k.cause)
	}
	return s
}

// codeLabels returns the response_code and response_code_class values:
// "503" and "5xx"; "0" and "none" when no status was written.
func codeLabels(code int) (string, string) {
	if code <= 0 {
		return "0", "none"
	}
	if code > 999 {
		return strconv.Itoa(code), "other"
	}
	return strconv.Itoa(code), strconv.Itoa(code/100) + "xx"
}

// ObserveRequest counts one finished HTTP request (proxy.Observer).
func (m *metrics) ObserveRequest(r *proxy.RequestRecord) {
	s := m.reqs.get(reqKey{listener: r.Listener, route: r.Route, service: r.Service,
		method: boundedMethod(r.Method), cause: r.Cause, code: r.Status})
	s.requests.Inc()
	s.duration.Observe(r.Duration.Seconds())
	if r.Attempts > 0 {
		s.attempts.Add(float64(r.Attempts))
	}
	if r.Retries > 0 {
		s.retries.Add(float64(r.Retries))
	}
	if r.BytesOut > 0 {
		s.respBytes.Add(float64(r.BytesOut))
	}
	if s.errors != nil {
		s.errors.Inc()
	}
}

// boundedMethod keeps the method label to a fixed set: the record holds
// any method the client sent when another Observer (access logs) asked
// the proxy for detail (Options.ObserveDetail).
func boundedMethod(m string) string {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE":
		return m
	}
	return "OTHER"
}

// connKey and closeKey are label sets of the TCP metrics.
type connKey struct{ listener, service string }

func (k connKey) owned() connKey {
	return connKey{strings.Clone(k.listener), strings.Clone(k.service)}
}

type closeKey struct{ listener, service, reason string }

func (k closeKey) owned() closeKey {
	return closeKey{strings.Clone(k.listener), strings.Clone(k.service), strings.Clone(k.reason)}
}

type connSeries struct {
	opened, received, sent prometheus.Counter
	active                 prometheus.Gauge
}

func (m *metrics) bindConn(k connKey) *connSeries {
	return &connSeries{
		opened:   m.tcpOpened.WithLabelValues(k.listener, k.service),
		received: m.tcpRecv.WithLabelValues(k.listener, k.service),
		sent:     m.tcpSent.WithLabelValues(k.listener, k.service),
		active:   m.tcpActive.WithLabelValues(k.listener, k.service),
	}
}

// ConnOpened counts an L4 connection opened (proxy.TCPObserver).
func (m *metrics) ConnOpened(r *proxy.ConnRecord) {
	s := m.conns.get(connKey{r.Listener, r.Service})
	s.opened.Inc()
	s.active.Inc()
}

// ConnClosed counts an L4 connection closed, with its bytes
// (proxy.TCPObserver).
func (m *metrics) ConnClosed(r *proxy.ConnRecord) {
	s := m.conns.get(connKey{r.Listener, r.Service})
	s.active.Dec()
	if r.Received > 0 {
		s.received.Add(float64(r.Received))
	}
	if r.Sent > 0 {
		s.sent.Add(float64(r.Sent))
	}
	m.closes.get(closeKey{r.Listener, r.Service, r.Reason}).Inc()
}

// ownedKey is a label-set key that can copy its strings out of buffers
// it does not own.
type ownedKey[K any] interface {
	comparable
	owned() K
}

// bound maps label sets to the instruments bound to them. get is a lookup
// in an immutable map (no lock, no allocation); a miss binds under mu and
// publishes a copy of the map with the new entry. Label sets come from
// the config (listeners, routes, services) and small fixed sets (methods,
// status codes, causes, reasons), so the map stays small and misses stop
// soon after the start and after each reload.
type bound[K ownedKey[K], V any] struct {
	m   atomic.Pointer[map[K]V]
	mu  sync.Mutex // serializes misses
	new func(K) V  // binds a key, called under mu with an owned key
}

func (b *bound[K, V]) get(k K) V {
	if m := b.m.Load(); m != nil {
		if v, ok := (*m)[k]; ok {
			return v
		}
	}
	return b.miss(k)
}

func (b *bound[K, V]) miss(k K) V {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.m.Load()
	if old != nil {
		if v, ok := (*old)[k]; ok {
			return v
		}
	}
	k = k.owned()
	v := b.new(k)
	m := make(map[K]V, 1+len(ptrMap(old)))
	for ok, ov := range ptrMap(old) {
		m[ok] = ov
	}
	m[k] = v
	b.m.Store(&m)
	return v
}

func ptrMap[K comparable, V any](p *map[K]V) map[K]V {
	if p == nil {
		return nil
	}
	return *p
}

// multiObserver hands each request to several Observers in turn (metrics
// and access logs).
type multiObserver []proxy.Observer

func (m multiObserver) ObserveRequest(r *proxy.RequestRecord) {
	for _, o := range m {
		o.ObserveRequest(r)
	}
}

// observers combines obs, skipping nils: nil when none is left (so the
// proxy skips observing), the Observer itself when one is.
func observers(obs ...proxy.Observer) proxy.Observer {
	var m multiObserver
	for _, o := range obs {
		if o != nil {
			m = append(m, o)
		}
	}
	switch len(m) {
	case 0:
		return nil
	case 1:
		return m[0]
	}
	return m
}
