package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"syscall"
	"time"

	"github.com/outrigger-mesh/outrigger/balancer"
	"github.com/outrigger-mesh/outrigger/proxy/internal/h1"
	"github.com/outrigger-mesh/outrigger/proxy/route"
	"github.com/outrigger-mesh/outrigger/resilience"
)

// Forwarding one request on the fast path: build the upstream head, pick,
// take a pooled connection (or dial), write head and body, read the
// response head, rewrite it and relay the body.

// errBodyTooLarge is a request body over MaxBodyBytes.
var errBodyTooLarge = errors.New("request body too large")

// clientBodyError is a failure reading the client's request body: its
// connection broke, or its chunked framing.
type clientBodyError struct{ err error }

func (e *clientBodyError) Error() string { return "client body: " + e.err.Error() }
func (e *clientBodyError) Unwrap() error { return e.err }

// staleError is an exchange that failed on a reused connection before any
// response byte: the endpoint may have closed it while it was idle.
type staleError struct{ err error }

func (e *staleError) Error() string { return e.err.Error() }
func (e *staleError) Unwrap() error { return e.err }

// forward sends the request whose head is buf[r:r+n] to an endpoint of up
// and relays the response. u is the parsed target when the path is not
// simple (else nil). It returns false when the connection must close.
func (hc *h1conn) forward(n int, rt *route.Route, svc string, up Upstream, path string, u *url.URL, query string) bool {
	l := hc.l
	req := &hc.req

	// The request body in hand.
	bodyStart := hc.r + n
	var body []byte
	complete := true
	var remain int64 // Content-Length bytes not yet in the buffer
	switch {
	case req.Chunked:
		hc.chunks = h1.ChunkedScanner{}
		k, done, err := hc.chunks.Scan(hc.buf[bodyStart:hc.w])
		if err != nil {
			hc.writeError(400, causeBadRequest, "malformed request body", true)
			return false
		}
		if max := l.cfg.MaxBodyBytes; max > 0 && hc.chunks.Data > max {
			hc.writeTooLarge()
			return false
		}
		body, complete = hc.buf[bodyStart:bodyStart+k], done
	case req.ContentLength > 0:
		k := min(req.ContentLength, int64(hc.w-bodyStart))
		body = hc.buf[bodyStart : bodyStart+int(k)]
		remain = req.ContentLength - k
		complete = remain == 0
	}
	hc.r = bodyStart + len(body)

	out := hc.appendRequestHead(hc.out[:0], rt, path, u, query)
	inHand := body // the body bytes in the buffer, for a resend
	if len(out)+len(body) <= maxCoalesce {
		out = append(out, body...)
		body = nil
	}
	hc.out = out

	var deadline time.Time // the route's timeout (timeout.go); zero: none
	if rt.Config.Timeout > 0 {
		deadline = requestDeadline(rt, time.Now())
	}
	up, pol, budget := retryOf(up, rt)
	if pol == nil {
		if hc.why.on {
			hc.why.bound(deadline)
		}
		return hc.attempts(nil, up, svc, rt, path, u, query, inHand, body, complete, remain, deadline)
	}
	var rs retryState
	rs.begin(pol, budget, methodName(req.Method, false), hc.hasIdempotencyKey(), rt.Config.Idempotent)
	rs.bound(deadline)
	if hc.why.on {
		hc.why.bound(rs.deadline)
	}
	// The body can be sent again when it is all in hand and within the
	// policy's replay cap.
	rs.replayable = complete && (len(inHand) == 0 || pol.KeepBody(int64(len(inHand))))
	ok := hc.attempts(&rs, up, svc, rt, path, u, query, inHand, body, complete, remain, rs.deadline)
	rs.end()
	return ok
}

