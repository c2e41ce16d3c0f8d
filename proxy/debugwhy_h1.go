package proxy

import (
	"net"

	"github.com/outrigger-mesh/outrigger/proxy/internal/h1"
)

// The "why" on the fast path: hc.why is the connection's trail, reset for
// each request that asks. The request field is dropped from the upstream
// head by appendRequestHead, as classify puts it in a class of its own;
// the response field is appended to the head by appendResponseHead,
// writeError and writeGenerated.

// whyBegin looks at the request just parsed: when it carries
// "X-Outrigger-Debug: why" from a client that may ask, the trail starts.
// Without the field it costs a length comparison per field line.
func (hc *h1conn) whyBegin() {
	for _, f := range hc.req.Fields {
		if len(f.Name) != len(DebugHeader) || !h1.EqualFold(f.Name, "x-outrigger-debug") {
			continue
		}
		if h1.HasToken(f.Value, "why") && hc.whyPeerAllowed() {
			hc.why.reset(hc.l.cfg.ResponseTimeout)
			// Without an Observer nothing else resets these.
			hc.rec.Route, hc.rec.Service = "", ""
			return
		}
	}
}

// whyPeerAllowed is whyPeerAllowed for the connection's client.
func (hc *h1conn) whyPeerAllowed() bool {
	ta, ok := hc.c.RemoteAddr().(*net.TCPAddr)
	return ok && whyPeerAllowed(ta.AddrPort().Addr())
}

// appendWhy appends the trail's field when the request asked for it;
// cause is the X-Outrigger-Error of an answer the proxy made ("" else).
func (hc *h1conn) appendWhy(b []byte, cause string) []byte {
	if !hc.why.on {
		return b
	}
	return hc.why.appendField(b, hc.l.cfg.Name, hc.rec.Route, hc.rec.Service, cause)
}
