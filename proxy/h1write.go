package proxy

import (
	"net/http"
	"net/url"
	"strconv"

	"github.com/outrigger-mesh/outrigger/proxy/internal/h1"
	"github.com/outrigger-mesh/outrigger/proxy/route"
)

// Message heads the fast path writes itself.

// appendStatusLine appends "HTTP/1.1 code reason\r\n".
func appendStatusLine(b []byte, code int, reason []byte) []byte {
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	if reason != nil {
		b = append(b, reason...)
	} else {
		b = append(b, http.StatusText(code)...)
	}
	return append(b, "\r\n"...)
}

// appendField appends one field line.
func appendField(b []byte, name, value string) []byte {
	b = append(b, name...)
	b = append(b, ": "...)
	b = append(b, value...)
	return append(b, "\r\n"...)
}

// appendFieldBytes appends one field line.
func appendFieldBytes(b []byte, name, value []byte) []byte {
	b = append(b, name...)
	b = append(b, ": "...)
	b = append(b, value...)
	return append(b, "\r\n"...)
}

// bodyAllowed reports whether a response with this status may have a body
// (RFC 9110 §6.4.1).
func bodyAllowed(status int) bool {
	return status >= 200 && status != 204 && status != 304
}

// writeError answers with an error the proxy made itself, as
// HTTPListener.writeError: text/plain, X-Outrigger-Error, and with closeConn
// (or when the connection closes anyway) "Connection: close". It reports
// whether the write succeeded.
func (hc *h1conn) writeError(status int, cause, msg string, closeConn bool) bool {
	b := appendStatusLine(hc.out[:0], status, nil)
	b = append(b, "Content-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n"...)
	b = appendField(b, ErrorHeader, cause)
	hc.rec.Status, hc.rec.Cause = status, cause
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, int64(len(msg)+1), 10)
	b = append(b, "\r\n"...)
	if closeConn || hc.closeNext {
		b = append(b, "Connection: close\r\n"...)
		hc.linger = true
	}
	b = hc.appendWhy(b, cause)
	b = append(b, "\r\n"...)
	head := len(b)
	if !hc.isHead() {
		b = append(b, msg...)
		b = append(b, '\n')
	}
	hc.out = b
	n, err := hc.c.Write(b)
	hc.rec.BytesOut = int64(max(0, n-head))
	return err == nil
}

// writeGenerated answers a redirect (name "Location") or fixed response
// (name "Content-Type", with body): the route's response header operations
// apply first and the generated fields win, as in redirect and fixed.
func (hc *h1conn) writeGenerated(status int, rc *route.RouteConfig, name, value, body string) bool {
	hc.rec.Status = status
	b := appendStatusLine(hc.out[:0], status, nil)
	ops := &rc.ResponseHeaders
	generated := func(k string) bool {
		return k == name || (body != "" && k == "Content-Length")
	}
	for _, kv := range ops.Set {
		if !generated(kv[0]) {
			b = appendField(b, kv[0], kv[1])
		}
	}
	for _, kv := range ops.Add {
		if !generated(kv[0]) {
			b = appendField(b, kv[0], kv[1])
		}
	}
	if value != "" {
		b = appendField(b, name, value)
	}
	if body != "" || (bodyAllowed(status) && !hc.isHead()) {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(len(body)), 10)
		b = append(b, "\r\n"...)
	}
	if hc.closeNext {
		b = append(b, "Connection: close\r\n"...)
	}
	b = hc.appendWhy(b, "")
	b = append(b, "\r\n"...)
	head := len(b)
	if !hc.isHead() && bodyAllowed(status) {
		b = append(b, body...)
	}
	hc.out = b
	n, err := hc.c.Write(b)
	hc.rec.BytesOut = int64(max(0, n-head))
	return err == nil
}

// named reports whether name is in list (canonical names), ignoring case.
func named(name []byte, list []string) bool {
	for _, s := range list {
		if h1.EqualFoldString(name, s) {
			return true
		}
	}
	return false
}

