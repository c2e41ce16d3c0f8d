package proxy

import (
	"context"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/outrigger-mesh/outrigger/balancer"
	"github.com/outrigger-mesh/outrigger/proxy/internal/h1"
	"github.com/outrigger-mesh/outrigger/proxy/route"
)

// Relaying the endpoint's response to the client, on the fast path.

// relay writes the response whose head is in hc.resp to the client and
// copies its body, then calls done and returns uc to its pool when it can
// carry another request. It returns false when the client connection must
// close.
func (hc *h1conn) relay(uc *upConn, pump *bodyPump, rt *route.Route, done func(balancer.DoneInfo), start time.Time) bool {
	l := hc.l
	req, resp := &hc.req, &hc.resp
	noBody := hc.isHead() || !bodyAllowed(resp.Status)
	closeDelim := !noBody && !resp.Chunked && resp.ContentLength < 0
	clientClose := req.Close || closeDelim || l.draining.Load()
	if pump != nil && pump.early() {
		// The endpoint answers before it has the whole request body
		// (an early 401 or 413 to an upload): the rest of the body
		// will not be read, so the connection ends after this
		// response, and it closes lingering so that the client's
		// bytes still in flight do not reset it under the answer.
		clientClose = true
		hc.linger = true
	}

	b := hc.appendResponseHead(hc.out[:0], rt, noBody, clientClose)
	hc.rec.Status = resp.Status

	// Body bytes already read.
	avail := uc.buf[uc.r:uc.w]
	var k int
	var remain int64
	bodyDone := noBody
	var err error
	switch {
	case noBody:
	case resp.Chunked:
		hc.rchunks = h1.ChunkedScanner{}
		var ok bool
		k, ok, err = hc.rchunks.Scan(avail)
		bodyDone = ok
	case resp.ContentLength >= 0:
		k = int(min(int64(len(avail)), resp.ContentLength))
		remain = resp.ContentLength - int64(k)
		bodyDone = remain == 0
	default:
		k = len(avail)
	}
	if err != nil {
		// Nothing reached the client yet: a proper 502.
		done(balancer.DoneInfo{Err: err, Duration: time.Since(start)})
		hc.finishUpstream(uc, pump, false)
		hc.writeError(502, causeUpstreamReset, "upstream connection reset", true)
		return false
	}
	// written counts the response body bytes the client got, for
	// RequestRecord.BytesOut: the head and chunk framing excluded (see
	// copyChunked), as net/http's path counts what its handler wrote.
	var written int64
	if head := len(b); head+k <= maxCoalesce {
		b = append(b, avail[:k]...)
		var n int
		n, err = hc.c.Write(b)
		written = int64(max(0, n-head))
	} else if _, err = hc.c.Write(b); err == nil {
		var n int
		n, err = hc.c.Write(avail[:k])
		written = int64(n)
	}
	if resp.Chunked && !noBody {
		written = 0
		if err == nil {
			written = hc.rchunks.Data
		}
	}
	uc.r += k
	hc.out = b
	var upErr error
	if err == nil && !bodyDone {
		uc.nc.SetReadDeadline(time.Time{})
		var n int64
		switch {
		case resp.Chunked:
			n, err, upErr = hc.copyChunked(uc)
		case resp.ContentLength >= 0:
			n, err, upErr = hc.copyLength(uc, remain)
		default:
			n, err, upErr = hc.copyToEOF(uc)
		}
		written += n
	}
	hc.rec.BytesOut = written
	bodyDone = err == nil && upErr == nil
	if upErr != nil {
		// The endpoint broke its body after the head: the client keeps
		// the status it got, cut short (the connection closes), and
		// the cause says why, for the logs, metrics and the route's
		// breaker (requestOutcome), as on net/http's path.
		hc.rec.Cause = causeUpstreamReset
	}

	outcome := upErr
	if outcome == nil && err != nil {
		outcome = context.Canceled // the client went away
	}
	if outcome == nil && resp.Status >= 500 && resp.Status < 600 {
		outcome = &statusErrors[resp.Status-500]
	}
	done(balancer.DoneInfo{Err: outcome, Duration: time.Since(start)})

	upKeep := bodyDone && !closeDelim && !resp.Close && !resp.FaultyFraming &&
		(resp.Minor == 1 || resp.KeepAlive) && uc.r == uc.w
	reqOK := hc.finishUpstream(uc, pump, upKeep)
	return bodyDone && reqOK && !clientClose
}

// finishUpstream ends the request's use of uc: it waits for the body pump,
// then pools uc if keep and the whole request went out, else closes it. It
// reports whether the client's request body was consumed completely.
func (hc *h1conn) finishUpstream(uc *upConn, pump *bodyPump, keep bool) bool {
	reqOK := true
	if pump != nil {
		if err := pump.abort(); err != nil {
			reqOK, keep = false, false
		} else {
			uc.nc.SetWriteDeadline(time.Time{})
		}
	}
	hc.cur.Store(nil)
	if keep {
		uc.r, uc.w = 0, 0
		uc.put()
	} else {
		uc.close()
	}
	return reqOK
}