// attempts picks endpoints and forwards the request in hc.out (then body,
// then a pumped rest) until one answers or no further attempt is allowed:
// a failed dial is retried on another endpoint up to ConnectAttempts
// picks; beyond that, and for every other failure or a retriable
// response, rs (nil: no retries) decides. Done is called exactly once for
// every successful pick. deadline (zero: none) bounds every attempt's wait
// for its response head, and no attempt starts after it (timeout.go).
func (hc *h1conn) attempts(rs *retryState, up Upstream, svc string, rt *route.Route, path string, u *url.URL, query string,
	inHand, body []byte, complete bool, remain int64, deadline time.Time) bool {
	l := hc.l
	// PickInfo lives in hc: passed to an interface method it would
	// escape, one allocation per request.
	info := &hc.info
	*info = balancer.PickInfo{}
	var lastErr error            // the previous attempt's error, when it failed
	dials := 0                   // failed dials
	var next balancer.PickResult // picked while a retried response was held (Endpoint nil: none)
	for {
		res, err := next, error(nil)
		next = balancer.PickResult{}
		if res.Endpoint == nil {
			res, err = pickEndpoint(up, info)
		}
		if err != nil {
			if lastErr != nil {
				return hc.upstreamFailed(lastErr, complete)
			}
			if errors.Is(err, balancer.ErrNoEndpoints) {
				if ok, k := l.noEndpointsLog.allow(); ok {
					l.log.Warn("requests failing: no endpoints", "service", svc, "err", err, "suppressed", k)
				}
				hc.closeNext = !complete
				ok := hc.writeError(503, causeNoEndpoints, "no endpoints", false)
				hc.closeNext = false
				return ok && complete
			}
			return hc.upstreamFailed(err, complete)
		}
		addr := res.Endpoint.Addr
		hc.rec.Attempts++
		hc.rec.Endpoint = addr
		timeout := l.cfg.ResponseTimeout
		if rs != nil {
			timeout = rs.attemptTimeout(timeout) // rs.deadline includes deadline
		} else if !deadline.IsZero() {
			timeout = untilDeadline(timeout, deadline)
		}
		done := res.Done
		if l.tr != nil && hc.trace.recording {
			hc.startAttempt(res.Endpoint, svc)
			done = hc.tracedDone(done)
		}
		start := time.Now()
		uc, pump, err := hc.exchange(addr, body, complete, remain, rt, timeout, deadline)
		if hc.why.on {
			hc.why.attempt(addr, hc.resp.Status, err, timeout, rs)
		}
		if err != nil {
			doneErr := err
			if isClientBodyErr(err) || err == errClientGone {
				// The client's body broke (or was too big), or the
				// client left: that says nothing about the endpoint,
				// so the outcome is neutral, not a failure or a
				// timeout of it.
				doneErr = context.Canceled
			}
			res.Done(balancer.DoneInfo{Err: doneErr, Duration: time.Since(start)})
			if l.tr != nil {
				hc.endAttempt(0, doneErr)
			}
			if err == errClientGone {
				// Nobody to answer: the connection ends, and the
				// record keeps status 0 (timeout_client.go).
				return false
			}
			if isClientBodyErr(err) {
				return hc.upstreamFailed(err, complete)
			}
			if pastDeadline(deadline) {
				// Out of time, whatever this attempt's failure was.
				return hc.upstreamFailed(errRequestTimeout, complete)
			}
			info.AddTried(addr)
			lastErr = err
			var de *DialError
			dialed := !errors.As(err, &de)
			if !dialed {
				if dials++; dials < l.cfg.ConnectAttempts {
					// Nothing was sent: another endpoint, at once and
					// outside the retry policy.
					l.log.Debug("connect failed", "endpoint", res.Endpoint.ID, "attempt", dials, "err", err)
					continue
				}
			}
			if hc.retry(rs, errOutcome(err), dialed, res.Endpoint.ID, err) {
				hc.resend(rt, path, u, query, inHand, body)
				continue
			}
			return hc.upstreamFailed(err, complete)
		}
		if rs != nil && pump == nil {
			status := hc.resp.Status
			if d, ok := rs.decide(resilience.Response(status), true, rs.replayable); ok {
				// The attempt's outcome goes to its endpoint before the
				// next Pick, as for any finished attempt: the picker
				// must see it (an ejection or a tripped breaker it
				// causes, a least-request count), or the retry could go
				// to the very endpoint this response just ejected, past
				// its breaker. The response itself is held until the
				// next endpoint is picked, after the backoff: when none
				// is (that Done ejected the last one, the picker
				// emptied, the listener is shutting down), it is the
				// client's answer after all (doc.go).
				done(balancer.DoneInfo{Err: statusDoneErr(status), Duration: time.Since(start)})
				info.AddTried(addr)
				var perr error
				if perr = errListenerClosed; rs.wait(l.baseCtx) {
					next, perr = pickEndpoint(up, info)
				}
				if perr != nil {
					rs.cancelRetry()
					l.log.Debug("not retrying: no endpoint to retry on", "endpoint", res.Endpoint.ID, "status", status, "err", perr)
					return hc.relay(uc, pump, rt, doneReported, start)
				}
				// The response is thrown away: none of it reaches the
				// client, and its connection is kept if it can be.
				keep := hc.discard(uc)
				hc.finishUpstream(uc, nil, keep)
				lastErr = nil
				l.log.Debug("retrying", "endpoint", res.Endpoint.ID, "status", status, "reason", string(d.Reason), "attempt", rs.n)
				hc.rec.Retries++
				hc.resend(rt, path, u, query, inHand, body)
				continue
			}
		}
		return hc.relay(uc, pump, rt, done, start)
	}
}

