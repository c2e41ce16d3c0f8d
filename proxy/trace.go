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
// unsampled request costs its server span's start (the IDs and the
// sampler's decision), not the attribute copies, and no attempt span.
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
	attrClose    = attribute.Key("outrigger.close_reason")
	attrSent     = attribute.Key("outrigger.bytes_sent")     // TCP: client to endpoint
	attrReceived = attribute.Key("outrigger.bytes_received") // TCP: endpoint to client
)

// sampledStarter is a tracer that can skip the spans it does not sample
// (cmd/outrigger's). StartSampled starts a span of kind as a child of
// parent (when nil, of the span in ctx), as Start(ctx, name,
// trace.WithSpanKind(kind)) does with parent in ctx, when it is sampled,
// and returns it, in no context, and its SpanContext; for a span that is
// not sampled, it starts nothing and returns a nil span and the
// SpanContext the span would have had (its trace ID and its sampled flag,
// clear, for the next hop). On the fast path an unsampled request then
// costs no span and no context (at 0% sampling, making them was most of
// what tracing cost, bench B9), and a sampled one no context and no start
// options.
type sampledStarter interface {
	StartSampled(ctx context.Context, parent trace.Span, name string, kind trace.SpanKind) (trace.Span, trace.SpanContext)
}

// releaser is a span its owner can hand back once it has ended
// (cmd/outrigger's): Release promises that nobody will use the span
// again, so the tracer may reuse its memory once the span is exported.
// The fast path's spans are its own: it keeps them in its h1Trace only,
// and the server span's context goes to nobody but the tracer (to start
// the attempts' spans), so it releases every span it ends.
type releaser interface{ Release() }

// release releases span if it is a releaser. span has ended, and the
// caller drops it.
func release(span trace.Span) {
	if r, ok := span.(releaser); ok {
		r.Release()
	}
}

// tracing is a listener's tracer and propagator; nil when tracing is off.
// It is immutable.
type tracing struct {
	tracer  trace.Tracer
	sampled sampledStarter // tracer, when it is one; else nil
	prop    propagation.TextMapPropagator
	// the fields the fast path writes into upstream heads itself: those
	// of prop.Fields() it knows (traceparent, tracestate, b3)
	injectTP, injectTS, injectB3 bool
}

