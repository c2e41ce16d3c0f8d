package proxy

import (
	"net"
	"net/netip"
	"net/url"
	"strconv"

	"github.com/outrigger-mesh/outrigger/proxy/route"
)

// Admission on the HTTP/1.1 fast path (see admit.go).

// admitForward forwards the request like forward once a admits it, and
// answers the refusal otherwise. The route breaker's outcome is read from
// the record after forward returns: the status the client got, and the
// cause when the proxy answered itself.
func (hc *h1conn) admitForward(a *Admission, n int, rt *route.Route, svc string, up Upstream, path string, u *url.URL, query string) bool {
	rl, sl := a.route(rt.Index), a.service(svc)
	if rl == nil && (sl == nil || !sl.limited()) {
		return hc.forward(n, rt, svc, up, path, u, query)
	}
	var client netip.Addr
	if rl != nil && rl.perClient != nil {
		client = hc.clientAddr()
	}
	ad, ref := admit(rl, sl, client, true)
	if ref != nil {
		return hc.answerAndSkipBody(n, func() bool { return hc.writeRefusal(ref) })
	}
	if ad.busy {
		// The service has a connection limit: tag the endpoint's pool
		// with it as it is picked. hc.pick lives in hc, so passing it as
		// an Upstream does not allocate.
		hc.pick = poolPick{up: up, sl: sl, pools: &hc.l.pools}
		up = &hc.pick
	}
	hc.rec.Status, hc.rec.Cause = 0, ""
	ok := hc.forward(n, rt, svc, up, path, u, query)
	hc.pick = poolPick{}
	ad.done(requestOutcome(hc.rec.Status, hc.rec.Cause))
	return ok
}

// clientAddr is the client's IP address, the key of per-client limits.
func (hc *h1conn) clientAddr() netip.Addr {
	if ta, ok := hc.c.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	ap, _ := netip.ParseAddrPort(hc.c.RemoteAddr().String())
	return ap.Addr().Unmap()
}

// writeRefusal answers an admission refusal, as writeError with
// Retry-After on a 429.
func (hc *h1conn) writeRefusal(ref *refusal) bool {
	if ref.retryAfter == 0 {
		return hc.writeError(ref.status, ref.cause, ref.msg, false)
	}
	b := appendStatusLine(hc.out[:0], ref.status, nil)
	b = append(b, "Content-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n"...)
	b = appendField(b, ErrorHeader, ref.cause)
	b = append(b, "Retry-After: "...)
	b = strconv.AppendInt(b, int64(ref.retryAfter), 10)
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(ref.msg)+1), 10)
	b = append(b, "\r\n"...)
	if hc.closeNext {
		b = append(b, "Connection: close\r\n"...)
		hc.linger = true
	}
	b = hc.appendWhy(b, ref.cause)
	b = append(b, "\r\n"...)
	head := len(b)
	if !hc.isHead() {
		b = append(b, ref.msg...)
		b = append(b, '\n')
	}
	hc.rec.Status, hc.rec.Cause = ref.status, ref.cause
	hc.out = b
	n, err := hc.c.Write(b)
	hc.rec.BytesOut = int64(max(0, n-head))
	return err == nil
}
