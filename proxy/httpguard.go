package proxy

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
)

// The framing guard closes the gaps net/http leaves against request
// smuggling (RFC 9112 §11.2). net/http parses HTTP/1 strictly but accepts,
// and then hides from handlers, two framings that an intermediary must treat
// as errors:
//
//   - Content-Length together with Transfer-Encoding: net/http lets
//     Transfer-Encoding win and deletes Content-Length, but does not close the
//     connection, which RFC 9112 §6.1 requires ("the server MUST close the
//     connection after responding"), because a proxy in front of us may have
//     framed the message by Content-Length and sent the rest as another
//     request.
//   - Transfer-Encoding in an HTTP/1.0 request: net/http ignores it (issue
//     12785) and reads the chunked body as the next request on a keep-alive
//     connection; RFC 9112 §6.1 says to treat the framing as faulty and
//     close.
//
// It also refuses obsolete line folding (RFC 9112 §5.2), which net/http
// unfolds but other parsers on the path may not.
//
// None leaves a trace in the parsed *http.Request, so the guard watches
// the raw bytes: guardConn follows the HTTP/1 message framing of everything
// the server reads (request line and header lines, then the body by
// Content-Length or chunked framing) and records the index of the first
// message with a refused framing. serveHTTP counts the requests of its
// connection and answers that one, and any after it, 400 with
// "Connection: close". The guard costs a scan of header and chunk-size lines;
// body bytes are skipped by count. It stops watching at an HTTP/2 preface, an
// upgrade, or anything it cannot follow (net/http then rejects the message
// itself and closes the connection).

// newGuardConn returns c with a framing guard; prefix holds bytes already
// read from c that come first.
func newGuardConn(c net.Conn, prefix []byte) *guardConn {
	g := &guardConn{Conn: c, prefix: prefix}
	g.refused.Store(-1)
	return g
}

type guardKey struct{}

// connContext makes a connection's guard available to its handlers.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if g, ok := c.(interface{ guard() *guardConn }); ok {
		return context.WithValue(ctx, guardKey{}, g.guard())
	}
	return ctx
}

// guard returns g; connContext finds the guard of a *guardConn and of a
// connection embedding one (tlsPrefixConn) through it.
func (g *guardConn) guard() *guardConn { return g }

// guardState is where in a message the guard is.
type guardState uint8

const (
	gRequestLine guardState = iota
	gHeaders
	gBody      // remain bytes of a Content-Length body
	gChunkSize // a chunk-size line
	gChunkData // remain bytes of chunk data
	gChunkEnd  // the CRLF after chunk data
	gTrailers  // trailer lines until an empty one
	gOff       // not following (HTTP/2, tunnel, refused, or lost)
)

// maxGuardLine bounds a line the guard buffers; net/http refuses longer
// header sections (MaxHeaderBytes) and chunk lines (4 KiB) anyway.
const maxGuardLine = 1 << 20

// guardConn is an accepted client connection with its framing guard.
type guardConn struct {
	net.Conn

	// Owned by whichever goroutine reads the connection; net/http never
	// reads one connection from two goroutines at once and orders its
	// readers, so no lock is needed.
	prefix       []byte // bytes read from Conn before, returned first
	state        guardState
	line         []byte
	remain       int64 // body or chunk bytes left
	msg          int64 // index of the message being read
	http10       bool
	hasCL, hasTE bool
	cl           int64
	clBad        bool

	// Shared with the handlers.
	refused  atomic.Int64 // index of the first refused message, -1 if none
	reason   atomic.Pointer[string]
	tunnel   atomic.Bool  // set by the handler of an upgrade: stop following
	requests atomic.Int64 // HTTP/1 requests handed to serveHTTP so far
}

func (g *guardConn) Read(p []byte) (int, error) {
	var n int
	var err error
	if len(g.prefix) > 0 {
		n = copy(p, g.prefix)
		g.prefix = g.prefix[n:]
	} else {
		n, err = g.Conn.Read(p)
	}
	if n > 0 && g.state != gOff {
		if g.tunnel.Load() {
			g.state = gOff
		} else {
			g.scan(p[:n])
		}
	}
	return n, err
}

// refuse records that message g.msg has a framing the proxy refuses, and
// stops following.
func (g *guardConn) refuse(reason string) {
	g.reason.Store(&reason)
	g.refused.Store(g.msg)
	g.state = gOff
}

