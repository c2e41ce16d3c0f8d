package resilience

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// newProber builds the prober of cfg.Protocol for one endpoint; cfg has its
// defaults applied.
func newProber(cfg HealthConfig, addr netip.AddrPort) (prober, error) {
	switch cfg.Protocol {
	case HealthTCP:
		return tcpProber{addr: addr.String()}, nil
	case HealthHTTP:
		return newHTTPProber(cfg, addr), nil
	case HealthGRPC:
		return newGRPCProber(cfg, addr)
	}
	return nil, fmt.Errorf("unknown health check protocol %q", cfg.Protocol)
}

// tcpProber passes when a TCP connection to the endpoint is established.
type tcpProber struct{ addr string }

func (p tcpProber) check(ctx context.Context) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return err
	}
	return c.Close()
}

func (tcpProber) close() {}

// httpProber passes when GET path answers with a status in range. Every
// check opens a new connection: a kept-alive one would outlive a closed
// listener and report a dead endpoint healthy.
type httpProber struct {
	client   *http.Client
	url      string
	host     string
	min, max int
}

func newHTTPProber(cfg HealthConfig, addr netip.AddrPort) *httpProber {
	tr := &http.Transport{DisableKeepAlives: true, Proxy: nil}
	return &httpProber{
		client: &http.Client{
			Transport: tr,
			// A redirect is an answer; the status range decides.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		url:  "http://" + addr.String() + cfg.Path,
		host: cfg.Host,
		min:  cfg.StatusMin,
		max:  cfg.StatusMax,
	}
}

func (p *httpProber) check(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return err
	}
	if p.host != "" {
		req.Host = p.host
	}
	req.Header.Set("User-Agent", "outrigger-health-check")
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if resp.StatusCode < p.min || resp.StatusCode > p.max {
		return fmt.Errorf("health check: status %d outside %d-%d", resp.StatusCode, p.min, p.max)
	}
	return nil
}

func (p *httpProber) close() { p.client.CloseIdleConnections() }

// grpcProber asks grpc.health.v1 Check over a connection kept for the
// checker's life; its reconnect backoff is capped at the check interval so
// that a recovered endpoint is seen within about one interval.
type grpcProber struct {
	conn    *grpc.ClientConn
	client  healthpb.HealthClient
	service string
}

func newGRPCProber(cfg HealthConfig, addr netip.AddrPort) (*grpcProber, error) {
	bc := backoff.DefaultConfig
	bc.BaseDelay = min(bc.BaseDelay, cfg.Interval)
	bc.MaxDelay = cfg.Interval
	conn, err := grpc.NewClient("passthrough:///"+addr.String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bc, MinConnectTimeout: cfg.Timeout}),
		grpc.WithUserAgent("outrigger-health-check"))
	if err != nil {
		return nil, err
	}
	return &grpcProber{conn: conn, client: healthpb.NewHealthClient(conn), service: cfg.GRPCService}, nil
}

func (p *grpcProber) check(ctx context.Context) error {
	resp, err := p.client.Check(ctx, &healthpb.HealthCheckRequest{Service: p.service})
	if err != nil {
		return err
	}
	if s := resp.GetStatus(); s != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("health check: grpc status %v", s)
	}
	return nil
}

func (p *grpcProber) close() { p.conn.Close() }
