package proxy

import (
	"io"
	"net"
	"testing"

	"github.com/outrigger-mesh/outrigger/resilience"
)

// TestClientErrorsAreNotTheEndpoints: a connection the client resets says
// nothing about the endpoint, so its Done is neutral for breakers and
// outlier detection; one the endpoint resets is the endpoint's failure.
func TestClientErrorsAreNotTheEndpoints(t *testing.T) {
	t.Run("client resets", func(t *testing.T) {
		up := newFakeUpstream(t, startBackend(t, echo))
		p := startProxy(t, TCPConfig{}, up, ServerConfig{})
		c := p.dial(t)
		roundTrip(t, c, []byte("hello"), make([]byte, 5))
		c.SetLinger(0) // close with RST
		c.Close()
		d := up.waitDones(t, 1)[0].info
		if o := resilience.OutcomeOf(d.Outcome, d.Err); !o.Neutral() {
			t.Errorf("Done after the client reset: %+v (outcome %v), want a neutral outcome", d, o.Kind)
		}
	})
	t.Run("endpoint resets", func(t *testing.T) {
		up := newFakeUpstream(t, startBackend(t, func(c *net.TCPConn) {
			buf := make([]byte, 5)
			io.ReadFull(c, buf)
			c.Write(buf)
			io.ReadFull(c, buf[:1]) // the client got the echo
			c.SetLinger(0)          // close with RST
		}))
		p := startProxy(t, TCPConfig{}, up, ServerConfig{})
		c := p.dial(t)
		roundTrip(t, c, []byte("hello"), make([]byte, 5))
		if _, err := c.Write([]byte("!")); err != nil {
			t.Fatal(err)
		}
		assertClosed(t, c)
		d := up.waitDones(t, 1)[0].info
		if o := resilience.OutcomeOf(d.Outcome, d.Err); !o.Failed() {
			t.Errorf("Done after the endpoint reset: %+v (outcome %v), want a failure", d, o.Kind)
		}
	})
}