// scan follows the framing through b.
func (g *guardConn) scan(b []byte) {
	for len(b) > 0 && g.state != gOff {
		switch g.state {
		case gBody, gChunkData:
			k := int64(len(b))
			if k > g.remain {
				k = g.remain
			}
			b = b[k:]
			g.remain -= k
			if g.remain == 0 {
				if g.state == gBody {
					g.nextMessage()
				} else {
					g.state = gChunkEnd
				}
			}
			continue
		}
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			g.appendLine(b)
			return
		}
		g.appendLine(b[:i])
		b = b[i+1:]
		if g.state == gOff {
			return
		}
		line := bytes.TrimSuffix(g.line, []byte{'\r'})
		g.endLine(line)
		g.line = g.line[:0]
	}
}

func (g *guardConn) appendLine(b []byte) {
	if len(g.line)+len(b) > maxGuardLine {
		g.state = gOff // net/http refuses such a line itself
		return
	}
	g.line = append(g.line, b...)
}

// endLine handles one complete line (without its CRLF or LF).
func (g *guardConn) endLine(line []byte) {
	switch g.state {
	case gRequestLine:
		if bytes.HasPrefix(line, []byte("PRI * HTTP/2.0")) {
			g.state = gOff // HTTP/2 with prior knowledge
			return
		}
		g.http10 = bytes.HasSuffix(line, []byte(" HTTP/1.0"))
		g.hasCL, g.hasTE, g.clBad, g.cl = false, false, false, 0
		g.state = gHeaders
	case gHeaders:
		if len(line) == 0 {
			g.endHeaders()
			return
		}
		if line[0] == ' ' || line[0] == '\t' {
			// obs-fold: net/http unfolds it, RFC 9112 §5.2 lets us refuse
			// it, and other parsers may read it differently.
			g.refuse("obsolete line folding")
			return
		}
		name, value, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			return // net/http refuses it
		}
		switch {
		case asciiEqualFold(name, "content-length"):
			if !g.hasCL {
				n, err := strconv.ParseInt(string(bytes.TrimSpace(value)), 10, 64)
				g.cl, g.clBad = n, err != nil || n < 0
			}
			g.hasCL = true
		case asciiEqualFold(name, "transfer-encoding"):
			g.hasTE = true
		}
	case gChunkSize:
		size, _, _ := bytes.Cut(line, []byte{';'})
		n, err := strconv.ParseInt(string(bytes.TrimSpace(size)), 16, 64)
		switch {
		case err != nil || n < 0:
			g.state = gOff // net/http fails the body read
		case n == 0:
			g.state = gTrailers
		default:
			g.remain, g.state = n, gChunkData
		}
	case gChunkEnd:
		g.state = gChunkSize
	case gTrailers:
		if len(line) == 0 {
			g.nextMessage()
		}
	}
}

// endHeaders decides the body framing the way net/http does, refusing the
// two framings it lets through.
func (g *guardConn) endHeaders() {
	switch {
	case g.hasTE && g.http10:
		g.refuse("Transfer-Encoding in an HTTP/1.0 request")
	case g.hasTE && g.hasCL:
		g.refuse("both Transfer-Encoding and Content-Length")
	case g.hasTE:
		g.state = gChunkSize // net/http accepts only "chunked"
	case g.hasCL && g.clBad:
		g.state = gOff // net/http refuses it
	case g.hasCL && g.cl > 0:
		g.remain, g.state = g.cl, gBody
	default:
		g.nextMessage()
	}
}

func (g *guardConn) nextMessage() {
	g.msg++
	g.state = gRequestLine
}

// asciiEqualFold reports whether b equals the lower-case ASCII s, ignoring
// case.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
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

// checkFraming is called for every HTTP/1 request, in order, on its
// connection's goroutine. It returns why the request must be refused, or "".
func checkFraming(r *http.Request) string {
	g, _ := r.Context().Value(guardKey{}).(*guardConn)
	if g == nil {
		return ""
	}
	i := g.requests.Add(1) - 1
	if bad := g.refused.Load(); bad >= 0 && i >= bad {
		return "refused request framing: " + *g.reason.Load()
	}
	if isUpgrade(r) {
		// After a 101 the bytes are the tunnel's, not HTTP/1 messages.
		g.tunnel.Store(true)
	}
	return ""
}

// isUpgrade reports whether r asks for a protocol upgrade (RFC 9110 §7.8).
func isUpgrade(r *http.Request) bool {
	return r.Header.Get("Upgrade") != "" && headerHasToken(r.Header, "Connection", "upgrade")
}
