package proxy

import (
	"net/http"
	"net/netip"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Observing requests: both HTTP engines fill one RequestRecord per request
// as it goes (route, service, each attempt's endpoint, the status and the
// cause of an error the proxy made) and hand it to Options.Observer once
// the response is finished. Metrics and access logs are Observers, set up
// in cmd/outrigger; this package knows neither.

// RequestRecord is one HTTP request as the engine saw it. The engine owns
// it: it is reused for the connection's next request once Observe
// returns, and its strings may point into connection buffers, so an
// Observer copies what it keeps past the call.
type RequestRecord struct {
	Listener string // the listener's name
	Route    string // the matched route's name; "" when none matched
	Service  string // the service the route picked; "" for a direct answer
	Method   string // one of the standard methods, else "OTHER" unless Detail
	Proto    string // "HTTP/1.1", "HTTP/2.0", ...

	// Filled only when Options.ObserveDetail is set (they cost a copy).
	Authority string
	Path      string // the request target as received, query included
	Client    string // the client's address (the connection's peer)

	// Status is the status the client got (0 when none was written: the
	// client went away, or a body broke after the head). Cause is the
	// X-Outrigger-Error cause when the proxy made the answer itself
	// (no_route, no_endpoints, connect_failure, upstream_timeout,
	// upstream_reset, body_too_large, bad_request, ...), "" when it
	// came from an endpoint or a redirect or fixed route; with the
	// endpoint's status it is upstream_reset when the endpoint broke the
	// body after the head (the client got the status and a cut body).
	Status int
	Cause  string

	// Endpoint is the endpoint of the last attempt (zero when none was
	// picked); Attempts counts picks that were tried, failed dials
	// included; Retries counts attempts after the first that the retry
	// policy took (not reconnects after a failed dial).
	Endpoint netip.AddrPort
	Attempts int
	Retries  int

	// BytesOut counts response body bytes written to the client as far
	// as the engine knows (the fast path counts them; net/http's path
	// counts what the handler wrote).
	BytesOut int64

	Start    time.Time
	Duration time.Duration

	// TraceID is the trace of the request's server span (zero when
	// tracing is off): trace.TraceID.String gives the 32 hex digits
	// that tracing backends search by. It is set also when the span is
	// not sampled, for correlation with the logs of other services.
	TraceID trace.TraceID
}

// Observer sees every HTTP request an HTTPListener answered, once its
// response is finished (or abandoned). ObserveRequest runs on the
// request's goroutine, so it must be fast and must not block; r is valid
// only during the call.
type Observer interface {
	ObserveRequest(r *RequestRecord)
}

// methodName interns the standard methods, so that a record costs no
// allocation; any other method is "OTHER" (a bounded label set for
// metrics) unless detail asks for the method itself.
func methodName(m []byte, detail bool) string {
	switch string(m) {
	case "GET":
		return "GET"
	case "HEAD":
		return "HEAD"
	case "POST":
		return "POST"
	case "PUT":
		return "PUT"
	case "DELETE":
		return "DELETE"
	case "PATCH":
		return "PATCH"
	case "OPTIONS":
		return "OPTIONS"
	case "CONNECT":
		return "CONNECT"
	case "TRACE":
		return "TRACE"
	}
	if detail {
		return string(m)
	}
	return "OTHER"
}

// observedWriter is net/http's path's ResponseWriter when the listener has
// an Observer: it notes the status and counts body bytes. Flush and Hijack
// reach the writer beneath through Unwrap (http.ResponseController, which
// ReverseProxy uses).
type observedWriter struct {
	http.ResponseWriter
	rec RequestRecord
}

func (w *observedWriter) WriteHeader(code int) {
	if w.rec.Status == 0 || w.rec.Status < 200 {
		w.rec.Status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *observedWriter) Write(p []byte) (int, error) {
	if w.rec.Status == 0 {
		w.rec.Status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.rec.BytesOut += int64(n)
	return n, err
}

func (w *observedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// recordOf returns the record of a request whose writer is observed.
func recordOf(w http.ResponseWriter) *RequestRecord {
	if ow, ok := w.(*observedWriter); ok {
		return &ow.rec
	}
	return nil
}

func (l *HTTPListener) beginObserved(w http.ResponseWriter, r *http.Request) *observedWriter {
	ow := &observedWriter{ResponseWriter: w}
	ow.rec = RequestRecord{
		Listener: l.cfg.Name,
		Method:   methodName([]byte(r.Method), l.obsDetail),
		Proto:    r.Proto,
		Start:    time.Now(),
	}
	if l.obsDetail {
		ow.rec.Authority, ow.rec.Path, ow.rec.Client = r.Host, r.RequestURI, r.RemoteAddr
	}
	return ow
}

func (l *HTTPListener) endObserved(ow *observedWriter) {
	ow.rec.Duration = time.Since(ow.rec.Start)
	l.obs.ObserveRequest(&ow.rec)
}
