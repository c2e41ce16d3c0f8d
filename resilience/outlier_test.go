package resilience

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestOutlierObserve(t *testing.T) {
	reset := Outcome{Kind: KindReset}
	dial := Outcome{Kind: KindConnectFailure}
	tests := []struct {
		name string
		cfg  OutlierConfig
		seq  []Outcome
		want []string // Observe's answer per outcome, NoEjection as "-"
	}{
		{"5xx", OutlierConfig{Consecutive5xx: 3},
			[]Outcome{Response(500), Response(503), Response(404), Response(500), Response(502), Response(500), Response(500)},
			[]string{"-", "-", "-", "-", "-", Eject5xx.String(), "-"}},
		{"5xx counts local failures and grpc internal", OutlierConfig{Consecutive5xx: 3},
			[]Outcome{dial, GRPCResponse(GRPCInternal), {Kind: KindFailure}},
			[]string{"-", "-", Eject5xx.String()}},
		{"canceled is neutral", OutlierConfig{Consecutive5xx: 2},
			[]Outcome{Response(500), {Kind: KindCanceled}, {}, Response(500)},
			[]string{"-", "-", "-", Eject5xx.String()}},
		{"gateway", OutlierConfig{ConsecutiveGatewayErrors: 2},
			[]Outcome{Response(502), Response(500), Response(504), GRPCResponse(GRPCUnavailable)},
			[]string{"-", "-", "-", EjectGatewayError.String()}},
		{"local origin", OutlierConfig{ConsecutiveLocalOriginFailures: 3},
			[]Outcome{dial, reset, Response(500), dial, {Kind: KindTimeout}, {Kind: KindFailure}, {Kind: KindRefusedStream}},
			[]string{"-", "-", "-", "-", "-", "-", EjectLocalOrigin.String()}},
		{"off", OutlierConfig{}, []Outcome{dial, dial, dial}, []string{"-", "-", "-"}},
	}
	for _, tt := range tests {
		d := NewOutlier(tt.cfg)
		var got []string
		for _, o := range tt.seq {
			r := d.Observe(o).String()
			if r == "none" {
				r = "-"
			}
			got = append(got, r)
		}
		if diff := cmp.Diff(got, tt.want); diff != "" {
			t.Errorf("%s (-got +want):\n%s", tt.name, diff)
		}
	}
	d := NewOutlier(OutlierConfig{Consecutive5xx: 2})
	d.Observe(Response(500))
	d.Reset()
	if r := d.Observe(Response(500)); r != NoEjection {
		t.Errorf("first failure after Reset ejects: %v", r)
	}
}

func TestOutlierConfig(t *testing.T) {
	c := OutlierConfig{Consecutive5xx: 5, BaseEjectionTime: 10 * time.Second, MaxEjectionTime: 35 * time.Second}
	var times []time.Duration
	for n := 1; n <= 5; n++ {
		times = append(times, c.EjectionTime(n))
	}
	want := []time.Duration{10 * time.Second, 20 * time.Second, 30 * time.Second, 35 * time.Second, 35 * time.Second}
	if diff := cmp.Diff(times, want); diff != "" {
		t.Errorf("ejection times (-got +want):\n%s", diff)
	}
	for _, c := range []struct {
		share float64
		n     int
		want  int
	}{{0, 1, 0}, {0, 2, 1}, {0, 3, 1}, {0, 10, 5}, {0.1, 9, 0}, {0.1, 10, 1}, {1, 3, 3}, {0.3, 10, 3}} {
		if got := (OutlierConfig{MaxEjectionShare: c.share}).MaxEjected(c.n); got != c.want {
			t.Errorf("MaxEjected(share %v, %d) = %d, want %d", c.share, c.n, got, c.want)
		}
	}
	err := OutlierConfig{BaseEjectionTime: time.Minute, MaxEjectionTime: time.Second, MaxEjectionShare: 1.5}.Validate()
	if err == nil || strings.Count(err.Error(), "\n") != 1 {
		t.Errorf("Validate = %v, want two problems", err)
	}
}

func TestOutlierObserveDoesNotAllocate(t *testing.T) {
	d := NewOutlier(OutlierConfig{Consecutive5xx: 5, ConsecutiveGatewayErrors: 5, ConsecutiveLocalOriginFailures: 5})
	if n := testing.AllocsPerRun(100, func() { d.Observe(Response(503)) }); n != 0 {
		t.Errorf("Observe: %v allocations, want 0", n)
	}
}
