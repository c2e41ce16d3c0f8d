package main

import (
	"bytes"
	"io"
	"maps"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/outrigger-mesh/outrigger/balancer"
	"github.com/outrigger-mesh/outrigger/discovery"
	"github.com/outrigger-mesh/outrigger/proxy"
	"github.com/outrigger-mesh/outrigger/resilience"
)

// families parses a Prometheus text exposition.
func families(t testing.TB, r io.Reader) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// scrape serves m's handler once and parses the answer.
func scrape(t testing.TB, m *metrics) map[string]*dto.MetricFamily {
	t.Helper()
	w := httptest.NewRecorder()
	m.handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	if w.Code != 200 {
		t.Fatalf("/metrics: %d %s", w.Code, w.Body)
	}
	return families(t, w.Body)
}

// series flattens the families named by names into "name{k=v,...}" →
// value: a counter's or gauge's value, a histogram's sample count (with
// the suffix _count). Labels are sorted, as Prometheus writes them.
func series(fams map[string]*dto.MetricFamily, names ...string) map[string]float64 {
	out := map[string]float64{}
	for _, name := range names {
		f := fams[name]
		if f == nil {
			continue
		}
		for _, m := range f.Metric {
			var ls []string
			for _, l := range m.Label {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			key := name + "{" + strings.Join(ls, ",") + "}"
			switch {
			case m.Counter != nil:
				out[key] = m.Counter.GetValue()
			case m.Gauge != nil:
				out[key] = m.Gauge.GetValue()
			case m.Histogram != nil:
				out[name+"_count{"+strings.Join(ls, ",")+"}"] = float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return out
}

func testRecord() *proxy.RequestRecord {
	return &proxy.RequestRecord{Listener: "web", Route: "api", Service: "api.shop", Method: "GET",
		Proto: "HTTP/1.1", Status: 200, Endpoint: netip.MustParseAddrPort("10.0.0.1:80"),
		Attempts: 1, BytesOut: 10, Start: time.Now(), Duration: 3 * time.Millisecond}
}

// The Observer counts each record under its labels: requests by code and
// class, a duration sample per request in the right bucket, attempts,
// retries, body bytes, and proxy errors by cause.
func TestObserveRequest(t *testing.T) {
	m := newMetrics(nil)
	ok := testRecord()
	for range 3 {
		m.ObserveRequest(ok)
	}
	fail := testRecord()
	fail.Status, fail.Attempts, fail.Retries, fail.BytesOut, fail.Duration = 503, 3, 2, 0, 2*time.Second
	m.ObserveRequest(fail)
	noRoute := &proxy.RequestRecord{Listener: "web", Method: "POST", Status: 404, Cause: "no_route", Duration: time.Millisecond / 10}
	m.ObserveRequest(noRoute)
	m.ObserveRequest(noRoute)
	gone := testRecord()
	gone.Status, gone.Method = 0, "OTHER"
	m.ObserveRequest(gone)
	odd := testRecord() // a method as it comes with ObserveDetail: still OTHER
	odd.Status, odd.Method = 0, "BREW"
	m.ObserveRequest(odd)

	fams := scrape(t, m)
	got := series(fams, "outrigger_requests_total", "outrigger_request_duration_seconds",
		"outrigger_upstream_attempts_total", "outrigger_upstream_retries_total",
		"outrigger_response_bytes_total", "outrigger_proxy_errors_total")
	api := "destination_service=api.shop,listener=web"
	want := map[string]float64{
		"outrigger_requests_total{" + api + ",method=GET,response_code=200,response_code_class=2xx,route=api}":                     3,
		"outrigger_requests_total{" + api + ",method=GET,response_code=503,response_code_class=5xx,route=api}":                     1,
		"outrigger_requests_total{" + api + ",method=OTHER,response_code=0,response_code_class=none,route=api}":                    2,
		"outrigger_requests_total{destination_service=,listener=web,method=POST,response_code=404,response_code_class=4xx,route=}": 2,
		"outrigger_request_duration_seconds_count{" + api + ",response_code_class=2xx,route=api}":                                  3,
		"outrigger_request_duration_seconds_count{" + api + ",response_code_class=5xx,route=api}":                                  1,
		"outrigger_request_duration_seconds_count{" + api + ",response_code_class=none,route=api}":                                 2,
		"outrigger_request_duration_seconds_count{destination_service=,listener=web,response_code_class=4xx,route=}":               2,
		"outrigger_upstream_attempts_total{" + api + ",route=api}":                                                                 8,
		"outrigger_upstream_attempts_total{destination_service=,listener=web,route=}":                                              0,
		"outrigger_upstream_retries_total{" + api + ",route=api}":                                                                  2,
		"outrigger_upstream_retries_total{destination_service=,listener=web,route=}":                                               0,
		"outrigger_response_bytes_total{" + api + ",route=api}":                                                                    50,
		"outrigger_response_bytes_total{destination_service=,listener=web,route=}":                                                 0,
		"outrigger_proxy_errors_total{cause=no_route,destination_service=,listener=web,route=}":                                    2,
	}
	if d := cmp.Diff(got, want); d != "" {
		t.Errorf("series (-got +want):\n%s", d)
	}

	// Buckets: 3ms lands in le=0.005, 2s in le=2.5; 0.1ms in the first.
	h := fams["outrigger_request_duration_seconds"]
	for _, mt := range h.Metric {
		var class string
		for _, l := range mt.Label {
			if l.GetName() == "response_code_class" {
				class = l.GetValue()
			}
		}
		first := map[string]float64{"2xx": .005, "5xx": 2.5, "4xx": .0005, "none": .005}[class]
		for _, b := range mt.Histogram.Bucket {
			wantN := uint64(0)
			if b.GetUpperBound() >= first {
				wantN = mt.Histogram.GetSampleCount()
			}
			if b.GetCumulativeCount() != wantN {
				t.Errorf("class %s: bucket le=%g has %d, want %d", class, b.GetUpperBound(), b.GetCumulativeCount(), wantN)
			}
		}
	}
	if n := len(h.Metric[0].Histogram.Bucket); n != len(durationBuckets)+1 { // and +Inf
		t.Errorf("%d buckets, want %d", n, len(durationBuckets)+1)
	}
}

// A record's strings may point into a connection buffer that is reused
// after the call: the bound label set must have copied them.
func TestObserveRequestCopiesLabels(t *testing.T) {
	m := newMetrics(nil)
	buf := []byte("svc-a.shop")
	r := testRecord()
	r.Service = unsafe.String(&buf[0], len(buf)) // as the fast path may hand it over
	m.ObserveRequest(r)
	copy(buf, "svc-b.shop")
	m.ObserveRequest(testRecord()) // api.shop, a different key
	got := series(scrape(t, m), "outrigger_requests_total")
	if _, ok := got["outrigger_requests_total{destination_service=svc-a.shop,listener=web,method=GET,response_code=200,response_code_class=2xx,route=api}"]; !ok {
		t.Errorf("label set of the first record lost its service: %v", got)
	}
}

// With every label set seen once, observing allocates nothing.
func TestObserveAllocs(t *testing.T) {
	m := newMetrics(nil)
	rec := testRecord()
	errRec := &proxy.RequestRecord{Listener: "web", Method: "GET", Status: 502, Cause: "connect_failure", Attempts: 3}
	conn := &proxy.ConnRecord{Listener: "db", Service: "db.shop", Received: 100, Sent: 2000, Reason: "eof"}
	m.ObserveRequest(rec)
	m.ObserveRequest(errRec)
	m.ConnOpened(conn)
	m.ConnClosed(conn)
	if n := testing.AllocsPerRun(1000, func() {
		m.ObserveRequest(rec)
		m.ObserveRequest(errRec)
	}); n != 0 {
		t.Errorf("ObserveRequest: %v allocs per run, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() {
		m.ConnOpened(conn)
		m.ConnClosed(conn)
	}); n != 0 {
		t.Errorf("ConnOpened+ConnClosed: %v allocs per run, want 0", n)
	}
}

// go test -run '^$' -bench BenchmarkObserve -benchmem ./cmd/outrigger
func BenchmarkObserveRequest(b *testing.B) {
	m := newMetrics(nil)
	rec := testRecord()
	m.ObserveRequest(rec)
	b.ReportAllocs()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.ObserveRequest(rec)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			r := *rec
			for pb.Next() {
				m.ObserveRequest(&r)
			}
		})
	})
}