// tracing returns the tracing of the listener named name built with o;
// nil when o has no TracerProvider. The listener's name is an attribute
// of the tracer's instrumentation scope (outrigger.listener), exported
// once per batch and scope rather than on every span.
func (o Options) tracing(name string) *tracing {
	if o.TracerProvider == nil {
		return nil
	}
	p := o.Propagator
	if p == nil {
		p = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	}
	t := &tracing{
		tracer: o.TracerProvider.Tracer(tracerName, trace.WithInstrumentationAttributes(attrListener.String(name))),
		prop:   p,
	}
	t.sampled, _ = t.tracer.(sampledStarter)
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

// Attributes are set once per span, at its end, from a slice the caller
// keeps (per connection on the fast path): the SDK copies them into a
// slice of exactly their number, where a SetAttributes at the start and
// another at the end would grow it (a second, bigger allocation and a
// copy). The start's attributes are gathered at the start, while the
// request's head is in hand. The SDK does not keep the slice passed.

// Counts of attributes, for scratch slices that never grow.
//
// A span ends in the SDK with a map of its attribute keys (to drop
// duplicates), and a Go map of up to eight entries is one small block
// where one of nine or more is a table of several: so a request's spans
// keep to eight attributes each as a rule, and only an error, a retry or
// a protocol other than HTTP/1.1 adds more. Of the HTTP semantic
// conventions' recommended attributes, network.protocol.version is set
// only when it is not 1.1; the listener's name is on the instrumentation
// scope (Options.tracing), and the service on the attempts' spans (on the
// server span only when no attempt was made).
const (
	serverSpanAttrs = 12 // start: 6 (7 with the protocol version); end: 2 as a rule, 5 at most
	clientSpanAttrs = 8  // start: 6; end: 2 at most
)

// endServerSpan ends a request's server span with attrs (gathered at its
// start, in a scratch slice of the caller's) and what rec says of the
// answer: the status, and for an error the proxy made, its cause as the
// span's error (a 404 no_route is the proxy's error too, unlike a 404 of
// the application). A 5xx from the endpoint is an error as well. It
// returns attrs emptied, for reuse.
func endServerSpan(span trace.Span, rec *RequestRecord, attrs []attribute.KeyValue) []attribute.KeyValue {
	if span.IsRecording() {
		if rec.Status != 0 {
			attrs = append(attrs, semconv.HTTPResponseStatusCode(rec.Status))
		}
		if rec.Route != "" {
			attrs = append(attrs, attrRoute.String(rec.Route))
		}
		if rec.Service != "" && rec.Attempts == 0 {
			// No attempt span says it.
			attrs = append(attrs, attrService.String(rec.Service))
		}
		if rec.Attempts > 1 {
			// Set only when a request was retried: one attempt is the
			// rule, and each attempt has its client span.
			attrs = append(attrs, attrAttempts.Int(rec.Attempts))
		}
		switch {
		case rec.Cause != "":
			// The cause is the status description too (and the
			// X-Outrigger-Error value).
			attrs = append(attrs, semconv.ErrorTypeKey.String(rec.Cause))
			span.SetStatus(codes.Error, rec.Cause)
		case rec.Status >= 500:
			attrs = append(attrs, semconv.ErrorTypeKey.String(statusString(rec.Status)))
			span.SetStatus(codes.Error, "")
		}
		span.SetAttributes(attrs...)
	}
	span.End()
	clear(attrs) // let go of the request's strings
	return attrs[:0]
}

// appendAttemptAttrs appends a client span's attributes known at its
// start: addr and port are the endpoint's (ep.Addr, as endpointHost
// gives it).
//
// Every attribute is a cost per span, twice (the SDK copies them into
// its span and again into the ended span's snapshot) and once more in
// the export, so an attempt carries none its server span or its other
// attributes already say: network.peer.address and .port would repeat
// server.address and .port (the endpoint, dialled by IP), and the route
// is on the server span.
func appendAttemptAttrs(attrs []attribute.KeyValue, method, service string, ep *discovery.Endpoint, addr string, attempt int) []attribute.KeyValue {
	return append(attrs,
		semconv.HTTPRequestMethodKey.String(method),
		semconv.ServerAddress(addr),
		semconv.ServerPort(int(ep.Addr.Port())),
		attrService.String(service),
		attrEndpoint.String(ep.ID),
		attrAttempt.Int(attempt),
	)
}

// endpointHost is the server.address of an endpoint.
func endpointHost(ep *discovery.Endpoint) string {
	return ep.Addr.Addr().Unmap().String()
}

// endClientSpan ends an attempt's client span with attrs (gathered at its
// start, in a scratch slice of the caller's; nil when the span does not
// record): status is the endpoint's response status (0: none came), err
// the attempt's outcome as given to Done. A client that went away
// (context.Canceled) is no error of the endpoint's. It returns attrs
// emptied, for reuse.
func endClientSpan(span trace.Span, attrs []attribute.KeyValue, status int, err error) []attribute.KeyValue {
	if span.IsRecording() {
		if status != 0 {
			attrs = append(attrs, semconv.HTTPResponseStatusCode(status))
		}
		if err != nil {
			if et := attemptErrorType(err); et != "" {
				attrs = append(attrs, semconv.ErrorTypeKey.String(et))
				span.SetStatus(codes.Error, err.Error())
			}
		}
		span.SetAttributes(attrs...)
	}
	span.End()
	clear(attrs)
	return attrs[:0]
}

// attemptErrorType is the error.type of an attempt that ended with err
// (not nil): the endpoint's status for a *StatusError, "" for a client
// that went away, else the cause the client would be told.
func attemptErrorType(err error) string {
	var se *StatusError
	switch {
	case errors.As(err, &se):
		return statusString(se.Code)
	case errors.Is(err, context.Canceled):
		return ""
	}
	return errorType(err)
}

// statusStrings are the decimal forms of 5xx status codes, made once.
var statusStrings = func() (s [100]string) {
	for i := range s {
		s[i] = strconv.Itoa(500 + i)
	}
	return s
}()

// statusString is strconv.Itoa(code), without an allocation for a 5xx.
func statusString(code int) string {
	if code >= 500 && code < 600 {
		return statusStrings[code-500]
	}
	return strconv.Itoa(code)
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

// appendPeerAttrs appends client.address and network.peer.address and
// .port of a connection's peer: a TCP span's. An HTTP server span has
// client.address only (the same address; see appendAttemptAttrs on the
// cost of each attribute).
func appendPeerAttrs(attrs []attribute.KeyValue, addr string, port int) []attribute.KeyValue {
	return append(attrs,
		semconv.ClientAddress(addr),
		semconv.NetworkPeerAddress(addr),
		semconv.NetworkPeerPort(port),
	)
}

// parsePeer splits a connection's remote address ("ip:port") into the
// unmapped address and the port; ok is false when it is no IP address.
func parsePeer(remote string) (addr string, port int, ok bool) {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return "", 0, false
	}
	return ap.Addr().Unmap().String(), int(ap.Port()), true
}

// peerAttrs are network.peer.address and .port of a connection's remote
// address ("ip:port").
func peerAttrs(remote string) []attribute.KeyValue {
	a, port, ok := parsePeer(remote)
	if !ok {
		return nil
	}
	return appendPeerAttrs(nil, a, port)
}

// splitHost is the server.address and server.port of a Host value.
func splitHost(host string, defPort int) (string, int) {
	h, port := host, defPort
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasSuffix(host, "]") {
		if p, err := strconv.Atoi(host[i+1:]); err == nil {
			h, port = host[:i], p
		}
	}
	return strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"), port
}

// appendHostAttrs appends server.address and server.port.
func appendHostAttrs(attrs []attribute.KeyValue, host string, port int) []attribute.KeyValue {
	return append(attrs, semconv.ServerAddress(host), semconv.ServerPort(port))
}
