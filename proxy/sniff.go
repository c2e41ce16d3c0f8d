package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"time"
)

// DefaultSniffTimeout is how long an auto listener waits for a client's
// first bytes before it forwards the connection as TCP (FrontConfig).
//
// Istio (Envoy's listener filters) and Linkerd face the same choice:
// Linkerd waits 10s, which its users meet as "10-second delays" on every
// server-speaks-first connection (MySQL, SMTP); Istio tried 100ms and then
// moved away from short timeouts because busy, CPU-throttled clients were
// misdetected as TCP. A sidecar's client is on the same host and writes its
// request right after connect, so one second is far past any scheduling
// hiccup of a client that does speak first, and costs a server-speaks-first
// protocol one second per new connection, not ten. Such protocols are
// better served by protocol: tcp, which never waits.
const DefaultSniffTimeout = time.Second

// sniffKind is what a connection's first bytes are.
type sniffKind uint8

const (
	sniffMore   sniffKind = iota // not decided yet: more bytes are needed
	sniffTLS                     // a TLS handshake record (a ClientHello)
	sniffH2                      // the HTTP/2 connection preface (prior knowledge)
	sniffHTTP1                   // an HTTP/1 request line: a known method and a space
	sniffOther                   // anything else: forward as TCP
	sniffSilent                  // no byte before the timeout or EOF: the server speaks first
)

func (k sniffKind) String() string {
	return [...]string{"undecided", "tls", "h2", "http1", "other", "silent"}[k]
}

// http2Preface is the client connection preface of HTTP/2 (RFC 9113 §3.4).
const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// httpMethods are the request methods an HTTP/1 request line is recognized
// by, each with the space that ends it (RFC 9112 §3: method SP target SP
// version). Methods are case-sensitive (RFC 9110 §9.1). The list is RFC
// 9110's methods, PATCH (RFC 5789) and WebDAV's (RFC 4918, 3253, 4791,
// 5323), the same set Envoy's http_inspector takes from its HTTP parser;
// a client using any other method is forwarded as TCP. "PRI" is left out:
// it only starts the HTTP/2 preface.
var httpMethods = [...]string{
	"GET ", "HEAD ", "POST ", "PUT ", "DELETE ", "CONNECT ", "OPTIONS ", "TRACE ", "PATCH ",
	"PROPFIND ", "PROPPATCH ", "MKCOL ", "COPY ", "MOVE ", "LOCK ", "UNLOCK ",
	"REPORT ", "MKACTIVITY ", "CHECKOUT ", "MERGE ", "MKCALENDAR ", "SEARCH ", "ACL ", "BIND ", "REBIND ", "UNBIND ",
}

// sniffMax is the most bytes classifyFirstBytes ever needs to decide: the whole
// HTTP/2 preface. Every method above is shorter (TestSniffMax).
const sniffMax = len(http2Preface)

// classifyFirstBytes decides what b, a connection's first bytes, are, as soon as the
// bytes allow and never later: it answers sniffMore only while some kind is
// still possible and none is certain. It is pure and never looks past
// sniffMax bytes.
//
//   - TLS: a handshake record (content type 22) with protocol version
//     major 3 (RFC 8446 §5.1; SSL 3.0 to TLS 1.3 all send 0x03xx): 2 bytes.
//   - HTTP/2 with prior knowledge: the 24-byte preface, whole.
//   - HTTP/1: a known method followed by a space, e.g. 4 bytes for "GET ".
//   - anything else as soon as no prefix above is possible: "X" after 1
//     byte, "GX" after 2.
func classifyFirstBytes(b []byte) sniffKind {
	if len(b) == 0 {
		return sniffMore
	}
	if b[0] == 0x16 {
		switch {
		case len(b) < 2:
			return sniffMore
		case b[1] == 0x03:
			return sniffTLS
		default:
			return sniffOther
		}
	}
	more := false
	if n := min(len(b), sniffMax); string(b[:n]) == http2Preface[:n] {
		if n == sniffMax {
			return sniffH2
		}
		more = true
	}
	for _, m := range httpMethods {
		if len(b) >= len(m) {
			if string(b[:len(m)]) == m {
				return sniffHTTP1
			}
		} else if string(b) == m[:len(b)] {
			more = true
		}
	}
	if more {
		return sniffMore
	}
	return sniffOther
}

// sniff reads c's first bytes until classifyFirstBytes decides, timeout passes
// since the call, or the client half-closes, and returns the kind and every
// byte it read (to be replayed: they are the start of the stream). It never
// asks for more bytes than classifyFirstBytes still needs, so it waits no longer than
// the client takes to send them. Reads use a read deadline, which sniff
// clears before it returns.
//
// Timeout and EOF are answers, not errors: with no byte the kind is
// sniffSilent (a server-speaks-first protocol, or a client that sent
// nothing), with some but too few it is sniffOther. err is set only when
// reading failed otherwise (a reset, or the connection was closed under
// it); the bytes read before are still returned.
func sniff(c net.Conn, timeout time.Duration) (sniffKind, []byte, error) {
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return sniffOther, nil, err
	}
	buf := make([]byte, sniffMax)
	n := 0
	kind := sniffMore
	var err error
	for kind == sniffMore {
		var m int
		m, err = c.Read(buf[n:])
		n += m
		kind = classifyFirstBytes(buf[:n])
		if kind != sniffMore {
			err = nil // decided; a later error belongs to whoever reads next
			break
		}
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, os.ErrDeadlineExceeded) {
				err = nil
				kind = sniffOther
				if n == 0 {
					kind = sniffSilent
				}
			}
			break
		}
		if n == len(buf) { // cannot happen: classify decides within sniffMax
			kind = sniffOther
		}
	}
	if kind == sniffMore {
		kind = sniffOther
	}
	if derr := c.SetReadDeadline(time.Time{}); derr != nil && err == nil {
		err = derr
	}
	return kind, buf[:n:n], err
}

// prefixConn is a net.Conn whose first reads return prefix, bytes already
// read from Conn. It is for consumers that need a net.Conn (crypto/tls);
// the L4 path writes the prefix itself and keeps the raw *net.TCPConn.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
