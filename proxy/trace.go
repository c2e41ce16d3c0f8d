package proxy

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/outrigger-mesh/outrigger/discovery"
)

// Tracing (Options.TracerProvider). Every HTTP request gets a server span
// (both engines), every upstream attempt of it a client span, child of the
// server span (so a retry or a reconnect after a failed dial is a span of
// its own), and every forwarded TCP connection a server span. The parent
// of a request's server span is extracted from its fields with
// Options.Propagator; the upstream request carries the context of its
// attempt's client span, and the client's own trace-context fields
// (traceparent, tracestate, b3, x-b3-*) are dropped from it: they would
// name the client's span as the parent and skip ours. Baggage passes
// through as the client sent it.
//
// Off (nil TracerProvider) costs one nil check per request and attempt.
// When on, attributes are set only on recording (sampled) spans, so an
// unsampled request costs the span starts and the ID generation, not the
// attribute copies.
//
// This package uses the OpenTelemetry API only; cmd/outrigger sets up the
// SDK, the exporter and the propagator.

// tracerName is the instrumentation scope of the proxy's spans.
const tracerName = "github.com/outrigger-mesh/outrigger/proxy"

// Attribute keys of our own, beside the HTTP semantic conventions.
const (
	attrListener = attribute.Key("outrigger.listener")
	attrRoute    = attribute.Key("outrigger.route")
	attrService  = attribute.Key("outrigger.service")
	attrEndpoint = attribute.Key("outrigger.endpoint") // the endpoint's ID
	attrAttempt  = attribute.Key("outrigger.attempt")  // 1 for the first attempt of a request
	attrAttempts = attribute.Key("outrigger.attempts") // on the server span: attempts taken
	attrError    = attribute.Key("outrigger.error")    // the X-Outrigger-Error cause
	attrClose    = attribute.Key("outrigger.close_reason")
	attrSent     = attribute.Key("outrigger.bytes_sent")     // TCP: client to endpoint
	attrReceived = attribute.Key("outrigger.bytes_received") // TCP: endpoint to client
)

// tracing is a listener's tracer and propagator; nil when tracing is off.
// It is immutable.
type tracing struct {
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
	// the fields the fast path writes into upstream heads itself: those
	// of prop.Fields() it knows (traceparent, tracestate, b3)
	injectTP, injectTS, injectB3 bool
}

// tracing returns the tracing of a listener built with o; nil when o has
// no TracerProvider.
func (o Options) tracing() *tracing {
	if o.TracerProvider == nil {
		return nil
	}
	p := o.Propagator
	if p == nil {
		p = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	}
	t := &tracing{tracer: o.TracerProvider.Tracer(tracerName), prop: p}
	for _, f := range p.Fields() {
		switch strings.ToLower(f) {
		case "traceparent":
			t.injectTP = true
		case "tracestate":
			t.injectTS = true
		case "b3":
			t.injectB3 = true
		}
	}
	return t
}

// Start options, made once: a variadic slice passed to an interface
// method would be allocated per call.
var (
	serverKind = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}
	clientKind = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}
)

// spanName is an HTTP span's name: its method, or "HTTP" for a method
// outside the standard set (semantic conventions: the name must not carry
// unbounded values).
func spanName(method string) string {
	if method == "OTHER" || method == "" {
		return "HTTP"
	}
	return method
}

// traceFields are the trace-context fields the proxy replaces with its own
// on the way upstream (lower case; canonical forms in traceHeaderKeys).
var traceFields = [...]string{
	"traceparent", "tracestate", "b3",
	"x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags",
}

// traceHeaderKeys are traceFields in net/http's canonical form.
var traceHeaderKeys = [...]string{
	"Traceparent", "Tracestate", "B3",
	"X-B3-Traceid", "X-B3-Spanid", "X-B3-Parentspanid", "X-B3-Sampled", "X-B3-Flags",
}

// isTraceField reports whether name is one of traceFields, in any case.
func isTraceField(name []byte) bool {
	switch len(name) {
	case 2, 10, 11, 12, 17:
	default:
		return false
	}
	for _, f := range traceFields {
		if len(f) == len(name) && equalFoldLower(name, f) {
			return true
		}
	}
	return false
}

