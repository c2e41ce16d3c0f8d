package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/contrib/propagators/b3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/outrigger-mesh/outrigger/proxy/route"
)

// Client-side trace context the tests send.
const (
	testTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	testSpanID  = "00f067aa0ba902b7"
)

// tracedEngine is an HTTP engine, and the kind of tracer it is given.
type tracedEngine struct {
	name string
	cfg  HTTPConfig
	// skipping: the tracer is a sampledStarter (as cmd/outrigger's is),
	// so the fast path starts no span for an unsampled request
	skipping bool
}

// tracedEngines are the two HTTP engines, the fast path and net/http's,
// and the fast path with a tracer that skips unsampled spans.
var tracedEngines = []tracedEngine{
	{name: "fast", cfg: HTTPConfig{}},
	{name: "fast-skipping", cfg: HTTPConfig{}, skipping: true},
	{name: "nethttp", cfg: HTTPConfig{NetHTTPOnly: true}},
}

// startTracedHTTPProxy is startHTTPProxy on eng with opts for the
// listener.
func startTracedHTTPProxy(t testing.TB, eng tracedEngine, routes *route.Table, ups Upstreams, opts Options) *testProxy {
	t.Helper()
	cfg := eng.cfg
	cfg.Name, cfg.Listen = "test", "127.0.0.1:0"
	if eng.skipping && opts.TracerProvider != nil {
		// its check runs after the proxy has stopped (Cleanup is LIFO)
		opts.TracerProvider = newSkippingProvider(t, opts.TracerProvider)
	}
	srv := NewServer(ServerConfig{}, Options{}, NewHTTPListener(cfg, routes, ups, opts))
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &testProxy{srv: srv, addr: srv.Addrs()["test"].String(), cancel: cancel, served: make(chan error, 1)}
	go func() { p.served <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := p.wait(t); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return p
}

// skippingProvider gives tracers that are sampledStarters: StartSampled
// starts the span with the SDK and, when it is not sampled, ends it and
// returns only its SpanContext. The spans it gives are releasers that
// check their use: no call after Release, no Release before End or
// twice; and when the test ends (the proxy has stopped) every one has
// been ended and released.
type skippingProvider struct {
	trace.TracerProvider
	t     testing.TB
	mu    *sync.Mutex
	spans *[]*trackedSpan
}

func newSkippingProvider(t testing.TB, tp trace.TracerProvider) skippingProvider {
	p := skippingProvider{TracerProvider: tp, t: t, mu: new(sync.Mutex), spans: new([]*trackedSpan)}
	t.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, s := range *p.spans {
			if !s.ended.Load() || !s.released.Load() {
				t.Errorf("span %s: ended %v, released %v; want both", s.Span.SpanContext().SpanID(), s.ended.Load(), s.released.Load())
			}
		}
	})
	return p
}

func (p skippingProvider) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return skippingTracer{p.TracerProvider.Tracer(name, opts...), p}
}

type skippingTracer struct {
	trace.Tracer
	p skippingProvider
}

func (t skippingTracer) StartSampled(ctx context.Context, parent trace.Span, name string, kind trace.SpanKind) (trace.Span, trace.SpanContext) {
	if ctx == nil {
		ctx = context.Background()
	}
	if parent != nil {
		ctx = trace.ContextWithSpan(ctx, parent)
	}
	_, span := t.Start(ctx, name, trace.WithSpanKind(kind))
	sc := span.SpanContext()
	if !sc.IsSampled() {
		span.End()
		return nil, sc
	}
	ts := &trackedSpan{Span: span, t: t.p.t}
	t.p.mu.Lock()
	*t.p.spans = append(*t.p.spans, ts)
	t.p.mu.Unlock()
	return ts, sc
}

// trackedSpan is a span that its owner releases (releaser), checking
// that nothing uses it after.
type trackedSpan struct {
	trace.Span
	t               testing.TB
	ended, released atomic.Bool
}

func (s *trackedSpan) use(what string) {
	if s.released.Load() {
		s.t.Errorf("span %s: %s after Release", s.Span.SpanContext().SpanID(), what)
	}
}

func (s *trackedSpan) Release() {
	if !s.ended.Load() {
		s.t.Errorf("span %s released before End", s.Span.SpanContext().SpanID())
	}
	if s.released.Swap(true) {
		s.t.Errorf("span %s released twice", s.Span.SpanContext().SpanID())
	}
}

