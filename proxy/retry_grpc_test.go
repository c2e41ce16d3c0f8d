package proxy

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/outrigger-mesh/outrigger/proxy/route"
	"github.com/outrigger-mesh/outrigger/resilience"
)

// flakyGRPC is a grpc-go server whose one method, /outrigger.test.Flaky/Call,
// answers UNAVAILABLE when down (with headers first when inTrailers, so
// the status comes in trailers; else trailers-only) and echoes otherwise.
type flakyGRPC struct {
	addr  netip.AddrPort
	calls atomic.Int64
}

func startFlakyGRPC(t *testing.T, down, inTrailers bool) *flakyGRPC {
	t.Helper()
	b := &flakyGRPC{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.addr = netip.MustParseAddrPort(ln.Addr().String())
	desc := grpc.ServiceDesc{
		ServiceName: "outrigger.test.Flaky",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{unaryHandler("Call", func(ctx context.Context, in []byte) (any, error) {
			b.calls.Add(1)
			if !down {
				return in, nil
			}
			if inTrailers {
				grpc.SendHeader(ctx, metadata.Pairs("x-flaky", "yes"))
			}
			return nil, status.Error(codes.Unavailable, "flaky is down")
		})},
	}
	srv := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}))
	srv.RegisterService(&desc, struct{}{})
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-served
	})
	return b
}

// A gRPC call that ends UNAVAILABLE, in trailers or trailers-only, is
// retried on another endpoint when the policy lists unavailable and the
// call may be sent again: gRPC calls are POSTs, so its route is marked
// idempotent (or the call carries idempotency-key metadata). The client
// sees the call succeed.
func TestRetryGRPCUnavailable(t *testing.T) {
	for _, tc := range []struct {
		name       string
		inTrailers bool
	}{{"trailers-only", false}, {"in trailers", true}} {
		t.Run(tc.name, func(t *testing.T) {
			down, upb := startFlakyGRPC(t, true, tc.inTrailers), startFlakyGRPC(t, false, false)
			up := newFakeUpstream(t, down.addr, upb.addr)
			r := newRetry(t, resilience.RetryConfig{Attempts: 2, On: []string{"unavailable"}}, resilience.BudgetConfig{})
			tab := mustTable(t, route.RouteConfig{Backends: []route.Backend{{Service: "grpc.shop"}}, Idempotent: true})
			p := startGRPCProxy(t, HTTPConfig{}, tab, Upstreams{"grpc.shop": WithRetry(up, r, nil)})
			cc := dialGRPC(t, p.addr, nil)
			for i := range 4 {
				up.rewind() // the failing backend first
				var out []byte
				if err := cc.Invoke(callCtx(t), "/outrigger.test.Flaky/Call", []byte("hi"), &out); err != nil || string(out) != "hi" {
					t.Fatalf("call %d: %q, %v; want the echo after a retry", i, out, err)
				}
			}
			if down.calls.Load() != 4 || upb.calls.Load() != 4 {
				t.Errorf("down got %d calls, up %d; want 4 each", down.calls.Load(), upb.calls.Load())
			}
			dones := assertDonesMatchPicks(t, up)
			for _, d := range dones {
				if o := resilience.OutcomeOf(d.info.Outcome, d.info.Err); d.addr == down.addr && (!o.GRPC || o.GRPCStatus != resilience.GRPCUnavailable) {
					t.Errorf("Done of the down backend: %+v, want UNAVAILABLE", d.info)
				}
			}
		})
	}
	// Not retried: a route not marked idempotent without the metadata,
	// or a policy without unavailable; with the metadata it is.
	for _, tc := range []struct {
		name    string
		on      string
		md      []string
		retried bool
	}{
		{"not idempotent", "unavailable", nil, false},
		{"idempotency-key metadata", "unavailable", []string{"idempotency-key", "k-1"}, true},
		{"not listed", "503", []string{"idempotency-key", "k-1"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			down, upb := startFlakyGRPC(t, true, false), startFlakyGRPC(t, false, false)
			up := newFakeUpstream(t, down.addr, upb.addr)
			r := newRetry(t, resilience.RetryConfig{Attempts: 2, On: []string{tc.on}}, resilience.BudgetConfig{})
			p := startGRPCProxy(t, HTTPConfig{}, routeAll(t, "grpc.shop"), Upstreams{"grpc.shop": WithRetry(up, r, nil)})
			ctx := metadata.AppendToOutgoingContext(callCtx(t), tc.md...)
			var out []byte
			err := dialGRPC(t, p.addr, nil).Invoke(ctx, "/outrigger.test.Flaky/Call", []byte("hi"), &out)
			if got := upb.calls.Load() == 1 && err == nil; got != tc.retried || (!tc.retried && status.Code(err) != codes.Unavailable) {
				t.Errorf("call: %v (up got %d calls); want retried %v", err, upb.calls.Load(), tc.retried)
			}
		})
	}
}