func BenchmarkObserveConn(b *testing.B) {
	m := newMetrics(nil)
	conn := &proxy.ConnRecord{Listener: "db", Service: "db.shop", Received: 100, Sent: 2000, Reason: "eof"}
	m.ConnOpened(conn)
	m.ConnClosed(conn)
	b.ReportAllocs()
	for b.Loop() {
		m.ConnOpened(conn)
		m.ConnClosed(conn)
	}
}

// L4 connections: opened, active, closed by reason, bytes each way.
func TestObserveConns(t *testing.T) {
	m := newMetrics(nil)
	a := &proxy.ConnRecord{Listener: "db", Service: "db.shop"}
	for range 3 {
		m.ConnOpened(a)
	}
	a.Received, a.Sent, a.Reason = 10, 200, "eof"
	m.ConnClosed(a)
	a.Received, a.Sent, a.Reason = 0, 0, "no_upstream"
	m.ConnClosed(a)
	got := series(scrape(t, m), "outrigger_tcp_connections_opened_total", "outrigger_tcp_connections_closed_total",
		"outrigger_tcp_connections_active", "outrigger_tcp_received_bytes_total", "outrigger_tcp_sent_bytes_total")
	l := "destination_service=db.shop,listener=db"
	want := map[string]float64{
		"outrigger_tcp_connections_opened_total{" + l + "}":                    3,
		"outrigger_tcp_connections_active{" + l + "}":                          1,
		"outrigger_tcp_connections_closed_total{" + l + ",reason=eof}":         1,
		"outrigger_tcp_connections_closed_total{" + l + ",reason=no_upstream}": 1,
		"outrigger_tcp_received_bytes_total{" + l + "}":                        10,
		"outrigger_tcp_sent_bytes_total{" + l + "}":                            200,
	}
	if d := cmp.Diff(got, want); d != "" {
		t.Errorf("series (-got +want):\n%s", d)
	}
}

