package proxy

import (
	"net/http"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/outrigger-mesh/outrigger/balancer"
	"github.com/outrigger-mesh/outrigger/discovery"
)

// Tracing on net/http's path (see trace.go): the server span lives in the
// request's context from serveHTTP to its end, each attempt's client span
// from RoundTrip to the end of the response body (responseBody's Done).
// Attributes are gathered in scratch slices from attrPool and set once,
// at the span's end: the server span's from the request then (serveHTTP
// changes none of the fields they come from), the client span's at its
// start.

// attrPool holds scratch attribute slices (*[]attribute.KeyValue, empty).
var attrPool = sync.Pool{New: func() any {
	s := make([]attribute.KeyValue, 0, serverSpanAttrs)
	return &s
}}

// startServerSpan starts r's server span and returns r with it in its
// context; rec is the request's record (net/http's path keeps one per
// request while tracing is on). Tracing is on.
func (l *HTTPListener) startServerSpan(r *http.Request, rec *RequestRecord) *http.Request {
	ctx := r.Context()
	if hasContextHeader(r.Header) {
		ctx = l.tr.prop.Extract(ctx, propagation.HeaderCarrier(r.Header))
	}
	ctx, span := l.tr.tracer.Start(ctx, spanName(rec.Method), serverKind...)
	rec.TraceID = span.SpanContext().TraceID()
	return r.WithContext(ctx)
}

// hasContextHeader reports whether h carries a field a propagator reads
// (see Options.Propagator).
func hasContextHeader(h http.Header) bool {
	if _, ok := h["Baggage"]; ok {
		return true
	}
	for _, k := range traceHeaderKeys {
		if _, ok := h[k]; ok {
			return true
		}
	}
	return false
}

// endServerSpan ends the server span in r's context.
func (l *HTTPListener) endServerSpan(r *http.Request, rec *RequestRecord) {
	span := trace.SpanFromContext(r.Context())
	if !span.IsRecording() {
		span.End()
		return
	}
	scheme, port, version := "http", 80, "1.1"
	if r.TLS != nil {
		scheme, port = "https", 443
	}
	switch {
	case r.ProtoMajor == 2:
		version = "2"
	case r.ProtoMinor == 0:
		version = "1.0"
	}
	sp := attrPool.Get().(*[]attribute.KeyValue)
	attrs := append(*sp,
		semconv.HTTPRequestMethodKey.String(r.Method),
		semconv.URLPath(r.URL.Path),
		semconv.URLScheme(scheme),
	)
	if version != "1.1" {
		attrs = append(attrs, semconv.NetworkProtocolVersion(version))
	}
	host, port := splitHost(r.Host, port)
	attrs = appendHostAttrs(attrs, host, port)
	if peer, _, ok := parsePeer(r.RemoteAddr); ok {
		attrs = append(attrs, semconv.ClientAddress(peer))
	}
	*sp = endServerSpan(span, rec, attrs)
	attrPool.Put(sp)
}

// attemptSpan is an attempt's recording client span on net/http's path.
type attemptSpan struct {
	span   trace.Span
	attrs  *[]attribute.KeyValue // from attrPool, until the end
	status int                   // the response's status (finish)
	done   func(balancer.DoneInfo)
}

// end ends the span; status is the response's (0: none came). Only the
// first call counts.
func (a *attemptSpan) end(status int, err error) {
	if a.attrs == nil {
		return
	}
	*a.attrs = endClientSpan(a.span, *a.attrs, status, err)
	attrPool.Put(a.attrs)
	a.attrs = nil
}

// finish is the Done of an attempt that got a response.
func (a *attemptSpan) finish(d balancer.DoneInfo) {
	a.end(a.status, d.Err)
	a.done(d)
}

// startAttemptSpan starts the client span of the attempt out (to ep) and
// writes its context into out's header, in place of the client's
// trace-context fields. It returns the span, or nil when tracing is off
// or the request is not sampled (no span is started then: the server
// span's context goes upstream).
func (l *HTTPListener) startAttemptSpan(out *http.Request, x *exchange, ep *discovery.Endpoint) *attemptSpan {
	if l.tr == nil {
		return nil
	}
	for _, k := range traceHeaderKeys {
		delete(out.Header, k)
	}
	if !trace.SpanFromContext(out.Context()).IsRecording() {
		// Unsampled: the server span's context goes upstream, as on the
		// fast path (see h1conn.startAttempt).
		l.tr.prop.Inject(out.Context(), propagation.HeaderCarrier(out.Header))
		return nil
	}
	ctx, span := l.tr.tracer.Start(out.Context(), spanName(methodName([]byte(out.Method), false)), clientKind...)
	l.tr.prop.Inject(ctx, propagation.HeaderCarrier(out.Header))
	attempt := 0
	if x.rec != nil {
		attempt = x.rec.Attempts
	}
	sp := attrPool.Get().(*[]attribute.KeyValue)
	*sp = appendAttemptAttrs(*sp, out.Method, x.service, ep, endpointHost(ep), attempt)
	return &attemptSpan{span: span, attrs: sp}
}

// endAttemptSpan ends an attempt's span (nil: none records) that failed
// before a response.
func endAttemptSpan(span *attemptSpan, err error) {
	if span != nil {
		span.end(0, err)
	}
}

// tracedDone returns done, made to end the attempt's span (nil: none
// records; done itself) with the response status and the outcome first.
func tracedDone(span *attemptSpan, status int, done func(balancer.DoneInfo)) func(balancer.DoneInfo) {
	if span == nil {
		return done
	}
	span.status, span.done = status, done
	return span.finish
}
