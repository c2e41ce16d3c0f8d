package proxy

import (
	"context"
	"encoding/hex"
	"net"
	"net/netip"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/outrigger-mesh/outrigger/balancer"
	"github.com/outrigger-mesh/outrigger/discovery"
)

// Tracing on the fast path (see trace.go). The parent context is
// extracted from the parsed fields in place (h1Carrier), without a copy of
// the head. The upstream head is built once per request, before the
// attempt loop, so appendRequestHead writes traceparent (and b3) with the
// server span's IDs and remembers where their values are; each attempt
// overwrites them in place with its client span's IDs (the values have a
// fixed length).

// h1Trace is the tracing state of the request an h1conn serves; its zero
// value means no span. Owned by the connection's goroutine; it outlives
// the connection (h1conns), and so do its scratch slices and caches.
type h1Trace struct {
	// the server span's context, for its attempts' spans; with a tracer
	// that takes the parent span itself (sampledStarter), the request's
	// context without it
	ctx context.Context
	// the server span's SpanContext, valid while a request is served;
	// with a tracer that skips unsampled spans (sampledStarter), that of
	// the span an unsampled request would have had, and server is nil
	sc        trace.SpanContext
	server    trace.Span
	recording bool       // server records: its attempts get spans
	client    trace.Span // the attempt in flight, nil between attempts

	// the attributes of the server span and of the attempt's client
	// span, gathered at their start and set at their end (trace.go);
	// empty when the span does not record
	attrs, cattrs []attribute.KeyValue

	// offsets in hc.out of the traceparent and b3 values in the upstream
	// head; 0 when the head has none
	tpOff, b3Off int

	done   func(balancer.DoneInfo) // the Done of the attempt relay finishes
	doneFn func(balancer.DoneInfo) // hc.attemptDone, bound once per h1conn

	// Strings of the last request's attributes, kept while the next
	// request has the same (as on a keep-alive connection, mostly): the
	// peer's address and port for the connection whose remote address
	// is peerOf, the Host value and what it splits into, the path, the
	// endpoint's address.
	peerOf           *net.TCPAddr
	peer             string
	peerPort         int
	host, hostName   string
	hostPort, hostDP int // hostDP: the default port hostPort was found with
	path             string
	epAddr           netip.AddrPort
	epHost           string
}

// Lengths of the values written and overwritten in place.
const (
	traceparentLen = 2 + 1 + 32 + 1 + 16 + 1 + 2 // version-traceid-spanid-flags
	b3Len          = 32 + 1 + 16 + 1 + 1         // traceid-spanid-sampled
)

// h1Carrier reads a request's parsed fields for a propagator's Extract. It
// is an h1conn, so that passing it as an interface allocates nothing.
type h1Carrier h1conn

// Get returns the first value of key (lower case, as propagators ask). It
// is copied: trace state and baggage keep substrings of it, and the buffer
// it is in is reused.
func (c *h1Carrier) Get(key string) string {
	for _, f := range c.req.Fields {
		if len(f.Name) == len(key) && equalFoldLower(f.Name, key) {
			return string(f.Value)
		}
	}
	return ""
}

// Set is not used: Extract only reads.
func (c *h1Carrier) Set(string, string) {}

// Keys returns the request's field names, lower case.
func (c *h1Carrier) Keys() []string {
	keys := make([]string, 0, len(c.req.Fields))
	for _, f := range c.req.Fields {
		keys = append(keys, strings.ToLower(string(f.Name)))
	}
	return keys
}

// hasContextField reports whether the request carries a field a
// propagator reads (see Options.Propagator).
func (hc *h1conn) hasContextField() bool {
	for _, f := range hc.req.Fields {
		if isTraceField(f.Name) || len(f.Name) == len("baggage") && equalFoldLower(f.Name, "baggage") {
			return true
		}
	}
	return false
}

