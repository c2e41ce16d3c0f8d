package resilience

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func addrOf(ln net.Listener) netip.AddrPort { return ln.Addr().(*net.TCPAddr).AddrPort() }

func probe(t *testing.T, cfg HealthConfig, addr netip.AddrPort) prober {
	t.Helper()
	p, err := newProber(cfg.WithDefaults(), addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.close)
	return p
}

func check(p prober) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return p.check(ctx)
}

func TestTCPProbe(t *testing.T) {
	ln := listen(t)
	p := probe(t, HealthConfig{Protocol: HealthTCP}, addrOf(ln))
	if err := check(p); err != nil {
		t.Errorf("listening: %v", err)
	}
	ln.Close()
	if err := check(p); err == nil {
		t.Error("closed listener: check passed")
	}
}

func TestHTTPProbe(t *testing.T) {
	var status atomic.Int32
	status.Store(http.StatusNoContent)
	var gotHost, gotPath atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotHost.Store(r.Host)
		gotPath.Store(r.URL.Path)
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	addr := netip.MustParseAddrPort(srv.Listener.Addr().String())
	p := probe(t, HealthConfig{Protocol: HealthHTTP, Path: "/healthz", Host: "orders.shop", StatusMin: 200, StatusMax: 204}, addr)
	if err := check(p); err != nil {
		t.Errorf("204: %v", err)
	}
	if gotHost.Load() != "orders.shop" || gotPath.Load() != "/healthz" {
		t.Errorf("request Host %v path %v, want orders.shop /healthz", gotHost.Load(), gotPath.Load())
	}
	status.Store(http.StatusMovedPermanently)
	if err := check(p); err == nil || !strings.Contains(err.Error(), "status 301 outside 200-204") {
		t.Errorf("301 outside the range: err = %v", err)
	}
	status.Store(http.StatusServiceUnavailable)
	if err := check(p); err == nil {
		t.Error("503: check passed")
	}
	// Default Host: the endpoint's address.
	status.Store(http.StatusOK)
	if err := check(probe(t, HealthConfig{Protocol: HealthHTTP}, addr)); err != nil || gotHost.Load() != addr.String() || gotPath.Load() != "/" {
		t.Errorf("defaults: err %v, Host %v, path %v; want nil, %v, /", err, gotHost.Load(), gotPath.Load(), addr)
	}
	// Each check connects anew: a closed listener fails the next check
	// even though the server keeps earlier connections.
	srv.Listener.Close()
	if err := check(p); err == nil {
		t.Error("closed listener: check passed")
	}
}

func TestGRPCProbe(t *testing.T) {
	defer goleak.VerifyNone(t)
	ln := listen(t)
	srv := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	hs.SetServingStatus("orders", healthpb.HealthCheckResponse_SERVING)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	all := probe(t, HealthConfig{Protocol: HealthGRPC}, addrOf(ln))
	orders := probe(t, HealthConfig{Protocol: HealthGRPC, GRPCService: "orders"}, addrOf(ln))
	unknown := probe(t, HealthConfig{Protocol: HealthGRPC, GRPCService: "payments"}, addrOf(ln))
	if err := check(all); err != nil {
		t.Errorf("server: %v", err)
	}
	if err := check(orders); err != nil {
		t.Errorf("orders serving: %v", err)
	}
	if err := check(unknown); err == nil {
		t.Error("unknown service: check passed")
	}
	hs.SetServingStatus("orders", healthpb.HealthCheckResponse_NOT_SERVING)
	if err := check(orders); err == nil || !strings.Contains(err.Error(), "NOT_SERVING") {
		t.Errorf("orders not serving: err = %v", err)
	}
	srv.Stop()
	<-served
	if err := check(all); err == nil {
		t.Error("stopped server: check passed")
	}
	all.close()
	orders.close()
	unknown.close()
}

// TestHealthMonitorRealListener runs a monitor in real time against a real
// listener and waits (no sleeps, no time assertions) for it to report the
// endpoint unhealthy once the listener closes.
func TestHealthMonitorRealListener(t *testing.T) {
	defer goleak.VerifyNone(t)
	ln := listen(t)
	m, err := NewHealthMonitor(HealthConfig{Protocol: HealthTCP, Interval: 10 * time.Millisecond, UnhealthyThreshold: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	changes := make(chan bool, 10)
	if err := m.Sync(t.Context(), []HealthTarget{{ID: "a", Addr: addrOf(ln), OnChange: func(h bool) { changes <- h }}}); err != nil {
		t.Fatal(err)
	}
	if h := <-changes; !h {
		t.Error("Sync's report of the new checker: unhealthy, want healthy")
	}
	ln.Close()
	if h := <-changes; h {
		t.Error("first change after the listener closed: healthy, want unhealthy")
	}
	ln2, err := net.Listen("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("cannot listen on %v again (Go sets SO_REUSEADDR, so only another process taking the port can cause this): %v", ln.Addr(), err)
	}
	defer ln2.Close()
	if h := <-changes; !h {
		t.Error("change after listening again: unhealthy, want healthy")
	}
}
