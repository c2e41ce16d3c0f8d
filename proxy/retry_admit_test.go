package proxy

import (
	"testing"

	"github.com/outrigger-mesh/outrigger/resilience"
)

// Retries still happen when the service also has max_connections: the
// fast path's connection-limit wrapper sits on top of the retrying
// upstream and must not hide it (found in review: retries were off).
func TestRetryUnderMaxConnections(t *testing.T) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			a, b := startCounted(t, "a", fail503("a")), startCounted(t, "b", nil)
			up := newFakeUpstream(t, a.addr, b.addr)
			r := newRetry(t, resilience.RetryConfig{Attempts: 2, On: []string{"503"}}, resilience.BudgetConfig{})
			sl := NewServiceLimits(ServiceLimitsConfig{MaxConnections: 10})
			p := startAdmitProxy(t, e.cfg, Upstreams{"web.shop": WithRetry(up, r, nil)},
				&Admission{Services: map[string]*ServiceLimits{"web.shop": sl}})
			c := fromAddr(t, "127.0.0.1", e.h2c)
			up.rewind()
			if got := send(t, c, "http://"+p.addr+"/"); got.Status != 200 {
				t.Errorf("got %+v; a got %d, b %d: the retry did not happen", got, a.n.Load(), b.n.Load())
			}
		})
	}
}