func (s *trackedSpan) End(opts ...trace.SpanEndOption) {
	s.use("End")
	s.ended.Store(true)
	s.Span.End(opts...)
}

func (s *trackedSpan) AddEvent(name string, opts ...trace.EventOption) {
	s.use("AddEvent")
	s.Span.AddEvent(name, opts...)
}

func (s *trackedSpan) AddLink(l trace.Link) {
	s.use("AddLink")
	s.Span.AddLink(l)
}

func (s *trackedSpan) IsRecording() bool {
	s.use("IsRecording")
	return s.Span.IsRecording()
}

func (s *trackedSpan) RecordError(err error, opts ...trace.EventOption) {
	s.use("RecordError")
	s.Span.RecordError(err, opts...)
}

func (s *trackedSpan) SpanContext() trace.SpanContext {
	s.use("SpanContext")
	return s.Span.SpanContext()
}

func (s *trackedSpan) SetStatus(c codes.Code, d string) {
	s.use("SetStatus")
	s.Span.SetStatus(c, d)
}

func (s *trackedSpan) SetName(n string) {
	s.use("SetName")
	s.Span.SetName(n)
}

func (s *trackedSpan) SetAttributes(kv ...attribute.KeyValue) {
	s.use("SetAttributes")
	s.Span.SetAttributes(kv...)
}

func (s *trackedSpan) TracerProvider() trace.TracerProvider {
	s.use("TracerProvider")
	return s.Span.TracerProvider()
}

// newTestTracing returns a tracer provider exporting synchronously to an
// in-memory exporter, sampling every trace unless a parent says no.
func newTestTracing(t testing.TB, sampler sdktrace.Sampler) (*sdktrace.TracerProvider, *tracetest.InMemoryExporter) {
	exp := tracetest.NewInMemoryExporter()
	if sampler == nil {
		sampler = sdktrace.ParentBased(sdktrace.AlwaysSample())
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithSampler(sampler))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	return tp, exp
}

// waitSpans waits until exp holds n spans (the server span ends after the
// client has its response) and returns them: client spans first in the
// order they ended, the server span last.
func waitSpans(t *testing.T, exp *tracetest.InMemoryExporter, n int) tracetest.SpanStubs {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		spans := exp.GetSpans()
		if len(spans) >= n {
			if len(spans) > n {
				t.Fatalf("%d spans, want %d: %s", len(spans), n, spanNames(spans))
			}
			return spans
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d spans after %v, want %d: %s", len(spans), waitLimit, n, spanNames(spans))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func spanNames(spans tracetest.SpanStubs) string {
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "[%s %s parent %s] ", s.SpanKind, s.Name, s.Parent.SpanID())
	}
	return b.String()
}

// attrs returns the attributes of s named in keys, as strings.
func attrs(s tracetest.SpanStub, keys ...string) map[string]string {
	out := map[string]string{}
	for _, kv := range s.Attributes {
		for _, k := range keys {
			if string(kv.Key) == k {
				out[k] = kv.Value.Emit()
			}
		}
	}
	return out
}

// headerRecorder is a backend handler that keeps the trace-context fields
// of the requests it got.
type headerRecorder struct {
	mu     sync.Mutex
	got    []http.Header
	status int
}

func (h *headerRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.got = append(h.got, r.Header.Clone())
	status := h.status
	h.mu.Unlock()
	if status == 0 {
		status = 200
	}
	w.WriteHeader(status)
	io.WriteString(w, "ok")
}

func (h *headerRecorder) last(t *testing.T) http.Header {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.got) == 0 {
		t.Fatal("the backend got no request")
	}
	return h.got[len(h.got)-1]
}