type countingObserver struct{ n int }

func (c *countingObserver) ObserveRequest(*proxy.RequestRecord) { c.n++ }

func TestObservers(t *testing.T) {
	if o := observers(nil, nil); o != nil {
		t.Errorf("observers(nil, nil) = %v, want nil", o)
	}
	a, b := &countingObserver{}, &countingObserver{}
	if o := observers(nil, a); o != proxy.Observer(a) {
		t.Errorf("observers(nil, a) = %v, want a itself", o)
	}
	o := observers(a, nil, b)
	o.ObserveRequest(testRecord())
	o.ObserveRequest(testRecord())
	if a.n != 2 || b.n != 2 {
		t.Errorf("fan-out: a saw %d, b saw %d; want 2 each", a.n, b.n)
	}
}

// The exposition is valid text format that Prometheus parses, with HELP
// and TYPE for every family, including the Go and process collectors.
func TestMetricsExposition(t *testing.T) {
	m := newMetrics(nil)
	m.ObserveRequest(testRecord())
	w := httptest.NewRecorder()
	m.handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	body := w.Body.Bytes()
	fams := families(t, bytes.NewReader(body))
	for _, name := range []string{"outrigger_requests_total", "go_goroutines", "process_open_fds"} {
		f := fams[name]
		if f == nil {
			t.Errorf("no %s in:\n%s", name, body)
			continue
		}
		if f.GetHelp() == "" {
			t.Errorf("%s has no HELP", name)
		}
	}
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q, want text/plain", ct)
	}
}

// fakeCatalog is a catalogView of fixed snapshots.
type fakeCatalog map[string]*discovery.Snapshot

func (f fakeCatalog) Services() []string {
	return slices.Sorted(maps.Keys(f))
}

func (f fakeCatalog) Snapshot(svc string) *discovery.Snapshot { return f[svc] }

