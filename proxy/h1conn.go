package proxy

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/outrigger-mesh/outrigger/balancer"
	"github.com/outrigger-mesh/outrigger/proxy/internal/h1"
	"github.com/outrigger-mesh/outrigger/proxy/route"
)

// The HTTP/1.1 fast path: one loop per client connection that parses
// requests itself (proxy/internal/h1), routes and balances each, and
// forwards it over the listener's own upstream pool (h1pool.go). It hands
// the connection to net/http (serveConn's general path, every buffered byte
// replayed) at the first request it does not do, for the rest of the
// connection's life: see fastHandoff.
//
// Writes have no deadline, to the client or to the endpoint, as net/http's
// server without WriteTimeout: a response body or upload may stream for as
// long as both sides move, and a deadline would cut legitimate slow or
// long transfers (event streams, downloads over slow links). A peer that
// stops reading blocks its own connection's goroutine only; the drain's
// deadline (closeFast) closes both sockets, which ends any blocked write,
// and a client that goes away is seen by TCP (reset, keep-alive probes).
// Reads have deadlines: HeaderTimeout, IdleTimeout, ResponseTimeout; the
// body pump stops with past deadlines (bodyPump.abort).

// maxFields is how many header field lines a request or response head may
// have on the fast path; more is answered 431 (net/http bounds only the
// bytes).
const maxFields = 128

// maxCoalesce bounds a write that joins a message head and body bytes
// already in hand; bigger bodies are written after the head.
const maxCoalesce = 64 << 10

// spliceMin is the remaining Content-Length body size from which bytes move
// between two *net.TCPConn with ReadFrom (splice on Linux) instead of
// through the buffer.
const spliceMin = 64 << 10

// client connection states, for the drain
const (
	fcBusy    int32 = iota // reading or answering a request
	fcIdle                 // waiting for a request's first byte
	fcClosing              // the drain closes it
)

// h1conn is one client connection on the fast path. It is owned by its
// loop's goroutine, except state and cur, which the drain reads, and buf,
// r and w, which a body pump owns while it runs.
type h1conn struct {
	l   *HTTPListener
	c   net.Conn
	tcp *net.TCPConn // c when it is one

	buf  []byte // read buffer; buf[r:w] is unread
	r, w int
	out  []byte // write buffer: upstream request heads, responses

	req     h1.Request
	resp    h1.Response
	fields  *[maxFields]h1.Field // request head's; pooled, given up while parked
	rfields *[maxFields]h1.Field // response head's; the same
	chunks  h1.ChunkedScanner    // the request body's (a body pump's while it runs)
	rchunks h1.ChunkedScanner    // the response body's
	info    balancer.PickInfo
	rec     RequestRecord // the request being served, for l.obs
	pick    poolPick      // the Upstream of a request under a connection limit (admit_h1.go)
	trace   h1Trace       // its spans when tracing is on (trace_h1.go)
	why     whyTrail      // its X-Outrigger-Why trail when asked (debugwhy_h1.go)

	client    string // client address for X-Forwarded-For
	trusted   bool   // client is a TrustedProxies peer
	closeNext bool   // the answer being written ends the connection
	linger    bool   // close with lingerClose: unread input may follow
	served    bool   // a request was read: the idle timeout applies
	head      bool   // the request's method is HEAD (see isHead)

	state atomic.Int32
	cur   atomic.Pointer[upConn] // the upstream connection in use
}

// h1conns recycles h1conn values (with their field arrays) between
// connections.
var h1conns = sync.Pool{New: func() any { return new(h1conn) }}

// fastEnabled reports whether serveConn runs the fast path for this
// listener.
func (l *HTTPListener) fastEnabled() bool {
	return !l.cfg.GRPC && l.cfg.UpstreamProtocol == UpstreamHTTP1 && !l.cfg.NetHTTPOnly
}