// send sends a GET with the given extra fields and returns the status.
func sendTraced(t *testing.T, addr, host, path string, fields ...string) int {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for i := 0; i+1 < len(fields); i += 2 {
		req.Header.Set(fields[i], fields[i+1])
	}
	c := &http.Client{Transport: &http.Transport{}, Timeout: waitLimit}
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func TestTraceSpansAndPropagation(t *testing.T) {
	for _, eng := range tracedEngines {
		t.Run(eng.name, func(t *testing.T) {
			tp, exp := newTestTracing(t, nil)
			rec := &headerRecorder{}
			be := startHTTPBackend(t, rec)
			rt := mustTable(t, route.RouteConfig{Name: "all", Backends: []route.Backend{{Service: "web.shop"}}})
			p := startTracedHTTPProxy(t, eng, rt, Upstreams{"web.shop": StaticUpstream("web-1", be.addr)},
				Options{TracerProvider: tp})

			status := sendTraced(t, p.addr, "shop.example:8080", "/orders/7?x=1",
				"traceparent", "00-"+testTraceID+"-"+testSpanID+"-01",
				"tracestate", "vendor=v1",
				"baggage", "user=alice")
			if status != 200 {
				t.Fatalf("status %d, want 200", status)
			}
			spans := waitSpans(t, exp, 2)
			client, server := spans[0], spans[1]

			// The server span continues the client's trace; the client
			// span is its child.
			if got := server.SpanContext.TraceID().String(); got != testTraceID {
				t.Errorf("server span trace %s, want %s", got, testTraceID)
			}
			if got := server.Parent.SpanID().String(); got != testSpanID || !server.Parent.IsRemote() {
				t.Errorf("server span parent %s (remote %v), want %s remote", got, server.Parent.IsRemote(), testSpanID)
			}
			if client.Parent.SpanID() != server.SpanContext.SpanID() || client.SpanContext.TraceID() != server.SpanContext.TraceID() {
				t.Errorf("client span parent %s, want the server span %s", client.Parent.SpanID(), server.SpanContext.SpanID())
			}
			if server.SpanKind != trace.SpanKindServer || client.SpanKind != trace.SpanKindClient {
				t.Errorf("kinds %v, %v; want server, client", server.SpanKind, client.SpanKind)
			}
			if server.Name != "GET" || client.Name != "GET" {
				t.Errorf("names %q, %q; want GET", server.Name, client.Name)
			}

			wantServer := map[string]string{
				"http.request.method":       "GET",
				"url.path":                  "/orders/7",
				"url.scheme":                "http",
				"server.address":            "shop.example",
				"server.port":               "8080",
				"client.address":            "127.0.0.1",
				"http.response.status_code": "200",
				"outrigger.route":           "all",
			}
			if diff := cmp.Diff(attrs(server, keys(wantServer)...), wantServer); diff != "" {
				t.Errorf("server span attributes (-got +want):\n%s", diff)
			}
			wantClient := map[string]string{
				"http.request.method":       "GET",
				"server.address":            "127.0.0.1",
				"server.port":               fmt.Sprint(be.addr.Port()),
				"http.response.status_code": "200",
				"outrigger.service":         "web.shop",
				"outrigger.endpoint":        "web-1",
				"outrigger.attempt":         "1",
			}
			if diff := cmp.Diff(attrs(client, keys(wantClient)...), wantClient); diff != "" {
				t.Errorf("client span attributes (-got +want):\n%s", diff)
			}
			// The listener is named once, on the instrumentation scope.
			for _, s := range []tracetest.SpanStub{server, client} {
				if v, ok := s.InstrumentationScope.Attributes.Value("outrigger.listener"); !ok || v.AsString() != "test" {
					t.Errorf("%s span scope attributes %v, want outrigger.listener=test", s.SpanKind, s.InstrumentationScope.Attributes.ToSlice())
				}
			}
			if server.Status.Code != codes.Unset || client.Status.Code != codes.Unset {
				t.Errorf("statuses %v, %v; want unset", server.Status, client.Status)
			}
			// Every attribute, each once.
			wantKeys := map[*tracetest.SpanStub][]string{
				// One attempt: outrigger.attempts is set only on a retry,
				// the service is on the attempt, the protocol version
				// only when it is not 1.1: eight (see serverSpanAttrs).
				&server: {"client.address", "http.request.method", "http.response.status_code",
					"outrigger.route", "server.address", "server.port", "url.path", "url.scheme"},
				&client: {"http.request.method", "http.response.status_code",
					"outrigger.attempt", "outrigger.endpoint",
					"outrigger.service", "server.address", "server.port"},
			}
			for s, want := range wantKeys {
				var got []string
				for _, kv := range s.Attributes {
					got = append(got, string(kv.Key))
				}
				slices.Sort(got)
				if diff := cmp.Diff(got, want); diff != "" {
					t.Errorf("%s span attribute keys (-got +want):\n%s", s.SpanKind, diff)
				}
			}

			// The endpoint gets our client span as the parent, the
			// client's trace state and its baggage.
			h := rec.last(t)
			want := http.Header{
				"Traceparent": {"00-" + testTraceID + "-" + client.SpanContext.SpanID().String() + "-01"},
				"Tracestate":  {"vendor=v1"},
				"Baggage":     {"user=alice"},
			}
			if diff := cmp.Diff(traceHeader(h), want); diff != "" {
				t.Errorf("trace fields at the endpoint (-got +want):\n%s", diff)
			}
		})
	}
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// traceHeader is the trace-context and baggage fields of h.
func traceHeader(h http.Header) http.Header {
	out := http.Header{}
	for k, v := range h {
		switch k {
		case "Traceparent", "Tracestate", "Baggage", "B3", "X-B3-Traceid", "X-B3-Spanid", "X-B3-Sampled", "X-B3-Parentspanid":
			out[k] = v
		}
	}
	return out
}

// b3Propagator extracts W3C and B3 (W3C wins when both come) and injects
// W3C, baggage and B3 single-header, as cmd/outrigger sets it up with b3
// on.
func b3Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(
		b3.New(b3.WithInjectEncoding(b3.B3SingleHeader)), propagation.TraceContext{}, propagation.Baggage{})
}

func TestTraceB3(t *testing.T) {
	for _, eng := range tracedEngines {
		for _, tc := range []struct {
			name   string
			fields []string
		}{
			{"single", []string{"b3", testTraceID + "-" + testSpanID + "-1"}},
			{"multi", []string{"X-B3-TraceId", testTraceID, "X-B3-SpanId", testSpanID, "X-B3-Sampled", "1"}},
		} {
			t.Run(eng.name+"/"+tc.name, func(t *testing.T) {
				tp, exp := newTestTracing(t, nil)
				rec := &headerRecorder{}
				be := startHTTPBackend(t, rec)
				p := startTracedHTTPProxy(t, eng, routeAll(t, "web.shop"), Upstreams{"web.shop": StaticUpstream("web-1", be.addr)},
					Options{TracerProvider: tp, Propagator: b3Propagator()})
				if status := sendTraced(t, p.addr, "shop", "/", tc.fields...); status != 200 {
					t.Fatalf("status %d", status)
				}
				spans := waitSpans(t, exp, 2)
				client, server := spans[0], spans[1]
				if server.SpanContext.TraceID().String() != testTraceID || server.Parent.SpanID().String() != testSpanID {
					t.Errorf("server span in trace %s with parent %s, want the B3 context %s/%s",
						server.SpanContext.TraceID(), server.Parent.SpanID(), testTraceID, testSpanID)
				}
				sid := client.SpanContext.SpanID().String()
				want := http.Header{
					"Traceparent": {"00-" + testTraceID + "-" + sid + "-01"},
					"B3":          {testTraceID + "-" + sid + "-1"},
				}
				if diff := cmp.Diff(traceHeader(rec.last(t)), want); diff != "" {
					t.Errorf("trace fields at the endpoint (-got +want):\n%s", diff)
				}
			})
		}
	}
}

func TestTraceErrors(t *testing.T) {
	for _, eng := range tracedEngines {
		t.Run(eng.name+"/connect-failure-retried", func(t *testing.T) {
			tp, exp := newTestTracing(t, nil)
			be := startHTTPBackend(t, &headerRecorder{})
			dead := closedPort(t)
			up := newFakeUpstream(t, dead, be.addr) // picks dead first
			p := startTracedHTTPProxy(t, eng, routeAll(t, "web.shop"), Upstreams{"web.shop": up}, Options{TracerProvider: tp})
			if status := sendTraced(t, p.addr, "shop", "/"); status != 200 {
				t.Fatalf("status %d, want 200", status)
			}
			spans := waitSpans(t, exp, 3)
			first, second, server := spans[0], spans[1], spans[2]
			for _, s := range []tracetest.SpanStub{first, second} {
				if s.Parent.SpanID() != server.SpanContext.SpanID() {
					t.Errorf("attempt span %s has parent %s, want the server span", s.Name, s.Parent.SpanID())
				}
			}
			got := []map[string]string{
				attrs(first, "outrigger.attempt", "outrigger.endpoint", "error.type"),
				attrs(second, "outrigger.attempt", "outrigger.endpoint", "error.type", "http.response.status_code"),
				attrs(server, "outrigger.attempts", "http.response.status_code", "error.type"),
			}
			want := []map[string]string{
				{"outrigger.attempt": "1", "outrigger.endpoint": dead.String(), "error.type": "connect_failure"},
				{"outrigger.attempt": "2", "outrigger.endpoint": be.addr.String(), "http.response.status_code": "200"},
				{"outrigger.attempts": "2", "http.response.status_code": "200"},
			}
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("attributes (-got +want):\n%s", diff)
			}
			if first.Status.Code != codes.Error || second.Status.Code != codes.Unset || server.Status.Code != codes.Unset {
				t.Errorf("statuses %v, %v, %v; want error, unset, unset", first.Status, second.Status, server.Status)
			}
		})
		t.Run(eng.name+"/5xx", func(t *testing.T) {
			tp, exp := newTestTracing(t, nil)
			be := startHTTPBackend(t, &headerRecorder{status: 503})
			p := startTracedHTTPProxy(t, eng, routeAll(t, "web.shop"), Upstreams{"web.shop": StaticUpstream("web-1", be.addr)},
				Options{TracerProvider: tp})
			if status := sendTraced(t, p.addr, "shop", "/"); status != 503 {
				t.Fatalf("status %d, want 503", status)
			}
			spans := waitSpans(t, exp, 2)
			for _, s := range spans {
				if s.Status.Code != codes.Error {
					t.Errorf("%v span status %v, want error", s.SpanKind, s.Status)
				}
				if diff := cmp.Diff(attrs(s, "error.type", "http.response.status_code"),
					map[string]string{"error.type": "503", "http.response.status_code": "503"}); diff != "" {
					t.Errorf("%v span (-got +want):\n%s", s.SpanKind, diff)
				}
			}
		})
		t.Run(eng.name+"/proxy-error", func(t *testing.T) {
			tp, exp := newTestTracing(t, nil)
			rt := mustTable(t, route.RouteConfig{Match: route.MatchConfig{Hosts: []string{"other"}},
				Backends: []route.Backend{{Service: "web.shop"}}})
			p := startTracedHTTPProxy(t, eng, rt, Upstreams{}, Options{TracerProvider: tp})
			if status := sendTraced(t, p.addr, "shop", "/"); status != 404 {
				t.Fatalf("status %d, want 404", status)
			}
			server := waitSpans(t, exp, 1)[0]
			if server.Status.Code != codes.Error || server.Status.Description != "no_route" {
				t.Errorf("status %v, want error no_route", server.Status)
			}
			want := map[string]string{"error.type": "no_route", "http.response.status_code": "404"}
			if diff := cmp.Diff(attrs(server, keys(want)...), want); diff != "" {
				t.Errorf("(-got +want):\n%s", diff)
			}
		})
	}
}