// retry asks rs (nil: no retries) whether a failed attempt is retried and
// waits its backoff; true means pick again. sent says the attempt got as
// far as a connection: a failed dial sent nothing, so even a partly read
// body is still the client's to send.
func (hc *h1conn) retry(rs *retryState, o resilience.Outcome, sent bool, endpoint string, err error) bool {
	if rs == nil {
		return false
	}
	d, ok := rs.decide(o, sent, !sent || rs.replayable)
	if !ok {
		return false
	}
	hc.l.log.Debug("retrying", "endpoint", endpoint, "outcome", o.Kind.String(), "reason", string(d.Reason), "attempt", rs.n, "err", err)
	if !rs.wait(hc.l.baseCtx) {
		return false
	}
	hc.rec.Retries++
	return true
}

// resend rebuilds hc.out for another attempt: an interim response relayed
// to the client reused it. The request's fields are intact: an attempt is
// only repeated when no body pump ran, or when its dial failed.
func (hc *h1conn) resend(rt *route.Route, path string, u *url.URL, query string, inHand, body []byte) {
	out := hc.appendRequestHead(hc.out[:0], rt, path, u, query)
	if body == nil {
		out = append(out, inHand...)
	}
	hc.out = out
}

// hasIdempotencyKey reports whether the request carries an
// Idempotency-Key (or X-Idempotency-Key) field.
func (hc *h1conn) hasIdempotencyKey() bool {
	for _, f := range hc.req.Fields {
		if h1.EqualFold(f.Name, "idempotency-key") || h1.EqualFold(f.Name, "x-idempotency-key") {
			return true
		}
	}
	return false
}

// discard reads and drops the body of the response in hc.resp, for a
// retry: nothing of it reaches the client. It reports whether uc can
// carry another request: the body was read whole within discardMax (the
// response deadline of roundTrip still bounds the reads) and the framing
// allows reuse.
func (hc *h1conn) discard(uc *upConn) bool {
	resp := &hc.resp
	if resp.Close || resp.FaultyFraming || (resp.Minor != 1 && !resp.KeepAlive) {
		return false
	}
	switch {
	case hc.isHead() || !bodyAllowed(resp.Status):
	case resp.Chunked:
		hc.rchunks = h1.ChunkedScanner{}
		read := 0
		for {
			k, done, err := hc.rchunks.Scan(uc.buf[uc.r:uc.w])
			if err != nil {
				return false
			}
			uc.r += k
			if done {
				break
			}
			uc.r, uc.w = 0, 0
			n, err := uc.nc.Read(uc.buf)
			uc.w = n
			if read += n; read > discardMax || (err != nil && n == 0) {
				return false
			}
		}
	case resp.ContentLength >= 0:
		if resp.ContentLength > discardMax {
			return false
		}
		left := resp.ContentLength
		for {
			k := min(int64(uc.w-uc.r), left)
			uc.r += int(k)
			if left -= k; left == 0 {
				break
			}
			uc.r, uc.w = 0, 0
			n, err := uc.nc.Read(uc.buf)
			uc.w = n
			if err != nil && n == 0 {
				return false
			}
		}
	default:
		return false // delimited by the close
	}
	return uc.r == uc.w
}

// writeTooLarge answers 413 and the connection closes.
func (hc *h1conn) writeTooLarge() {
	hc.writeError(413, causeBodyTooLarge,
		"request body larger than "+strconv.FormatInt(hc.l.cfg.MaxBodyBytes, 10)+" bytes", true)
}