// serveFast runs the fast path on c until it closes or is handed to
// net/http. The connection is counted by serveConn already.
func (l *HTTPListener) serveFast(c net.Conn, prefix []byte) {
	hc := h1conns.Get().(*h1conn)
	hc.l, hc.c = l, c
	if hc.tcp, _ = c.(*net.TCPConn); hc.tcp != nil {
		hc.c = newSysConn(hc.tcp)
	}
	hc.takeFields()
	hc.buf = upBufs.Get().(*[upBufSize]byte)[:]
	hc.r, hc.w = 0, 0
	if len(prefix) > len(hc.buf) {
		hc.buf = make([]byte, len(prefix)+upBufSize)
	}
	hc.w = copy(hc.buf, prefix)
	hc.client, hc.trusted = l.peerOf(c.RemoteAddr())
	hc.state.Store(fcBusy)
	hc.linger, hc.served, hc.head = false, false, false
	if !l.register(hc) {
		c.Close()
		l.release(hc)
		return
	}
	handoff := hc.loop()
	l.unregister(hc)
	if handoff {
		// Everything unread goes first; net/http then owns and counts
		// the connection.
		prefix := append([]byte(nil), hc.buf[hc.r:hc.w]...)
		l.release(hc)
		l.toNetHTTP(c, prefix)
		return
	}
	if hc.linger {
		lingerClose(c)
	} else {
		c.Close()
	}
	l.release(hc)
	l.conns.Add(-1)
	l.active.done()
}

// lingerDelay is how long lingerClose waits for the client to close, as
// net/http's rstAvoidanceDelay.
const lingerDelay = 500 * time.Millisecond

// lingerClose closes a connection the proxy ends after an answer while
// the client may still be sending (a refused head, an unread body):
// closing a socket with unread input resets it, and the reset can destroy
// the answer in flight. So it half-closes, reads and discards until the
// client's EOF or lingerDelay, and then closes (as net/http's
// closeWriteAndWait).
func lingerClose(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		c.SetReadDeadline(time.Now().Add(lingerDelay))
		var b [4 << 10]byte
		for range 64 {
			if _, err := c.Read(b[:]); err != nil {
				break
			}
		}
	}
	c.Close()
}

// release returns hc's buffers and hc to their pools.
func (l *HTTPListener) release(hc *h1conn) {
	if len(hc.buf) == upBufSize {
		upBufs.Put((*[upBufSize]byte)(hc.buf))
	}
	hc.buf = nil
	if cap(hc.out) > 256<<10 {
		hc.out = nil // do not keep a huge one
	}
	hc.out = hc.out[:0]
	hc.c, hc.tcp, hc.l = nil, nil, nil
	hc.req, hc.resp = h1.Request{}, h1.Response{}
	hc.giveFields()
	hc.cur.Store(nil)
	h1conns.Put(hc)
}

// fieldArrays recycles the field arrays heads are parsed into (6 KiB
// each): a connection holds its two only while it is not parked.
var fieldArrays = sync.Pool{New: func() any { return new([maxFields]h1.Field) }}

// takeFields gives hc its field arrays.
func (hc *h1conn) takeFields() {
	hc.fields = fieldArrays.Get().(*[maxFields]h1.Field)
	hc.rfields = fieldArrays.Get().(*[maxFields]h1.Field)
}

// giveFields returns hc's field arrays, cleared (they point into buffers
// that are returned too).
func (hc *h1conn) giveFields() {
	for _, f := range []*[maxFields]h1.Field{hc.fields, hc.rfields} {
		if f != nil {
			clear(f[:])
			fieldArrays.Put(f)
		}
	}
	hc.fields, hc.rfields = nil, nil
	hc.req.Fields, hc.resp.Fields = nil, nil
}

// peerOf is peer for a connection's remote address, computed once per
// connection.
func (l *HTTPListener) peerOf(a net.Addr) (string, bool) {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		ip := ap.Addr().Unmap()
		for _, p := range l.cfg.TrustedProxies {
			if p.Contains(ip) {
				return ip.String(), true
			}
		}
		return ip.String(), false
	}
	return l.peer(a.String())
}

// register adds hc to the listener's fast connections; false when the
// listener is draining.
func (l *HTTPListener) register(hc *h1conn) bool {
	l.fastMu.Lock()
	defer l.fastMu.Unlock()
	if l.draining.Load() {
		return false
	}
	if l.fast == nil {
		l.fast = map[*h1conn]struct{}{}
	}
	l.fast[hc] = struct{}{}
	return true
}

// unregister removes hc from the listener's fast connections.
func (l *HTTPListener) unregister(hc *h1conn) {
	l.fastMu.Lock()
	delete(l.fast, hc)
	l.fastMu.Unlock()
}

// drainFast makes idle fast connections close now; busy ones close after
// their current response (the loop checks l.draining).
func (l *HTTPListener) drainFast() {
	l.fastMu.Lock()
	l.draining.Store(true)
	for hc := range l.fast {
		if hc.state.CompareAndSwap(fcIdle, fcClosing) {
			hc.c.SetReadDeadline(aLongTimeAgo)
		}
	}
	l.fastMu.Unlock()
}

