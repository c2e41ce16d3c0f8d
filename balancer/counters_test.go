package balancer

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/outrigger-mesh/outrigger/resilience"
)

// Status counts breaker openings (a failed probe opens again) and outlier
// ejections over the balancer's life; neither goes down when the state
// ends or the endpoint leaves.
func TestStatusTotals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, settle := running(t, Config{
			Breaker: &resilience.BreakerConfig{ConsecutiveFailures: 1, OpenTime: 10 * time.Second}},
			snapshot(1, ep("a"), ep("b")))
		fail := func(id string) DoneInfo {
			if id == "a" {
				return DoneInfo{Outcome: resilience.Outcome{Kind: resilience.KindReset}}
			}
			return DoneInfo{}
		}
		pickAll(t, b, 2, fail)
		settle()
		time.Sleep(10*time.Second + 1)
		settle()
		pickAll(t, b, 4, fail) // the half-open probe to a fails: open again
		settle()
		if s := b.Status(); s.BreakerOpensTotal != 2 || s.EjectionsTotal != 0 {
			t.Errorf("breaker opens %d, ejections %d; want 2, 0", s.BreakerOpensTotal, s.EjectionsTotal)
		}

		o, settleO := running(t, Config{Policy: PolicyRoundRobin,
			Outlier: &resilience.OutlierConfig{Consecutive5xx: 2, BaseEjectionTime: 30 * time.Second}},
			snapshot(1, ep("a"), ep("b"), ep("c"), ep("d")))
		bad := func(id string) DoneInfo {
			if id == "a" {
				return DoneInfo{Outcome: resilience.Response(503)}
			}
			return DoneInfo{Outcome: resilience.Response(200)}
		}
		for range 4 {
			pickAll(t, o, 8, bad)
			settleO()
		}
		if s := o.Status(); s.EjectionsTotal != 1 {
			t.Fatalf("ejections after a failed: %d, want 1", s.EjectionsTotal)
		}
		time.Sleep(30*time.Second + 1) // the ejection ends
		settleO()
		for range 4 {
			pickAll(t, o, 8, bad)
			settleO()
		}
		if s := o.Status(); s.EjectionsTotal != 2 || s.BreakerOpensTotal != 0 {
			t.Errorf("after a failed again: ejections %d, breaker opens %d; want 2, 0", s.EjectionsTotal, s.BreakerOpensTotal)
		}
	})
}