// TestTraceOffIsTransparent: without a tracer provider the client's trace
// fields reach the endpoint untouched; with sampling off the proxy exports
// nothing but still passes on a context (not sampled) of its own.
func TestTraceOffIsTransparent(t *testing.T) {
	in := "00-" + testTraceID + "-" + testSpanID + "-00"
	for _, eng := range tracedEngines {
		t.Run(eng.name+"/off", func(t *testing.T) {
			rec := &headerRecorder{}
			be := startHTTPBackend(t, rec)
			p := startTracedHTTPProxy(t, eng, routeAll(t, "web.shop"), Upstreams{"web.shop": StaticUpstream("web-1", be.addr)}, Options{})
			sendTraced(t, p.addr, "shop", "/", "traceparent", in, "b3", testTraceID+"-"+testSpanID+"-0")
			want := http.Header{"Traceparent": {in}, "B3": {testTraceID + "-" + testSpanID + "-0"}}
			if diff := cmp.Diff(traceHeader(rec.last(t)), want); diff != "" {
				t.Errorf("(-got +want):\n%s", diff)
			}
		})
		t.Run(eng.name+"/ratio0", func(t *testing.T) {
			tp, exp := newTestTracing(t, sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0)))
			rec := &headerRecorder{}
			be := startHTTPBackend(t, rec)
			p := startTracedHTTPProxy(t, eng, routeAll(t, "web.shop"), Upstreams{"web.shop": StaticUpstream("web-1", be.addr)},
				Options{TracerProvider: tp})
			for range 3 {
				sendTraced(t, p.addr, "shop", "/")
			}
			sendTraced(t, p.addr, "shop", "/", "traceparent", in)
			tp.ForceFlush(context.Background())
			if n := len(exp.GetSpans()); n != 0 {
				t.Errorf("%d spans exported at ratio 0, want none", n)
			}
			tpv := rec.last(t).Get("Traceparent")
			if !strings.HasPrefix(tpv, "00-"+testTraceID+"-") || !strings.HasSuffix(tpv, "-00") || strings.Contains(tpv, testSpanID) {
				t.Errorf("traceparent at the endpoint %q, want the client's trace, not sampled, with a span of ours", tpv)
			}
		})
	}
}

