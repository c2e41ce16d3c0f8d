package proxy

import (
	"net/http"

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

// startServerSpan starts r's server span and returns r with it in its
// context; rec is the request's record (net/http's path keeps one per
// request while tracing is on). Tracing is on.
func (l *HTTPListener) startServerSpan(r *http.Request, rec *RequestRecord) *http.Request {
	ctx := l.tr.prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, span := l.tr.tracer.Start(ctx, spanName(rec.Method), serverKind...)
	rec.TraceID = span.SpanContext().TraceID()
	if span.IsRecording() {
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
		attrs := make([]attribute.KeyValue, 0, 12)
		attrs = append(attrs,
			semconv.HTTPRequestMethodKey.String(r.Method),
			semconv.URLPath(r.URL.Path),
			semconv.URLScheme(scheme),
			semconv.NetworkProtocolVersion(version),
			attrListener.String(l.cfg.Name),
		)
		attrs = append(attrs, hostAttrs(r.Host, port)...)
		attrs = append(attrs, peerAttrs(r.RemoteAddr)...)
		span.SetAttributes(attrs...)
	}
	return r.WithContext(ctx)
}

// endServerSpan ends the server span in r's context.
func (l *HTTPListener) endServerSpan(r *http.Request, rec *RequestRecord) {
	endServerSpan(trace.SpanFromContext(r.Context()), rec)
}

// startAttemptSpan starts the client span of the attempt out (to ep) and
// writes its context into out's header, in place of the client's
// trace-context fields; nil when tracing is off.
func (l *HTTPListener) startAttemptSpan(out *http.Request, x *exchange, ep *discovery.Endpoint) trace.Span {
	if l.tr == nil {
		return nil
	}
	ctx, span := l.tr.tracer.Start(out.Context(), spanName(methodName([]byte(out.Method), false)), clientKind...)
	for _, k := range traceHeaderKeys {
		delete(out.Header, k)
	}
	l.tr.prop.Inject(ctx, propagation.HeaderCarrier(out.Header))
	if span.IsRecording() {
		attempt, route := 0, ""
		if x.rec != nil {
			attempt = x.rec.Attempts
		}
		if x.route != nil {
			route = x.route.Name
		}
		span.SetAttributes(attemptAttrs(out.Method, route, x.service, ep, attempt)...)
	}
	return span
}

// endAttemptSpan ends an attempt's span (nil: tracing is off) that failed
// before a response.
func endAttemptSpan(span trace.Span, err error) {
	if span != nil {
		endClientSpan(span, 0, err)
	}
}

// tracedDone returns done, made to end the attempt's span (nil: tracing
// is off, done itself) with the response status and the outcome first.
func tracedDone(span trace.Span, status int, done func(balancer.DoneInfo)) func(balancer.DoneInfo) {
	if span == nil {
		return done
	}
	return func(d balancer.DoneInfo) {
		endClientSpan(span, status, d.Err)
		done(d)
	}
}
