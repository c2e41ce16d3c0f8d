package proxy

import "testing"

// newScanOnlyGuard is a guard with no connection, for feeding bytes to scan.
func newScanOnlyGuard() *guardConn {
	g := &guardConn{}
	g.refused.Store(-1)
	return g
}

// FuzzGuardSplitInvariance: the framing guard must never panic, and its
// verdict — which message it refuses, why, and where it is in the stream —
// must not depend on how the bytes arrive split into reads (TCP may cut a
// request anywhere).
func FuzzGuardSplitInvariance(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n",
		"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	} {
		f.Add([]byte(s), uint8(1))
		f.Add([]byte(s), uint8(7))
	}
	f.Fuzz(func(t *testing.T, data []byte, step uint8) {
		whole := newScanOnlyGuard()
		whole.scan(data)

		parts := newScanOnlyGuard()
		n := int(step%32) + 1
		for i := 0; i < len(data); i += n {
			parts.scan(data[i:min(i+n, len(data))])
		}

		reason := func(g *guardConn) string {
			if r := g.reason.Load(); r != nil {
				return *r
			}
			return ""
		}
		if whole.refused.Load() != parts.refused.Load() || reason(whole) != reason(parts) ||
			whole.msg != parts.msg || whole.state != parts.state || whole.remain != parts.remain {
			t.Fatalf("verdict depends on read boundaries (step %d):\n whole: refused=%d %q msg=%d state=%d remain=%d\n parts: refused=%d %q msg=%d state=%d remain=%d",
				n, whole.refused.Load(), reason(whole), whole.msg, whole.state, whole.remain,
				parts.refused.Load(), reason(parts), parts.msg, parts.state, parts.remain)
		}
	})
}