func TestTraceTCP(t *testing.T) {
	tp, exp := newTestTracing(t, nil)
	be := startBackend(t, echo)
	dead := closedPort(t)
	up := newFakeUpstream(t, dead, be)
	cfg := TCPConfig{Name: "test", Listen: "127.0.0.1:0"}
	srv := NewServer(ServerConfig{}, Options{}, NewTCPListener(cfg, up, Options{TracerProvider: tp}))
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &testProxy{srv: srv, addr: srv.Addrs()["test"].String(), cancel: cancel, served: make(chan error, 1)}
	go func() { p.served <- srv.Serve(ctx) }()
	defer func() {
		cancel()
		p.wait(t)
	}()

	c := p.dial(t)
	msg := []byte("hello, tcp")
	roundTrip(t, c, msg, make([]byte, 64))
	c.CloseWrite()
	io.Copy(io.Discard, c)

	s := waitSpans(t, exp, 1)[0]
	if s.SpanKind != trace.SpanKindServer || s.Name != "tcp test" || s.Parent.IsValid() {
		t.Errorf("span %q kind %v parent %v; want a root server span \"tcp test\"", s.Name, s.SpanKind, s.Parent.SpanID())
	}
	want := map[string]string{
		"outrigger.endpoint":       be.String(),
		"outrigger.attempt":        "2",
		"server.address":           "127.0.0.1",
		"outrigger.bytes_sent":     fmt.Sprint(len(msg)),
		"outrigger.bytes_received": fmt.Sprint(len(msg)),
		"outrigger.close_reason":   "eof",
		"network.transport":        "tcp",
	}
	if diff := cmp.Diff(attrs(s, keys(want)...), want); diff != "" {
		t.Errorf("(-got +want):\n%s", diff)
	}
	if len(s.Events) != 1 || s.Events[0].Name != "connect failed" ||
		!hasAttr(s.Events[0].Attributes, "outrigger.endpoint", dead.String()) {
		t.Errorf("events %+v, want one connect failed for %v", s.Events, dead)
	}
	if s.Status.Code != codes.Unset {
		t.Errorf("status %v, want unset", s.Status)
	}
}

