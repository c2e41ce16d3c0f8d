package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strconv"

	"github.com/outrigger-mesh/outrigger/proxy/route"
	"github.com/outrigger-mesh/outrigger/resilience"
)

// Admission on net/http's path (see admit.go): HTTP/2, gRPC, HTTP/1.0,
// upgrades, and everything with NetHTTPOnly.

// httpAdmit is one admitted request on net/http's path. When the route
// has a breaker it also sees the status written (from the observed
// writer's record, else as the ResponseWriter itself).
type httpAdmit struct {
	http.ResponseWriter
	ad       admitted
	rec      *RequestRecord // the observed record; nil: status below
	status   int
	returned bool // ReverseProxy returned (it panics to abort a response)
}

// admitHTTP asks a's limits of rt and svc whether r may go. It answers a
// refusal itself and returns nil; else the caller forwards with the
// returned writer and calls finish when done (deferred: it must run when
// ReverseProxy aborts with a panic too).
func (l *HTTPListener) admitHTTP(w http.ResponseWriter, r *http.Request, a *Admission, rt *route.Route, svc string) (*httpAdmit, http.ResponseWriter) {
	rl, sl := a.route(rt.Index), a.service(svc)
	if rl == nil && (sl == nil || !sl.limited()) {
		return nil, w
	}
	var client netip.Addr
	if rl != nil && rl.perClient != nil {
		if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
			client = ap.Addr().Unmap()
		}
	}
	ad, ref := admit(rl, sl, client, false)
	if ref != nil {
		if ref.retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(ref.retryAfter))
		}
		l.writeError(w, r, ref.status, ref.cause, ref.msg, false)
		return nil, nil
	}
	h := &httpAdmit{ResponseWriter: w, ad: ad, rec: recordOf(w)}
	if !ad.breaker || h.rec != nil {
		// The writer stays as it was: the record (if any) has the status,
		// and without a breaker nobody needs it.
		return h, w
	}
	return h, h
}

func (h *httpAdmit) WriteHeader(code int) {
	if h.status == 0 || h.status < 200 {
		h.status = code
	}
	h.ResponseWriter.WriteHeader(code)
}

func (h *httpAdmit) Write(p []byte) (int, error) {
	if h.status == 0 {
		h.status = http.StatusOK
	}
	return h.ResponseWriter.Write(p)
}

func (h *httpAdmit) Unwrap() http.ResponseWriter { return h.ResponseWriter }

// finish releases the request's counts and reports its outcome to the
// route's breaker.
func (h *httpAdmit) finish(grpc bool, r *http.Request) {
	if !h.ad.breaker {
		h.ad.release()
		return
	}
	h.ad.done(h.outcome(grpc, r))
}

func (h *httpAdmit) outcome(grpc bool, r *http.Request) resilience.Outcome {
	if !h.returned {
		// ReverseProxy aborted a response that had started: the endpoint
		// broke mid-body, or the client went away.
		if r.Context().Err() != nil {
			return resilience.Outcome{Kind: resilience.KindCanceled}
		}
		return resilience.Outcome{Kind: resilience.KindReset}
	}
	status := h.status
	hdr := h.ResponseWriter.Header()
	if h.rec != nil {
		status = h.rec.Status
	}
	cause := hdr.Get(ErrorHeader)
	if grpc && status == http.StatusOK {
		// The call's status: a trailer, announced (copied to the header
		// map) or not (TrailerPrefix), or the header of a trailers-only
		// response (the proxy's own errors too).
		v := hdr.Get("Grpc-Status")
		if v == "" {
			v = hdr.Get(http.TrailerPrefix + "Grpc-Status")
		}
		if v != "" {
			code, err := strconv.Atoi(v)
			if err != nil {
				code = 2 // UNKNOWN, as grpc-go reads it
			}
			return resilience.GRPCResponse(code)
		}
	}
	return requestOutcome(status, cause)
}

// admitDial wraps a transport's dial with the connection limit of the
// request's service: at the limit it fails at once with errOverflow
// (answered 503 overflow by admitProxyError) instead of letting the
// transport queue for a connection. Dials carry the request context's
// values (net/http dials with context.WithoutCancel of it).
func (l *HTTPListener) admitDial(dial func(context.Context, string, string) (net.Conn, error)) func(context.Context, string, string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		x, _ := ctx.Value(exchangeKey{}).(*exchange)
		rs := l.routing.Load()
		if x == nil || rs.adm == nil {
			return dial(ctx, network, addr)
		}
		sl := rs.adm.service(x.service)
		if sl == nil || sl.maxConns.Load() <= 0 {
			return dial(ctx, network, addr)
		}
		if !sl.takeConn() {
			return nil, errOverflow
		}
		c, err := dial(ctx, network, addr)
		if err != nil {
			sl.conns.Add(-1)
			return nil, err
		}
		return &countedConn{Conn: c, sl: sl}, nil
	}
}

// admitProxyError is ReverseProxy's ErrorHandler: a dial refused at the
// connection limit is 503 overflow, anything else proxyError's.
func (l *HTTPListener) admitProxyError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, errOverflow) {
		l.writeError(w, r, http.StatusServiceUnavailable, causeOverflow, "too many connections to this service", false)
		return
	}
	l.proxyError(w, r, err)
}
