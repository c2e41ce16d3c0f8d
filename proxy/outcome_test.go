package proxy

import (
	"fmt"
	"testing"

	"github.com/outrigger-mesh/outrigger/resilience"
)

// The engine reports an endpoint's answer to Done as an error only; the
// balancer's breakers and outlier detection must still see the status.
func TestEngineErrorsCarryTheirOutcome(t *testing.T) {
	notFound := resilience.OutcomeOf(resilience.Outcome{}, &grpcStatusErrors[5])
	if notFound.Failed() {
		t.Errorf("gRPC NOT_FOUND classified %+v, a failure; it is the application's answer", notFound)
	}
	unavailable := resilience.OutcomeOf(resilience.Outcome{}, &grpcStatusErrors[14])
	if !unavailable.Failed() {
		t.Errorf("gRPC UNAVAILABLE classified %+v, not a failure", unavailable)
	}
	wrapped := resilience.OutcomeOf(resilience.Outcome{}, fmt.Errorf("attempt 1: %w", &statusErrors[3]))
	if wrapped.Kind != resilience.KindResponse || wrapped.Status != 503 {
		t.Errorf("a wrapped 503 classified %+v", wrapped)
	}

	o := resilience.NewOutlier(resilience.OutlierConfig{ConsecutiveGatewayErrors: 3})
	ejected := -1
	for i := range 10 {
		if r := o.Observe(resilience.OutcomeOf(resilience.Outcome{}, &statusErrors[3])); r != resilience.NoEjection {
			ejected = i + 1
			break
		}
	}
	if ejected != 3 {
		t.Errorf("consecutive 503s from the engine ejected after %d responses, want 3", ejected)
	}
}
