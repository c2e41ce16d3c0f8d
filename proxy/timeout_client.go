package proxy

import (
	"crypto/tls"
	"errors"
	"net"
	"time"
)

// A client that leaves while the fast path waits for the endpoint's
// response head.
//
// The connection's goroutine is blocked reading the upstream connection,
// so nothing reads the client's socket, and a client that closed or reset
// would only be seen at the first write of the response: the endpoint
// would go on working for nobody until it answered, or until the response
// timeout. net/http's server sees it at once (its background read cancels
// the request context, which ends the upstream round trip).
//
// The fast path looks only at requests that are still waiting after
// clientCheckAfter: the wait's upstream read deadline is set to the
// earlier of the response deadline and clientCheckAfter, which costs
// nothing more than the deadline set anyway, so a request answered within
// clientCheckAfter (nearly all) pays nothing: no syscall, no timer, no
// goroutine. From then on, each time the read deadline passes, one
// non-blocking MSG_PEEK of the client's socket (clientGone) tells whether
// the client sent FIN or was reset, and the next look is clientCheckEvery
// later. A client seen gone ends the request: the upstream connection is
// closed, not pooled (the endpoint may still answer on it), Done gets
// context.Canceled (neutral: the endpoint is not at fault, no breaker or
// outlier count), nothing is written, and the record keeps status 0 (as
// on net/http's path; nginx logs 499 for this). A half-closed client (FIN
// after its request) counts as gone, as net/http's background read
// treats it.
//
// What a peek cannot see: a client behind TLS that sent close_notify
// before its FIN (pending bytes look like a live client), and a client
// whose host vanished without a FIN or reset (TCP keep-alive closes that
// socket eventually, and the response deadline ends the wait anyway).
// While a request body streams the body pump reads the client, and sees
// its going itself; once the pump sent the whole body, the rest of the
// wait is looked at as above, clientCheckAfter from then.

const (
	// clientCheckAfter is how long a request waits for its response head
	// before the client is first looked at.
	clientCheckAfter = time.Second
	// clientCheckEvery is the time between later looks.
	clientCheckEvery = 250 * time.Millisecond
)

// errClientGone ends an exchange whose client left while the response
// head was awaited.
var errClientGone = errors.New("client closed the connection while the response was awaited")

// clientGone reports whether hc's client closed or reset its connection,
// without reading from it.
func (hc *h1conn) clientGone() bool {
	tc := hc.tcp
	if tc == nil {
		if c, ok := hc.c.(*tls.Conn); ok {
			tc, _ = c.NetConn().(*net.TCPConn)
		}
	}
	if tc == nil {
		return false // cannot look
	}
	return peerClosed(tc)
}