// upstreamFailed answers a request whose forwarding failed before the
// response started, as proxyError does.
func (hc *h1conn) upstreamFailed(err error, complete bool) bool {
	l := hc.l
	var (
		dialErr *DialError
		cbe     *clientBodyError
		netErr  net.Error
	)
	switch {
	case errors.Is(err, errBodyTooLarge):
		hc.writeTooLarge()
		return false
	case errors.As(err, &cbe):
		hc.writeError(400, causeBadRequest, "malformed request body", true)
		return false
	case errors.As(err, &dialErr):
		if ok, n := l.connectLog.allow(); ok {
			l.log.Warn("requests failing: cannot connect to endpoints", "err", err, "suppressed", n)
		}
		return hc.writeError(502, causeConnectFailure, "upstream connect failure", !complete) && complete
	case errors.As(err, &netErr) && netErr.Timeout() && l.baseCtx.Err() == nil:
		return hc.writeError(504, causeUpstreamTimeout, "upstream timeout", !complete) && complete
	default:
		l.log.Debug("upstream exchange failed", "err", err)
		return hc.writeError(502, causeUpstreamReset, "upstream connection reset", !complete) && complete
	}
}

// appendRequestHead appends the upstream request head: request line, Host,
// the client's end-to-end fields, X-Forwarded-*, Via, framing, then the
// route's header operations (as rewrite does).
func (hc *h1conn) appendRequestHead(b []byte, rt *route.Route, path string, u *url.URL, query string) []byte {
	req := &hc.req
	rc := &rt.Config
	ops := &rc.RequestHeaders
	b = append(b, req.Method...)
	b = append(b, ' ')
	if u == nil {
		p := rt.RewritePath(path)
		if simplePath(p) {
			b = append(b, p...)
		} else {
			b = append(b, (&url.URL{Path: p}).EscapedPath()...)
		}
	} else {
		out := url.URL{Path: rt.RewritePath(u.Path)}
		if u.RawPath != "" {
			out.RawPath = rt.RewritePath(u.RawPath)
		}
		b = append(b, out.EscapedPath()...)
	}
	b = append(b, query...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	if rc.RewriteHost != "" {
		b = append(b, rc.RewriteHost...)
	} else {
		b = append(b, req.Host...)
	}
	b = append(b, "\r\n"...)

	hasOps := len(ops.Remove)+len(ops.Set) > 0
	var xff, xfp, xfh int // how many of each the client sent
	for _, f := range req.Fields {
		switch classify(f.Name) {
		case fieldKeep, fieldWhy:
		case fieldTrailer:
			if !req.Chunked {
				continue
			}
		case fieldXFF:
			xff++
			continue
		case fieldXFP:
			xfp++
			continue
		case fieldXFH:
			xfh++
			continue
		default:
			continue
		}
		if req.ConnOther && connNamed(req.Fields, f.Name) {
			continue
		}
		if hc.l.tr != nil && isTraceField(f.Name) {
			continue // replaced by ours (appendTraceFields)
		}
		if hasOps && opsDrop(f.Name, ops) {
			continue
		}
		b = appendFieldBytes(b, f.Name, f.Value)
	}

	// X-Forwarded-*: kept and extended from a trusted peer, else replaced.
	if !hasOps || !opsDrop([]byte("X-Forwarded-For"), ops) {
		b = append(b, "X-Forwarded-For: "...)
		if hc.trusted && xff > 0 {
			for _, f := range req.Fields {
				if classify(f.Name) == fieldXFF {
					b = append(b, f.Value...)
					b = append(b, ", "...)
				}
			}
		}
		b = append(b, hc.client...)
		b = append(b, "\r\n"...)
	}
	if !hasOps || !opsDrop([]byte("X-Forwarded-Proto"), ops) {
		if hc.trusted && xfp > 0 {
			for _, f := range req.Fields {
				if classify(f.Name) == fieldXFP {
					b = appendFieldBytes(b, []byte("X-Forwarded-Proto"), f.Value)
				}
			}
		} else {
			b = append(b, "X-Forwarded-Proto: http\r\n"...)
		}
	}
	if !hasOps || !opsDrop([]byte("X-Forwarded-Host"), ops) {
		if hc.trusted && xfh > 0 {
			for _, f := range req.Fields {
				if classify(f.Name) == fieldXFH {
					b = appendFieldBytes(b, []byte("X-Forwarded-Host"), f.Value)
				}
			}
		} else {
			b = appendFieldBytes(b, []byte("X-Forwarded-Host"), req.Host)
		}
	}
	if !hasOps || !opsDrop([]byte("Via"), ops) {
		b = append(b, "Via: 1.1 outrigger\r\n"...)
	}
	if req.TETrailers && (!hasOps || !opsDrop([]byte("Te"), ops)) {
		b = append(b, "Te: trailers\r\n"...)
	}
	switch {
	case req.Chunked:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	case req.ContentLength >= 0:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, req.ContentLength, 10)
		b = append(b, "\r\n"...)
	}
	b = appendOpsKeepFraming(b, ops)
	if hc.l.tr != nil {
		b = hc.appendTraceFields(b)
	}
	return append(b, "\r\n"...)
}

