package resilience

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

func TestHealthConfigValidate(t *testing.T) {
	if err := (HealthConfig{Protocol: "http", Path: "/healthz", StatusMin: 200, StatusMax: 204}).Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
	err := HealthConfig{Protocol: "udp", Interval: -1, Jitter: 1, Path: "healthz", StatusMin: 500, StatusMax: 200}.Validate()
	want := []string{
		`health_check: protocol: unknown "udp" (want tcp, http or grpc)`,
		"health_check: interval: -1ns is negative",
		"health_check: jitter: 1 is not less than 1",
		`health_check: path: "healthz" does not start with /`,
		"health_check: status: range 500-200 is not within 100-599",
	}
	if err == nil {
		t.Fatal("Validate accepted a bad config")
	}
	if diff := cmp.Diff(strings.Split(err.Error(), "\n"), want); diff != "" {
		t.Errorf("Validate (-got +want):\n%s", diff)
	}
}

func TestHealthCounter(t *testing.T) {
	h := healthCounter{healthyThreshold: 2, unhealthyThreshold: 3, healthy: true}
	seq := []bool{false, false, true, false, false, false, true, false, true, true, false}
	var got []string
	for _, pass := range seq {
		changed := h.observe(pass)
		s := "unhealthy"
		if h.healthy {
			s = "healthy"
		}
		if changed {
			s += "!"
		}
		got = append(got, s)
	}
	want := []string{"healthy", "healthy", "healthy", "healthy", "healthy", "unhealthy!",
		"unhealthy", "unhealthy", "unhealthy", "healthy!", "healthy"}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("states (-got +want):\n%s", diff)
	}
}

func TestNextDelay(t *testing.T) {
	c := HealthConfig{Interval: 10 * time.Second, Jitter: 0.1}
	var asked int64
	lo := nextDelay(c, func(n int64) int64 { asked = n; return 0 })
	hi := nextDelay(c, func(n int64) int64 { return n - 1 })
	if lo != 9*time.Second || hi != 11*time.Second || asked != int64(2*time.Second)+1 {
		t.Errorf("delays span [%v, %v] drawn from %d, want [9s, 11s] from 2s+1", lo, hi, asked)
	}
	if d := nextDelay(HealthConfig{Interval: time.Second}, nil); d != time.Second {
		t.Errorf("no jitter: %v, want 1s", d)
	}
}

// scriptProber answers checks from a script (true passes; past its end it
// repeats the last answer) and records when it was asked.
type scriptProber struct {
	mu     sync.Mutex
	script []bool
	at     []time.Duration // since start
	start  time.Time
	closed bool
}

func (p *scriptProber) check(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.at = append(p.at, time.Since(p.start))
	pass := p.script[min(len(p.at), len(p.script))-1]
	if !pass {
		return errors.New("scripted failure")
	}
	return nil
}

func (p *scriptProber) close() { p.mu.Lock(); p.closed = true; p.mu.Unlock() }

type change struct {
	at      time.Duration
	healthy bool
}

func TestHealthMonitorIntervals(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		m, err := NewHealthMonitor(HealthConfig{Protocol: HealthTCP, Interval: time.Second, Jitter: -1,
			HealthyThreshold: 2, UnhealthyThreshold: 2})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		probes := map[netip.AddrPort]*scriptProber{}
		m.newProbe = func(addr netip.AddrPort) (prober, error) {
			p := &scriptProber{script: []bool{true, false, false, false, true, true}, start: start}
			probes[addr] = p
			return p, nil
		}
		var mu sync.Mutex
		var changes []change
		a := netip.MustParseAddrPort("10.0.0.1:80")
		err = m.Sync(t.Context(), []HealthTarget{{ID: "a", Addr: a, OnChange: func(h bool) {
			mu.Lock()
			changes = append(changes, change{time.Since(start), h})
			mu.Unlock()
		}}})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(5500 * time.Millisecond)
		synctest.Wait()
		m.Close()
		p := probes[a]
		wantAt := []time.Duration{0, time.Second, 2 * time.Second, 3 * time.Second, 4 * time.Second, 5 * time.Second}
		if diff := cmp.Diff(p.at, wantAt); diff != "" {
			t.Errorf("check times (-got +want):\n%s", diff)
		}
		// Started healthy (reported by Sync); pass, fail, fail (unhealthy at
		// 2s), fail, pass, pass (healthy at 5s).
		if diff := cmp.Diff(changes, []change{{0, true}, {2 * time.Second, false}, {5 * time.Second, true}},
			cmp.AllowUnexported(change{})); diff != "" {
			t.Errorf("changes (-got +want):\n%s", diff)
		}
		if !p.closed {
			t.Error("prober not closed by Close")
		}
	})
}

