package main

import (
	"context"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
)

// serveGRPC serves the standard gRPC health service (grpc.health.v1) over
// cleartext HTTP/2, answering SERVING for every service name, and names
// itself in an "x-echo-name" response header on every call, so a client
// can see which backend answered.
func serveGRPC(ctx context.Context, ln net.Listener, name string) error {
	named := func(ctx context.Context) {
		served.Add(1)
		grpc.SetHeader(ctx, metadata.Pairs("x-echo-name", name))
	}
	srv := grpc.NewServer(
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			named(ctx)
			return h(ctx, req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			named(ss.Context())
			return h(srv, ss)
		}),
	)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() {
		<-ctx.Done()
		srv.GracefulStop()
	}()
	if err := srv.Serve(ln); err != nil && err != grpc.ErrServerStopped {
		return err
	}
	return nil
}