// equalFoldLower reports whether b equals the lower-case s ignoring ASCII
// case.
func equalFoldLower(b []byte, s string) bool {
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// endServerSpan ends a request's server span with what rec says of the
// answer: the status, and for an error the proxy made, its cause as the
// span's error (a 404 no_route is the proxy's error too, unlike a 404 of
// the application). A 5xx from the endpoint is an error as well.
func endServerSpan(span trace.Span, rec *RequestRecord) {
	if span.IsRecording() {
		attrs := make([]attribute.KeyValue, 0, 6)
		if rec.Status != 0 {
			attrs = append(attrs, semconv.HTTPResponseStatusCode(rec.Status))
		}
		if rec.Route != "" {
			attrs = append(attrs, attrRoute.String(rec.Route))
		}
		if rec.Service != "" {
			attrs = append(attrs, attrService.String(rec.Service))
		}
		if rec.Attempts > 0 {
			attrs = append(attrs, attrAttempts.Int(rec.Attempts))
		}
		switch {
		case rec.Cause != "":
			attrs = append(attrs, attrError.String(rec.Cause), semconv.ErrorTypeKey.String(rec.Cause))
			span.SetStatus(codes.Error, rec.Cause)
		case rec.Status >= 500:
			attrs = append(attrs, semconv.ErrorTypeKey.String(strconv.Itoa(rec.Status)))
			span.SetStatus(codes.Error, "")
		}
		span.SetAttributes(attrs...)
	}
	span.End()
}

// attemptAttrs are a client span's attributes at its start.
func attemptAttrs(method, route, service string, ep *discovery.Endpoint, attempt int) []attribute.KeyValue {
	a := ep.Addr.Addr().Unmap().String()
	return []attribute.KeyValue{
		semconv.HTTPRequestMethodKey.String(method),
		semconv.ServerAddress(a),
		semconv.ServerPort(int(ep.Addr.Port())),
		semconv.NetworkPeerAddress(a),
		semconv.NetworkPeerPort(int(ep.Addr.Port())),
		attrRoute.String(route),
		attrService.String(service),
		attrEndpoint.String(ep.ID),
		attrAttempt.Int(attempt),
	}
}

// endClientSpan ends an attempt's client span: status is the endpoint's
// response status (0: none came), err the attempt's outcome as given to
// Done. A client that went away (context.Canceled) is no error of the
// endpoint's.
func endClientSpan(span trace.Span, status int, err error) {
	if span.IsRecording() {
		if status != 0 {
			span.SetAttributes(semconv.HTTPResponseStatusCode(status))
		}
		var se *StatusError
		switch {
		case err == nil:
		case errors.As(err, &se):
			span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(se.Code)))
			span.SetStatus(codes.Error, err.Error())
		case errors.Is(err, context.Canceled):
		default:
			span.SetAttributes(semconv.ErrorTypeKey.String(errorType(err)))
			span.SetStatus(codes.Error, err.Error())
		}
	}
	span.End()
}

// errorType is the error.type of an attempt's failure: the cause the
// client would be told.
func errorType(err error) string {
	var de *DialError
	if errors.As(err, &de) {
		return causeConnectFailure
	}
	if isTimeout(err) {
		return causeUpstreamTimeout
	}
	return causeUpstreamReset
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// peerAttrs are network.peer.address and .port of a connection's remote
// address ("ip:port").
func peerAttrs(remote string) []attribute.KeyValue {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return nil
	}
	a := ap.Addr().Unmap().String()
	return []attribute.KeyValue{
		semconv.ClientAddress(a),
		semconv.NetworkPeerAddress(a),
		semconv.NetworkPeerPort(int(ap.Port())),
	}
}

// hostAttrs are server.address and server.port of a Host value.
func hostAttrs(host string, defPort int) []attribute.KeyValue {
	h, port := host, defPort
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasSuffix(host, "]") {
		if p, err := strconv.Atoi(host[i+1:]); err == nil {
			h, port = host[:i], p
		}
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	return []attribute.KeyValue{semconv.ServerAddress(h), semconv.ServerPort(port)}
}