func hasAttr(kvs []attribute.KeyValue, k, v string) bool {
	for _, kv := range kvs {
		if string(kv.Key) == k && kv.Value.Emit() == v {
			return true
		}
	}
	return false
}

// BenchmarkHTTPFastPathTrace is BenchmarkHTTPFastPath with tracing off,
// on with 0% sampling and on with 100% sampling (batched to an exporter
// that drops), for both engines.
//
//	go test -run '^$' -bench BenchmarkHTTPFastPathTrace -benchmem ./proxy
func BenchmarkHTTPFastPathTrace(b *testing.B) {
	be := startBenchBackend(b)
	for _, eng := range tracedEngines {
		for _, tc := range []struct {
			name    string
			sampler sdktrace.Sampler // nil: tracing off
		}{
			{"off", nil},
			{"ratio0", sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0))},
			{"ratio100", sdktrace.ParentBased(sdktrace.TraceIDRatioBased(1))},
		} {
			b.Run(eng.name+"/"+tc.name, func(b *testing.B) {
				var opts Options
				if tc.sampler != nil {
					tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(tc.sampler),
						sdktrace.WithBatcher(tracetest.NewNoopExporter()))
					b.Cleanup(func() { tp.Shutdown(context.Background()) })
					opts.TracerProvider = tp
				}
				p := startTracedHTTPProxy(b, eng, routeAll(b, "web.shop"),
					Upstreams{"web.shop": StaticUpstream("web", be)}, opts)
				benchRoundTrips(b, p.addr, benchRequest, nil)
			})
		}
	}
}