// startServerSpan starts the server span of the request just parsed;
// hc.rec has been begun. Tracing is on.
func (hc *h1conn) startServerSpan() {
	tr := hc.l.tr
	ctx := context.Background()
	if hc.hasContextField() {
		// Most requests at the edge of a mesh carry none: they start a
		// trace, and the propagators' lookups (eight fields for W3C,
		// baggage and B3, each a scan of the head) are skipped.
		ctx = tr.prop.Extract(ctx, (*h1Carrier)(hc))
	}
	var span trace.Span
	var sc trace.SpanContext
	if tr.sampled != nil {
		// ctx stays the request's (its baggage, for a sampler that reads
		// it); the attempts' parent is given as span itself
		span, sc = tr.sampled.StartSampled(ctx, nil, spanName(hc.rec.Method), trace.SpanKindServer)
	} else {
		ctx, span = tr.tracer.Start(ctx, spanName(hc.rec.Method), serverKind...)
		sc = span.SpanContext()
	}
	t := &hc.trace
	t.ctx, t.sc, t.server, t.client, t.tpOff, t.b3Off = ctx, sc, span, nil, 0, 0
	hc.rec.TraceID = sc.TraceID()
	t.recording = span != nil && span.IsRecording()
	if !t.recording {
		return
	}
	req := &hc.req
	target := req.Target
	for i, c := range target {
		if c == '?' {
			target = target[:i]
			break
		}
	}
	if string(target) != t.path {
		t.path = string(target)
	}
	if t.attrs == nil {
		t.attrs = make([]attribute.KeyValue, 0, serverSpanAttrs)
	}
	t.attrs = append(t.attrs[:0],
		semconv.HTTPRequestMethodKey.String(methodName(req.Method, true)),
		semconv.URLPath(t.path),
		semconv.URLScheme(hc.scheme()),
	)
	host, port := hc.traceHost()
	t.attrs = appendHostAttrs(t.attrs, host, port)
	if peer, _, ok := hc.tracePeer(); ok {
		t.attrs = append(t.attrs, semconv.ClientAddress(peer))
	}
}

// traceHost is the request's server.address and server.port.
func (hc *h1conn) traceHost() (string, int) {
	t, def := &hc.trace, hc.defaultPort()
	if string(hc.req.Host) != t.host || def != t.hostDP {
		t.host, t.hostDP = string(hc.req.Host), def
		t.hostName, t.hostPort = splitHost(t.host, def)
	}
	return t.hostName, t.hostPort
}

// tracePeer is the connection's peer address and port; ok is false when
// its remote address is not an IP address.
func (hc *h1conn) tracePeer() (string, int, bool) {
	t := &hc.trace
	ra := hc.c.RemoteAddr()
	ta, ok := ra.(*net.TCPAddr)
	if !ok {
		return parsePeer(ra.String())
	}
	if ta != t.peerOf {
		ap := ta.AddrPort()
		t.peerOf, t.peer, t.peerPort = ta, ap.Addr().Unmap().String(), int(ap.Port())
	}
	return t.peer, t.peerPort, true
}

// scheme is the request's URL scheme.
func (hc *h1conn) scheme() string {
	if hc.tcp == nil { // a *tls.Conn
		return "https"
	}
	return "http"
}

func (hc *h1conn) defaultPort() int {
	if hc.tcp == nil {
		return 443
	}
	return 80
}

// endServerSpan ends the request's server span (and an attempt span a
// failure path left open).
func (hc *h1conn) endServerSpan() {
	t := &hc.trace
	t.sc = trace.SpanContext{}
	if t.server == nil {
		t.ctx = nil
		return
	}
	if t.client != nil {
		hc.endAttempt(0, errAttemptAbandoned)
	}
	t.attrs = endServerSpan(t.server, &hc.rec, t.attrs)
	release(t.server)
	t.ctx, t.server, t.recording, t.done = nil, nil, false, nil
}

// errAttemptAbandoned ends an attempt span that no outcome ended.
var errAttemptAbandoned = &traceError{"attempt abandoned"}

type traceError struct{ s string }

func (e *traceError) Error() string { return e.s }

// appendTraceFields appends the upstream head's trace-context fields with
// the server span's IDs as placeholders, and records where the values are
// (b starts at hc.out[0]). Tracing is on.
func (hc *h1conn) appendTraceFields(b []byte) []byte {
	t, tr := &hc.trace, hc.l.tr
	t.tpOff, t.b3Off = 0, 0
	sc := t.sc
	if !sc.IsValid() {
		return b
	}
	if tr.injectTP {
		b = append(b, "traceparent: "...)
		t.tpOff = len(b)
		b = appendTraceparent(b, sc)
		b = append(b, "\r\n"...)
	}
	if ts := sc.TraceState(); tr.injectTS && ts.Len() > 0 {
		b = appendField(b, "tracestate", ts.String())
	}
	if tr.injectB3 {
		b = append(b, "b3: "...)
		t.b3Off = len(b)
		b = appendB3(b, sc)
		b = append(b, "\r\n"...)
	}
	return b
}