// idempotent reports whether the request may be sent again after a
// reused connection failed before any response byte, as net/http's
// Transport decides (RFC 9110 §9.2.2), or the route says so.
func (hc *h1conn) idempotent(rt *route.Route) bool {
	if rt.Config.Idempotent {
		return true
	}
	switch string(hc.req.Method) {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return hc.hasIdempotencyKey()
}

// exchange sends the request in hc.out (then body, then with a pump the
// rest of the body) to addr over a pooled or new connection and reads the
// response head into hc.resp. A reused connection that fails before any
// response byte is replaced by a new one and the request sent again, once,
// when the body is complete in hand and the request idempotent.
//
// timeout bounds the wait for the response head from when the request is
// all sent; deadline (zero: none) bounds it and a dial absolutely.
func (hc *h1conn) exchange(addr netip.AddrPort, body []byte, complete bool, remain int64, rt *route.Route, timeout time.Duration, deadline time.Time) (*upConn, *bodyPump, error) {
	l := hc.l
	ep := l.pools.endpoint(addr)
	// Every reused connection is checked first (one non-blocking peek):
	// one the endpoint closed while idle would fail a request that cannot
	// be sent again, and bytes it sent while idle (a late or unsolicited
	// response) would be read as this request's response, possibly
	// another client's.
	uc := ep.get(monotime(), true)
	retried := false
	for {
		if uc == nil {
			var err error
			if uc, err = hc.dial(ep, addr, deadline); err != nil {
				return nil, nil, err
			}
		}
		hc.cur.Store(uc)
		pump, err := hc.roundTrip(uc, body, complete, remain, timeout, deadline)
		if err == nil {
			return uc, pump, nil
		}
		uc.close()
		hc.cur.Store(nil)
		var se *staleError
		if errors.As(err, &se) && !retried && complete && hc.idempotent(rt) && !pastDeadline(deadline) {
			l.log.Debug("reused upstream connection closed; sending again", "endpoint", addr.String(), "err", err)
			retried = true
			uc = nil
			continue
		}
		if se != nil {
			err = se.err
		}
		return nil, nil, err
	}
}

// roundTrip writes the request on uc and reads the response head. Errors
// before any response byte on a reused connection are *staleError; a
// client that left while the head was awaited is errClientGone
// (timeout_client.go).
func (hc *h1conn) roundTrip(uc *upConn, body []byte, complete bool, remain int64, timeout time.Duration, deadline time.Time) (*bodyPump, error) {
	l := hc.l
	stale := func(err error) error {
		if uc.reused && isConnGone(err) {
			return &staleError{err}
		}
		return err
	}
	if _, err := uc.nc.Write(hc.out); err != nil {
		return nil, stale(err)
	}
	if len(body) > 0 {
		if _, err := uc.nc.Write(body); err != nil {
			return nil, stale(err)
		}
	}
	var pump *bodyPump
	var final time.Time // the response deadline; zero while a pump runs
	if !complete {
		// A reused connection keeps its last response deadline; the
		// response deadline starts when the pump has sent the body,
		// and only the request's deadline bounds the wait till then.
		uc.nc.SetReadDeadline(deadline)
		pump = hc.startPump(uc, remain, timeout, deadline)
	} else {
		// Requests still waiting after clientCheckAfter look at the
		// client from then on (see watchClient); the others cost
		// nothing more than this deadline.
		now := time.Now()
		final = now.Add(timeout)
		uc.nc.SetReadDeadline(earlier(final, now.Add(clientCheckAfter)))
	}
	uc.r, uc.w = 0, 0
	got := false // a response byte came
	eof := false // the endpoint closed: no more bytes will come
	interim := 0 // 1xx responses relayed
	for {
		if uc.r == uc.w {
			// All parsed (an interim response may have ended at the
			// buffer's end): read from the start, never into an
			// empty slice.
			uc.r, uc.w = 0, 0
		}
		if uc.w > uc.r {
			n, err := h1.ParseResponse(uc.buf[uc.r:uc.w], l.cfg.MaxHeaderBytes, hc.rfields[:], &hc.resp)
			if err == nil {
				if s := hc.resp.Status; s >= 100 && s < 200 {
					if s == 101 {
						return pump, hc.pumpFail(pump, errors.New("101 Switching Protocols to a request without Upgrade"))
					}
					if interim++; interim > maxInterim {
						return pump, hc.pumpFail(pump, errTooManyInterim)
					}
					// An interim response (100 Continue, 103 Early
					// Hints): relay it, without its hop-by-hop fields,
					// and read on.
					hc.out = hc.appendInterimHead(hc.out[:0])
					if _, err := hc.c.Write(hc.out); err != nil {
						return pump, hc.pumpFail(pump, err)
					}
					uc.r += n
					continue
				}
				uc.r += n
				if pump != nil {
					pump.gotHead()
				}
				return pump, nil
			}
			if err != h1.ErrNeedMore {
				return pump, hc.pumpFail(pump, err)
			}
			if eof {
				// The endpoint closed in the middle of a head.
				return pump, hc.pumpFail(pump, io.ErrUnexpectedEOF)
			}
			if uc.w == len(uc.buf) {
				if uc.r > 0 {
					uc.w = copy(uc.buf, uc.buf[uc.r:uc.w])
					uc.r = 0
				} else {
					nb := make([]byte, 2*len(uc.buf))
					copy(nb, uc.buf[:uc.w])
					if len(uc.buf) == upBufSize {
						upBufs.Put((*[upBufSize]byte)(uc.buf))
					}
					uc.buf = nb
				}
			}
		}
		n, err := uc.nc.Read(uc.buf[uc.w:])
		uc.w += n
		if n > 0 {
			got = true
		}
		if err != nil {
			if n == 0 && deadlinePassed(err) {
				f := final
				if pump != nil {
					// Once the pump sent the whole body it no longer
					// reads the client; it set the response deadline.
					if pf, ok := pump.sentAll(); ok {
						f = pf
					}
				}
				if time.Now().Before(f) {
					// A check step, not the response deadline.
					if hc.clientGone() {
						return pump, hc.pumpFail(pump, errClientGone)
					}
					uc.nc.SetReadDeadline(earlier(f, time.Now().Add(clientCheckEvery)))
					continue
				}
			}
			if uc.w > uc.r && err == io.EOF {
				eof = true
				continue // parse what came before EOF, once
			}
			if !got && pump == nil {
				err = stale(err)
			}
			return pump, hc.pumpFail(pump, err)
		}
	}
}

// appendInterimHead appends the client's copy of the interim response in
// hc.resp: its status line, its end-to-end fields (hop-by-hop ones and the
// fields its Connection names removed, as for a final response) and Via,
// except on a 100 Continue, which is relayed bare as servers send it.
func (hc *h1conn) appendInterimHead(b []byte) []byte {
	resp := &hc.resp
	b = appendStatusLine(b, resp.Status, resp.Reason)
	for _, f := range resp.Fields {
		switch classify(f.Name) {
		case fieldHop, fieldLength, fieldTrailer, fieldWhy:
			continue
		}
		if resp.ConnOther && connNamed(resp.Fields, f.Name) {
			continue
		}
		b = appendFieldBytes(b, f.Name, f.Value)
	}
	if resp.Status != 100 {
		b = append(b, "Via: 1.1 outrigger\r\n"...)
	}
	return append(b, "\r\n"...)
}

// maxInterim is how many interim (1xx) responses the fast path relays
// before one request's final response, as net/http's Transport allows; more
// is answered 502.
const maxInterim = 5

// errTooManyInterim is an endpoint sending more than maxInterim interim
// responses.
var errTooManyInterim = errors.New("too many 1xx informational responses")

// pumpFail stops pump, if any, and returns the error to report: the
// client's body error when there is one.
func (hc *h1conn) pumpFail(pump *bodyPump, err error) error {
	if pump == nil {
		return err
	}
	if perr := pump.abort(); perr != nil && !pump.induced(perr) {
		var cbe *clientBodyError
		if errors.As(perr, &cbe) || errors.Is(perr, errBodyTooLarge) {
			return perr
		}
	}
	return err
}

// isConnGone reports whether err says the peer closed the connection.
func isConnGone(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