// closeFast closes every fast connection and its upstream connection in
// use (the drain deadline passed).
func (l *HTTPListener) closeFast() {
	l.fastMu.Lock()
	l.draining.Store(true)
	for hc := range l.fast {
		hc.state.Store(fcClosing)
		hc.c.Close()
		if uc := hc.cur.Load(); uc != nil {
			uc.nc.Close()
		}
	}
	l.fastMu.Unlock()
}

// loop serves requests until the connection must close (false) or be
// handed to net/http (true).
func (hc *h1conn) loop() (handoff bool) {
	l := hc.l
	maxHead := l.cfg.MaxHeaderBytes + 4096 // net/http's slack
	for {
		hc.head = false // for refusals of the next head
		hc.why.on = false
		n, err := hc.readHead(maxHead)
		switch {
		case err == nil:
		case err == h1.ErrUnsupported:
			return true
		case errors.Is(err, errConnDone):
			return false
		default:
			var pe *h1.Error
			if errors.As(err, &pe) {
				hc.refuse(pe)
			}
			return false
		}
		if hc.needsNetHTTP() {
			return true
		}
		hc.served = true
		hc.head = string(hc.req.Method) == "HEAD"
		hc.whyBegin()
		if l.obs != nil || l.tr != nil {
			hc.beginRecord()
		}
		if l.tr != nil {
			hc.startServerSpan()
		}
		ok := hc.serveRequest(n)
		if l.tr != nil {
			hc.endServerSpan()
		}
		if l.obs != nil {
			hc.rec.Duration = time.Since(hc.rec.Start)
			l.obs.ObserveRequest(&hc.rec)
		}
		if !ok {
			return false
		}
	}
}

// beginRecord starts hc.rec for the request just parsed.
func (hc *h1conn) beginRecord() {
	l, req := hc.l, &hc.req
	hc.rec = RequestRecord{
		Listener: l.cfg.Name,
		Method:   methodName(req.Method, l.obsDetail),
		Proto:    "HTTP/1.1", // HTTP/1.0 goes to net/http
		Start:    time.Now(),
	}
	if l.obsDetail {
		hc.rec.Authority = string(req.Host)
		hc.rec.Path = string(req.Target)
		hc.rec.Client = hc.c.RemoteAddr().String()
	}
}

// errConnDone ends the loop without an answer: EOF, timeout, drain.
var errConnDone = errors.New("connection done")

// readHead reads until buf[r:] starts with a complete request head, parses
// it into hc.req and returns its length.
func (hc *h1conn) readHead(maxHead int) (int, error) {
	l := hc.l
	headerDeadline := false
	var idleDeadline time.Time // set while parking is possible
	for {
		if hc.r == hc.w {
			hc.r, hc.w = 0, 0
		} else {
			n, err := h1.ParseRequest(hc.buf[hc.r:hc.w], maxHead, hc.fields[:], &hc.req)
			if err != h1.ErrNeedMore {
				return n, err
			}
		}
		idle := hc.r == hc.w
		if idle {
			if l.draining.Load() {
				return 0, errConnDone
			}
			hc.state.Store(fcIdle)
			// Like net/http, the first request's head must come within
			// HeaderTimeout of the accept; later ones within
			// IdleTimeout of the previous response.
			wait := l.cfg.IdleTimeout
			if !hc.served {
				wait = l.cfg.HeaderTimeout
			}
			now := time.Now()
			if hc.parkable(wait) {
				// First wait holding the buffers; see park.
				idleDeadline = now.Add(wait)
				hc.c.SetReadDeadline(now.Add(l.parkAfter))
			} else {
				idleDeadline = time.Time{}
				hc.c.SetReadDeadline(now.Add(wait))
			}
			// Checked after the deadline is set: a drain that came
			// between would have its past deadline overwritten.
			if l.draining.Load() {
				hc.state.Store(fcClosing)
				return 0, errConnDone
			}
		} else if !headerDeadline {
			hc.c.SetReadDeadline(time.Now().Add(l.cfg.HeaderTimeout))
			headerDeadline = true
		}
		if hc.w == len(hc.buf) {
			if hc.r > 0 {
				hc.w = copy(hc.buf, hc.buf[hc.r:hc.w])
				hc.r = 0
			} else {
				// ParseRequest refuses heads over maxHead, so this
				// grows at most to maxHead+1 plus one read.
				nb := make([]byte, max(2*len(hc.buf), maxHead+1))
				copy(nb, hc.buf[:hc.w])
				if len(hc.buf) == upBufSize {
					upBufs.Put((*[upBufSize]byte)(hc.buf))
				}
				hc.buf = nb
			}
		}
		n, err := hc.c.Read(hc.buf[hc.w:])
		if idle && n == 0 && !idleDeadline.IsZero() && deadlinePassed(err) && hc.state.Load() == fcIdle {
			n, err = hc.park(idleDeadline)
		}
		if idle && !hc.state.CompareAndSwap(fcIdle, fcBusy) {
			return 0, errConnDone // the drain closed it
		}
		hc.w += n
		if n > 0 && idle {
			// The header timeout counts from the first byte.
			hc.c.SetReadDeadline(time.Now().Add(l.cfg.HeaderTimeout))
			headerDeadline = true
		}
		if err != nil {
			if n > 0 {
				if _, perr := h1.ParseRequest(hc.buf[hc.r:hc.w], maxHead, hc.fields[:], &hc.req); perr == nil {
					// A complete request then EOF: forward it. As
					// net/http (whose background read cancels the
					// request at the EOF), a half-closed client
					// counts as gone: it is answered only if the
					// endpoint does before the client check
					// (timeout_client.go) looks, after a second.
					continue
				}
			}
			return 0, errConnDone
		}
	}
}