// appendTraceparent appends a W3C traceparent value (version 00).
func appendTraceparent(b []byte, sc trace.SpanContext) []byte {
	tid, sid := sc.TraceID(), sc.SpanID()
	b = append(b, "00-"...)
	b = hex.AppendEncode(b, tid[:])
	b = append(b, '-')
	b = hex.AppendEncode(b, sid[:])
	b = append(b, '-')
	return hex.AppendEncode(b, []byte{byte(sc.TraceFlags())})
}

// appendB3 appends a B3 single-header value: traceid-spanid-sampled.
func appendB3(b []byte, sc trace.SpanContext) []byte {
	tid, sid := sc.TraceID(), sc.SpanID()
	b = hex.AppendEncode(b, tid[:])
	b = append(b, '-')
	b = hex.AppendEncode(b, sid[:])
	if sc.IsSampled() {
		return append(b, "-1"...)
	}
	return append(b, "-0"...)
}

// startAttempt starts the client span of an attempt to ep and writes its
// context into the upstream head in hc.out. Tracing is on, and the
// request's server span records (hc.trace.recording).
func (hc *h1conn) startAttempt(ep *discovery.Endpoint, svc string) {
	t := &hc.trace
	if !t.recording {
		// An unsampled request: the upstream head already carries the
		// server span's context (appendTraceFields), which says all a
		// span of the attempt's would (the trace and "not sampled"), and
		// saves its start. With every sampler the SDK offers an attempt
		// is sampled exactly when its server span is: parent-based ones
		// follow the parent, ratio ones decide by the trace ID both share.
		return
	}
	if t.client != nil {
		hc.endAttempt(0, errAttemptAbandoned)
	}
	var span trace.Span
	var sc trace.SpanContext
	if tr := hc.l.tr; tr.sampled != nil {
		// nil when the sampler does not sample it (none of the SDK's
		// samplers do that to a child of a sampled span)
		span, sc = tr.sampled.StartSampled(t.ctx, t.server, spanName(hc.rec.Method), trace.SpanKindClient)
	} else {
		_, span = tr.tracer.Start(t.ctx, spanName(hc.rec.Method), clientKind...)
		sc = span.SpanContext()
	}
	t.client = span
	if t.tpOff > 0 && t.tpOff+traceparentLen <= len(hc.out) {
		appendTraceparent(hc.out[t.tpOff:t.tpOff], sc)
	}
	if t.b3Off > 0 && t.b3Off+b3Len <= len(hc.out) {
		appendB3(hc.out[t.b3Off:t.b3Off], sc)
	}
	if span != nil && span.IsRecording() {
		if ep.Addr != t.epAddr {
			t.epAddr, t.epHost = ep.Addr, endpointHost(ep)
		}
		if t.cattrs == nil {
			t.cattrs = make([]attribute.KeyValue, 0, clientSpanAttrs)
		}
		t.cattrs = appendAttemptAttrs(t.cattrs[:0], methodName(hc.req.Method, true), svc, ep, t.epHost, hc.rec.Attempts)
	}
}

// endAttempt ends the attempt's client span, if one is open.
func (hc *h1conn) endAttempt(status int, err error) {
	if span := hc.trace.client; span != nil {
		hc.trace.client = nil
		hc.trace.cattrs = endClientSpan(span, hc.trace.cattrs, status, err)
		release(span)
	}
}

// tracedDone returns the Done relay calls for the attempt in flight: it
// ends the attempt's span with the response status and outcome, then calls
// done. Tracing is on.
func (hc *h1conn) tracedDone(done func(balancer.DoneInfo)) func(balancer.DoneInfo) {
	hc.trace.done = done
	if hc.trace.doneFn == nil {
		hc.trace.doneFn = hc.attemptDone
	}
	return hc.trace.doneFn
}

func (hc *h1conn) attemptDone(d balancer.DoneInfo) {
	done := hc.trace.done
	hc.trace.done = nil
	hc.endAttempt(hc.resp.Status, d.Err)
	done(d)
}