// appendResponseHead appends the client's response head: status line, the
// endpoint's end-to-end fields, Via, framing, the route's response header
// operations.
func (hc *h1conn) appendResponseHead(b []byte, rt *route.Route, noBody, clientClose bool) []byte {
	resp := &hc.resp
	ops := &rt.Config.ResponseHeaders
	hasOps := len(ops.Remove)+len(ops.Set) > 0
	b = appendStatusLine(b, resp.Status, resp.Reason)
	for _, f := range resp.Fields {
		switch classify(f.Name) {
		case fieldHop, fieldLength, fieldWhy:
			continue // framing is written below; the trail is the proxy's
		case fieldTrailer:
			if !resp.Chunked {
				continue
			}
		}
		if resp.ConnOther && connNamed(resp.Fields, f.Name) {
			continue
		}
		if hasOps && opsDrop(f.Name, ops) {
			continue
		}
		b = appendFieldBytes(b, f.Name, f.Value)
	}
	if !hasOps || !opsDrop([]byte("Via"), ops) {
		if resp.Minor == 0 {
			b = append(b, "Via: 1.0 outrigger\r\n"...)
		} else {
			b = append(b, "Via: 1.1 outrigger\r\n"...)
		}
	}
	// The framing is the proxy's: neither the endpoint's Connection
	// field nor the route's operations may take it away or change it, or
	// the body would be read differently than it is sent.
	switch {
	case resp.Chunked:
		if !noBody {
			b = append(b, "Transfer-Encoding: chunked\r\n"...)
		}
	case resp.ContentLength >= 0:
		// Also for HEAD and 304, where it describes the
		// representation.
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, resp.ContentLength, 10)
		b = append(b, "\r\n"...)
	}
	b = appendOpsKeepFraming(b, ops)
	if clientClose {
		b = append(b, "Connection: close\r\n"...)
	}
	b = hc.appendWhy(b, "")
	return append(b, "\r\n"...)
}

// appendOpsKeepFraming is appendOps without operations on the framing
// fields (Content-Length, Transfer-Encoding), which the fast path writes
// itself for requests and responses alike.
func appendOpsKeepFraming(b []byte, ops *route.HeaderOps) []byte {
	for _, list := range [2][][2]string{ops.Set, ops.Add} {
		for _, kv := range list {
			if !isFramingName(kv[0]) {
				b = appendField(b, kv[0], kv[1])
			}
		}
	}
	return b
}

// isFramingName reports whether name is Content-Length or
// Transfer-Encoding, in any case.
func isFramingName(name string) bool {
	return strings.EqualFold(name, "content-length") || strings.EqualFold(name, "transfer-encoding")
}

// copyChunked relays the rest of a chunked response body as it comes.
// cerr is a client write error, uerr an upstream read or framing error.
// written counts the data bytes of the chunks relayed (the framing is
// not counted, as net/http's path counts the body its handler wrote);
// a chunk whose write failed is not counted.
func (hc *h1conn) copyChunked(uc *upConn) (written int64, cerr, uerr error) {
	start := hc.rchunks.Data
	for !hc.rchunks.Done() {
		n, err := uc.nc.Read(uc.buf)
		if n > 0 {
			before := hc.rchunks.Data
			k, _, serr := hc.rchunks.Scan(uc.buf[:n])
			if _, werr := hc.c.Write(uc.buf[:k]); werr != nil {
				return before - start, werr, nil
			}
			if serr != nil {
				return hc.rchunks.Data - start, nil, serr
			}
			uc.r, uc.w = k, n
		}
		if err != nil && !hc.rchunks.Done() {
			return hc.rchunks.Data - start, nil, unexpectedEOF(err)
		}
	}
	return hc.rchunks.Data - start, nil, nil
}

// copyLength relays the remaining n bytes of a Content-Length body;
// written counts the bytes that reached the client.
func (hc *h1conn) copyLength(uc *upConn, n int64) (written int64, cerr, uerr error) {
	if n >= spliceMin && hc.tcp != nil && uc.tcp != nil {
		lr := io.LimitedReader{R: uc.tcp, N: n}
		m, err := hc.tcp.ReadFrom(&lr)
		switch {
		case m == n:
			return m, nil, nil
		case err == nil:
			return m, nil, io.ErrUnexpectedEOF
		default:
			return m, nil, err // either side; splice does not say which
		}
	}
	for n > 0 {
		m, err := uc.nc.Read(uc.buf[:min(int64(len(uc.buf)), n)])
		if m > 0 {
			w, werr := hc.c.Write(uc.buf[:m])
			written += int64(w)
			if werr != nil {
				return written, werr, nil
			}
			n -= int64(m)
		}
		if err != nil && n > 0 {
			return written, nil, unexpectedEOF(err)
		}
	}
	return written, nil, nil
}

// copyToEOF relays a body delimited by the endpoint closing the
// connection; written counts the bytes that reached the client.
func (hc *h1conn) copyToEOF(uc *upConn) (written int64, cerr, uerr error) {
	for {
		m, err := uc.nc.Read(uc.buf)
		if m > 0 {
			w, werr := hc.c.Write(uc.buf[:m])
			written += int64(w)
			if werr != nil {
				return written, werr, nil
			}
		}
		if err == io.EOF {
			return written, nil, nil
		}
		if err != nil {
			return written, nil, err
		}
	}
}

// unexpectedEOF turns an EOF before a body's end into io.ErrUnexpectedEOF.
func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
