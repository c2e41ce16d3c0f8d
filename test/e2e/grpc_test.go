package e2e

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// gRPC through the demo's grpc listener: one client connection, calls
// balanced per call over both backends, a server stream, and a proxy-made
// error the gRPC way.
func TestDemoGRPC(t *testing.T) {
	startOutrigger(t, demo(t))
	cc, err := grpc.NewClient("127.0.0.1:9090", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := healthpb.NewHealthClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()

	seen := map[string]int{}
	for range 20 {
		var hdr metadata.MD
		resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&hdr))
		if err != nil {
			t.Fatalf("Check through the proxy: %v", err)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("status %v", resp.GetStatus())
		}
		for _, n := range hdr.Get("x-echo-name") {
			seen[n]++
		}
	}
	if len(seen) != 2 || seen["grpc-1"] == 0 || seen["grpc-2"] == 0 {
		t.Errorf("20 calls on one client connection reached %v; want both grpc-1 and grpc-2", seen)
	}

	stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := stream.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch first message: %v, %v", resp, err)
	}

	// The echo backends serve only the health service: an unknown method is
	// the backend's Unimplemented, carried back intact with its message.
	err = cc.Invoke(ctx, "/demo.Nope/Missing", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("unknown method: %v, want Unimplemented", err)
	}
}