// needsNetHTTP reports whether the parsed request is one the fast path
// hands to net/http: an upgrade (WebSocket, h2c), CONNECT, an Expect other
// than 100-continue (net/http answers 417), or a target that is not in
// origin form (absolute URI, "OPTIONS *").
//
// "Expect: 100-continue" stays: it is forwarded, the endpoint's 100
// Continue is relayed like any interim response, and the body pump sends
// the body when the client does (RFC 9110 §10.1.1).
func (hc *h1conn) needsNetHTTP() bool {
	r := &hc.req
	return (r.Upgrade && r.ConnUpgrade) || (r.Expect && !hc.expect100()) ||
		string(r.Method) == "CONNECT" || r.Target[0] != '/'
}

// expect100 reports whether every Expect field is "100-continue".
func (hc *h1conn) expect100() bool {
	for _, f := range hc.req.Fields {
		if h1.EqualFold(f.Name, "expect") && !h1.EqualFold(f.Value, "100-continue") {
			return false
		}
	}
	return true
}

// refuse answers a request the parser refused and the connection closes.
func (hc *h1conn) refuse(pe *h1.Error) {
	cause := causeBadRequest
	switch pe.Status {
	case http.StatusRequestHeaderFieldsTooLarge:
		cause = causeHeadersTooLarge
	case http.StatusNotImplemented:
		cause = causeBadRequest
	}
	l := hc.l
	if l.obs == nil {
		hc.writeError(pe.Status, cause, pe.Reason, true)
		return
	}
	// A head refused before it was parsed is still a request to count
	// and log (smuggling attempts among them), with what is known of it.
	hc.rec = RequestRecord{Listener: l.cfg.Name, Method: "OTHER", Proto: "HTTP/1.1", Start: time.Now()}
	if l.obsDetail {
		hc.rec.Client = hc.c.RemoteAddr().String()
	}
	hc.writeError(pe.Status, cause, pe.Reason, true)
	hc.rec.Duration = time.Since(hc.rec.Start)
	l.obs.ObserveRequest(&hc.rec)
}