func TestHealthMonitorSync(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		m, err := NewHealthMonitor(HealthConfig{Protocol: HealthTCP, Interval: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		var made []*scriptProber
		m.newProbe = func(addr netip.AddrPort) (prober, error) {
			if addr.Port() == 0 {
				return nil, errors.New("no port")
			}
			p := &scriptProber{script: []bool{true}, start: time.Now()}
			made = append(made, p)
			return p, nil
		}
		a1 := netip.MustParseAddrPort("10.0.0.1:80")
		a2 := netip.MustParseAddrPort("10.0.0.2:80")
		if err := m.Sync(t.Context(), []HealthTarget{{ID: "a", Addr: a1}, {ID: "b", Addr: a2}}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		// Same targets: nothing restarts. "a" moves: restarted. "b" goes.
		// "c" cannot be probed: reported, skipped.
		if err := m.Sync(t.Context(), []HealthTarget{{ID: "a", Addr: a1}, {ID: "b", Addr: a2}}); err != nil || len(made) != 2 {
			t.Fatalf("resync of the same targets: err %v, %d probers made, want 2", err, len(made))
		}
		err = m.Sync(t.Context(), []HealthTarget{{ID: "a", Addr: a2}, {ID: "c", Addr: netip.AddrPortFrom(a1.Addr(), 0)}})
		if err == nil || !strings.Contains(err.Error(), `endpoint "c": no port`) {
			t.Errorf("Sync with an unprobeable target: err = %v", err)
		}
		synctest.Wait()
		if len(made) != 3 || !made[0].closed || !made[1].closed || made[2].closed {
			t.Fatalf("after the move: %d probers, closed %v %v %v; want 3, true true false",
				len(made), made[0].closed, made[1].closed, made[2].closed)
		}
		m.Close()
		if !made[2].closed {
			t.Error("Close left a prober open")
		}
	})
}

// TestHealthMonitorRestartResetsVerdict: a verdict belongs to the checker
// that reached it. When an endpoint keeps its ID but moves to a new
// address, or a new monitor takes over (the balancer's Run restarted),
// the new checker starts healthy and says so before its first check, so an
// unhealthy verdict about the old address or the old monitor does not
// stick while the new checker sees passing checks and reports nothing.
func TestHealthMonitorRestartResetsVerdict(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		dead := netip.MustParseAddrPort("10.0.0.1:80")
		live := netip.MustParseAddrPort("10.0.0.2:80")
		newMonitor := func() *HealthMonitor {
			m, err := NewHealthMonitor(HealthConfig{Protocol: HealthTCP, Interval: time.Second, UnhealthyThreshold: 1})
			if err != nil {
				t.Fatal(err)
			}
			m.newProbe = func(addr netip.AddrPort) (prober, error) {
				return &scriptProber{script: []bool{addr != dead}, start: time.Now()}, nil
			}
			return m
		}
		var mu sync.Mutex
		healthy := true
		target := func(addr netip.AddrPort) []HealthTarget {
			return []HealthTarget{{ID: "a", Addr: addr, OnChange: func(h bool) {
				mu.Lock()
				healthy = h
				mu.Unlock()
			}}}
		}
		isHealthy := func() bool { mu.Lock(); defer mu.Unlock(); return healthy }

		m := newMonitor()
		if err := m.Sync(t.Context(), target(dead)); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if isHealthy() {
			t.Fatal("a at a dead address: healthy, want unhealthy")
		}
		// Same ID, new address that passes.
		if err := m.Sync(t.Context(), target(live)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if !isHealthy() {
			t.Error("a moved to a live address: still unhealthy")
		}
		// Back to the dead address, then a new monitor on a live one.
		if err := m.Sync(t.Context(), target(dead)); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		m.Close()
		if isHealthy() {
			t.Fatal("a back at the dead address: healthy, want unhealthy")
		}
		m2 := newMonitor()
		defer m2.Close()
		if err := m2.Sync(t.Context(), target(live)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if !isHealthy() {
			t.Error("a checked live by a new monitor: still unhealthy")
		}
	})
}