// The state collector turns balancer status, catalog snapshots, source
// health, reload status and the build into series at scrape time.
func TestStateCollector(t *testing.T) {
	ep := func(id, addr string, st discovery.State, source string) discovery.Endpoint {
		return discovery.Endpoint{ID: id, Addr: netip.MustParseAddrPort(addr), State: st, Source: source}
	}
	until := time.Now().Add(time.Minute)
	orders := balancer.Status{Service: "orders.shop", Ready: true, EjectionsTotal: 4, BreakerOpensTotal: 2,
		Endpoints: []balancer.EndpointStatus{{
			Endpoint: ep("k8s/a", "10.0.0.1:80", discovery.StateReady, "k8s"), Eligible: true, InFlight: 3, Picks: 40,
			Breaker: &balancer.BreakerStatus{State: resilience.BreakerClosed},
			Outlier: &balancer.OutlierStatus{}, Health: &balancer.HealthStatus{Healthy: true},
		}, {
			Endpoint: ep("k8s/b", "10.0.0.2:80", discovery.StateReady, "k8s"), Picks: 7,
			Breaker: &balancer.BreakerStatus{State: resilience.BreakerOpen, Trips: 1, OpenUntil: &until},
			Outlier: &balancer.OutlierStatus{Ejected: true, Ejections: 1, EjectedUntil: &until},
			Health:  &balancer.HealthStatus{Healthy: false},
		}}}
	plain := balancer.Status{Service: "db.shop", Endpoints: []balancer.EndpointStatus{}}
	cat := fakeCatalog{
		"orders.shop": {Service: "orders.shop", Endpoints: []discovery.Endpoint{
			ep("k8s/a", "10.0.0.1:80", discovery.StateReady, "k8s"),
			ep("k8s/b", "10.0.0.2:80", discovery.StateReady, "k8s"),
			ep("k8s/c", "10.0.0.3:80", discovery.StateDraining, "k8s"),
			ep("vm/d", "10.1.0.1:80", discovery.StateNotReady, "vm"),
		}},
	}
	c := &stateCollector{
		upstreams: func() []balancer.Status { return []balancer.Status{orders, plain} },
		catalog:   cat,
		sources: func() []discovery.SourceStatus {
			return []discovery.SourceStatus{{Name: "k8s", Healthy: true}, {Name: "vm", ConsecutiveFailures: 3}}
		},
		reload: func() reloadStatus {
			return reloadStatus{Generation: 3, Reloads: 4, Failures: 1, LastError: []string{"bad"}}
		},
		version: "v9.9.9",
	}
	got := map[string]float64{}
	fams := scrape(t, newMetrics(c))
	for name := range fams {
		if strings.HasPrefix(name, "outrigger_") {
			maps.Copy(got, series(fams, name))
		}
	}
	a := "address=10.0.0.1:80,destination_service=orders.shop,endpoint=k8s/a"
	b := "address=10.0.0.2:80,destination_service=orders.shop,endpoint=k8s/b"
	want := map[string]float64{
		"outrigger_upstream_endpoint_picks_total{" + a + "}":                           40,
		"outrigger_upstream_endpoint_picks_total{" + b + "}":                           7,
		"outrigger_upstream_endpoint_in_flight{" + a + "}":                             3,
		"outrigger_upstream_endpoint_in_flight{" + b + "}":                             0,
		"outrigger_upstream_endpoint_eligible{" + a + "}":                              1,
		"outrigger_upstream_endpoint_eligible{" + b + "}":                              0,
		"outrigger_upstream_endpoint_breaker_state{" + a + ",state=closed}":            1,
		"outrigger_upstream_endpoint_breaker_state{" + a + ",state=open}":              0,
		"outrigger_upstream_endpoint_breaker_state{" + a + ",state=half-open}":         0,
		"outrigger_upstream_endpoint_breaker_state{" + b + ",state=closed}":            0,
		"outrigger_upstream_endpoint_breaker_state{" + b + ",state=open}":              1,
		"outrigger_upstream_endpoint_breaker_state{" + b + ",state=half-open}":         0,
		"outrigger_upstream_endpoint_ejected{" + a + "}":                               0,
		"outrigger_upstream_endpoint_ejected{" + b + "}":                               1,
		"outrigger_upstream_endpoint_healthy{" + a + "}":                               1,
		"outrigger_upstream_endpoint_healthy{" + b + "}":                               0,
		"outrigger_upstream_endpoints{destination_service=orders.shop}":                2,
		"outrigger_upstream_endpoints{destination_service=db.shop}":                    0,
		"outrigger_upstream_endpoints_eligible{destination_service=orders.shop}":       1,
		"outrigger_upstream_endpoints_eligible{destination_service=db.shop}":           0,
		"outrigger_upstream_ready{destination_service=orders.shop}":                    1,
		"outrigger_upstream_ready{destination_service=db.shop}":                        0,
		"outrigger_upstream_outlier_ejections_total{destination_service=orders.shop}":  4,
		"outrigger_upstream_outlier_ejections_total{destination_service=db.shop}":      0,
		"outrigger_upstream_outlier_ejections_active{destination_service=orders.shop}": 1,
		"outrigger_upstream_outlier_ejections_active{destination_service=db.shop}":     0,
		"outrigger_upstream_breaker_opens_total{destination_service=orders.shop}":      2,
		"outrigger_upstream_breaker_opens_total{destination_service=db.shop}":          0,

		"outrigger_discovery_endpoints{service=orders.shop,source=k8s,state=ready}":    2,
		"outrigger_discovery_endpoints{service=orders.shop,source=k8s,state=draining}": 1,
		"outrigger_discovery_endpoints{service=orders.shop,source=vm,state=not_ready}": 1,
		"outrigger_discovery_source_healthy{source=k8s}":                               1,
		"outrigger_discovery_source_healthy{source=vm}":                                0,
		"outrigger_discovery_source_consecutive_failures{source=k8s}":                  0,
		"outrigger_discovery_source_consecutive_failures{source=vm}":                   3,

		"outrigger_config_reloads_total{result=success}":                            4,
		"outrigger_config_reloads_total{result=failure}":                            1,
		"outrigger_config_generation{}":                                             3,
		"outrigger_config_last_reload_successful{}":                                 0,
		"outrigger_build_info{go_version=" + runtime.Version() + ",version=v9.9.9}": 1,
	}
	if d := cmp.Diff(got, want); d != "" {
		t.Errorf("series (-got +want):\n%s", d)
	}
	for name, f := range fams {
		if strings.HasPrefix(name, "outrigger_") && f.GetHelp() == "" {
			t.Errorf("%s has no HELP", name)
		}
	}
}