// ustr views b as a string without copying; the string must not outlive
// the request (b's buffer is reused).
func ustr(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// serveRequest answers the request whose head is buf[r:r+n]; false means
// the connection must close.
func (hc *h1conn) serveRequest(n int) bool {
	l := hc.l
	req := &hc.req
	if max := l.cfg.MaxBodyBytes; max > 0 && req.ContentLength > max {
		hc.writeTooLarge()
		return false
	}
	target := ustr(req.Target)
	path, query := target, ""
	for i := 0; i < len(target); i++ {
		if target[i] == '?' {
			path, query = target[:i], target[i:]
			break
		}
	}
	var u *url.URL // the parsed target when path is not simple
	if !simplePath(path) {
		var err error
		if u, err = parseRequestPath(target); err != nil {
			hc.writeError(http.StatusBadRequest, causeBadRequest, "invalid request target", true)
			return false
		}
		path = u.Path
	}
	host := ustr(req.Host)
	rawQuery := query
	if rawQuery != "" {
		rawQuery = rawQuery[1:]
	}
	rs := l.routing.Load()
	var rt *route.Route
	if rs.routes != nil {
		var hdr http.Header
		if rs.routes.MatchesHeaders() {
			hdr = hc.header()
		}
		rt = rs.routes.Match(host, path, ustr(req.Method), hdr, rawQuery)
	}
	if rt != nil {
		hc.rec.Route = rt.Name
	}
	switch {
	case rt == nil:
		return hc.answerAndSkipBody(n, func() bool {
			return hc.writeError(http.StatusNotFound, causeNoRoute, "no route", false)
		})
	case rt.Config.Redirect != nil:
		return hc.answerAndSkipBody(n, func() bool {
			ep := path
			if u != nil {
				ep = u.EscapedPath()
			}
			code, loc := redirectLocation(host, ep, rawQuery, rt.Config.Redirect)
			return hc.writeGenerated(code, &rt.Config, "Location", loc, "")
		})
	case rt.Config.Fixed != nil:
		return hc.answerAndSkipBody(n, func() bool {
			fx := rt.Config.Fixed
			ct := ""
			if fx.Body != "" {
				ct = fx.ContentType
				if ct == "" {
					ct = "text/plain; charset=utf-8"
				}
			}
			return hc.writeGenerated(fx.Status, &rt.Config, "Content-Type", ct, fx.Body)
		})
	}
	svc := rt.PickBackend()
	hc.rec.Service = svc
	up := rs.ups[svc]
	if up == nil {
		if ok, k := l.noEndpointsLog.allow(); ok {
			l.log.Warn("route names a service with no upstream", "route", rt.Name, "service", svc, "suppressed", k)
		}
		return hc.answerAndSkipBody(n, func() bool {
			return hc.writeError(http.StatusServiceUnavailable, causeNoEndpoints, "no endpoints", false)
		})
	}
	if rs.adm != nil {
		return hc.admitForward(rs.adm, n, rt, svc, up, path, u, query)
	}
	return hc.forward(n, rt, svc, up, path, u, query)
}

// answerAndSkipBody answers a request without forwarding it: the request
// body is skipped when it is all in the buffer, else the connection closes
// after the answer.
func (hc *h1conn) answerAndSkipBody(n int, answer func() bool) bool {
	req := &hc.req
	end, complete := hc.r+n, true
	switch {
	case req.Chunked:
		hc.chunks = h1.ChunkedScanner{}
		k, done, err := hc.chunks.Scan(hc.buf[end:hc.w])
		end += k
		complete = done && err == nil
	case req.ContentLength > 0:
		if int64(hc.w-end) >= req.ContentLength {
			end += int(req.ContentLength)
		} else {
			complete = false
		}
	}
	closeAfter := !complete || req.Close || hc.l.draining.Load()
	hc.closeNext = closeAfter
	hc.linger = !complete
	ok := answer()
	hc.closeNext = false
	hc.r = end
	return ok && !closeAfter
}

// isHead reports whether the request method is HEAD. It is cached at the
// start of the request: once a body pump runs, it overwrites the buffer
// that hc.req's slices point into, and only hc.req's non-slice fields may
// be read.
func (hc *h1conn) isHead() bool { return hc.head }

// header builds an http.Header of the request's fields, for tables with
// header conditions.
func (hc *h1conn) header() http.Header {
	h := make(http.Header, len(hc.req.Fields))
	for _, f := range hc.req.Fields {
		k := http.CanonicalHeaderKey(string(f.Name))
		h[k] = append(h[k], string(f.Value))
	}
	return h
}

// toNetHTTP gives c, prefix first, to net/http (see serveConn); the
// connection is counted already.
func (l *HTTPListener) toNetHTTP(c net.Conn, prefix []byte) {
	var hc net.Conn
	if tc, ok := c.(*tls.Conn); ok {
		if len(prefix) == 0 && tc.ConnectionState().NegotiatedProtocol == "h2" {
			// HTTP/2 needs the *tls.Conn itself (net/http's TLSNextProto)
			// and has no HTTP/1 framing to guard.
			hc = tc
		} else {
			// HTTP/1 over TLS is guarded like cleartext; net/http takes the
			// TLS state from ConnectionState.
			hc = &tlsPrefixConn{guardConn: newGuardConn(tc, prefix), tc: tc}
		}
	} else {
		hc = newGuardConn(c, prefix)
	}
	if !l.handoff.push(hc) {
		c.Close()
		l.conns.Add(-1)
		l.active.done()
	}
	// From here net/http owns the connection; connState uncounts it.
}