// namedKV is named for the names of Set or Add operations.
func namedKV(name []byte, list [][2]string) bool {
	for i := range list {
		if h1.EqualFoldString(name, list[i][0]) {
			return true
		}
	}
	return false
}

// opsDrop reports whether a header operation replaces or removes name.
func opsDrop(name []byte, ops *route.HeaderOps) bool {
	return (len(ops.Remove) > 0 && named(name, ops.Remove)) || (len(ops.Set) > 0 && namedKV(name, ops.Set))
}

// connNamed reports whether a Connection field of fields lists name (RFC
// 9110 §7.6.1: the fields it names are hop-by-hop).
func connNamed(fields []h1.Field, name []byte) bool {
	for _, f := range fields {
		if h1.EqualFold(f.Name, "connection") && h1.HasTokenBytes(f.Value, name) {
			return true
		}
	}
	return false
}

// Field classes for forwarding.
const (
	fieldKeep = iota
	fieldHop  // hop-by-hop: never forwarded (RFC 9110 §7.6.1)
	fieldTrailer
	fieldHost
	fieldLength
	fieldXFF
	fieldXFP
	fieldXFH
	fieldForwarded
	fieldDebug // X-Outrigger-Debug: read by the proxy (debugwhy.go), never forwarded
	fieldWhy   // X-Outrigger-Why: written by the proxy alone, an endpoint's is dropped
)

// classify returns a field name's class.
func classify(name []byte) int {
	switch len(name) {
	case 2:
		if h1.EqualFold(name, "te") {
			return fieldHop
		}
	case 4:
		if h1.EqualFold(name, "host") {
			return fieldHost
		}
	case 7:
		if h1.EqualFold(name, "upgrade") {
			return fieldHop
		}
		if h1.EqualFold(name, "trailer") {
			return fieldTrailer
		}
	case 9:
		if h1.EqualFold(name, "forwarded") {
			return fieldForwarded
		}
	case 10:
		if h1.EqualFold(name, "connection") || h1.EqualFold(name, "keep-alive") {
			return fieldHop
		}
	case 14:
		if h1.EqualFold(name, "content-length") {
			return fieldLength
		}
	case 15:
		if h1.EqualFold(name, "x-forwarded-for") {
			return fieldXFF
		}
		if h1.EqualFold(name, "x-outrigger-why") {
			return fieldWhy
		}
	case 16:
		if h1.EqualFold(name, "proxy-connection") || h1.EqualFold(name, "x-forwarded-host") {
			if name[2] == 'f' || name[2] == 'F' {
				return fieldXFH
			}
			return fieldHop
		}
	case 17:
		if h1.EqualFold(name, "transfer-encoding") || h1.EqualFold(name, "x-forwarded-proto") {
			if name[0] == 'x' || name[0] == 'X' {
				return fieldXFP
			}
			return fieldHop
		}
		if h1.EqualFold(name, "x-outrigger-debug") {
			return fieldDebug
		}
	case 18:
		if h1.EqualFold(name, "proxy-authenticate") {
			return fieldHop
		}
	case 19:
		if h1.EqualFold(name, "proxy-authorization") {
			return fieldHop
		}
	}
	return fieldKeep
}

// simplePath reports whether p is its own escaping: no '%', and only bytes
// net/url leaves as they are in a path, so that net/http's parsed Path and
// EscapedPath would both equal p.
func simplePath(p string) bool {
	for i := 0; i < len(p); i++ {
		if !pathByte[p[i]] {
			return false
		}
	}
	return true
}

// pathByte is the bytes simplePath allows.
var pathByte = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "-_.~!$&'()*+,;=:@[]/" {
		t[c] = true
	}
	return t
}()

// parseRequestPath parses a request target as net/http does, for targets
// that are not simple paths.
func parseRequestPath(target string) (*url.URL, error) {
	return url.ParseRequestURI(target)
}
