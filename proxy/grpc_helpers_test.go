package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/outrigger-mesh/outrigger/proxy/route"
)

// rawCodec passes []byte messages through as they are, so that the test
// service needs no generated code, and marshals protobuf messages (the
// health service) as the default codec does. Its name is "proto" so that
// Content-Type stays application/grpc.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) ([]byte, error) {
	switch v := v.(type) {
	case []byte:
		return v, nil
	case *[]byte:
		return *v, nil
	case proto.Message:
		return proto.Marshal(v)
	}
	return nil, fmt.Errorf("rawCodec: cannot marshal %T", v)
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	switch v := v.(type) {
	case *[]byte:
		*v = append([]byte(nil), data...) // grpc reuses data
		return nil
	case proto.Message:
		return proto.Unmarshal(data, v)
	}
	return fmt.Errorf("rawCodec: cannot unmarshal into %T", v)
}

// The test service, outrigger.test.Test, registered by hand:
//
//   - Echo (unary) answers its request.
//   - Fail (unary) fails with NOT_FOUND, a non-ASCII message and the
//     trailer x-detail: shelf-7 (a trailers-only response).
//   - Block (unary) waits until the call ends.
//   - Stream (server streaming) sends "one" and "two", then fails with
//     ABORTED and the trailer x-count: 2 (status after data).
//   - Sum (client streaming) answers the concatenation of what it received,
//     with the trailer x-count.
//   - Chat (bidirectional) answers every message with "echo:" and it.
const failMessage = "no widget 42: ünïcode 100%"

func unaryHandler(name string, h func(ctx context.Context, in []byte) (any, error)) grpc.MethodDesc {
	return grpc.MethodDesc{
		MethodName: name,
		Handler: func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
			var in []byte
			if err := dec(&in); err != nil {
				return nil, err
			}
			if icpt == nil {
				return h(ctx, in)
			}
			info := &grpc.UnaryServerInfo{Server: srv, FullMethod: "/outrigger.test.Test/" + name}
			return icpt(ctx, in, info, func(ctx context.Context, req any) (any, error) { return h(ctx, req.([]byte)) })
		},
	}
}

var testServiceDesc = grpc.ServiceDesc{
	ServiceName: "outrigger.test.Test",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		unaryHandler("Echo", func(_ context.Context, in []byte) (any, error) { return in, nil }),
		unaryHandler("Fail", func(ctx context.Context, _ []byte) (any, error) {
			grpc.SetTrailer(ctx, metadata.Pairs("x-detail", "shelf-7"))
			return nil, status.Error(codes.NotFound, failMessage)
		}),
		unaryHandler("Block", func(ctx context.Context, _ []byte) (any, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}),
	},
	Streams: []grpc.StreamDesc{
		{StreamName: "Stream", ServerStreams: true, Handler: func(_ any, s grpc.ServerStream) error {
			var in []byte
			if err := s.RecvMsg(&in); err != nil {
				return err
			}
			for _, m := range []string{"one", "two"} {
				if err := s.SendMsg([]byte(m)); err != nil {
					return err
				}
			}
			s.SetTrailer(metadata.Pairs("x-count", "2"))
			return status.Error(codes.Aborted, "stopped after two")
		}},
		{StreamName: "Sum", ClientStreams: true, Handler: func(_ any, s grpc.ServerStream) error {
			var all []byte
			n := 0
			for {
				var in []byte
				err := s.RecvMsg(&in)
				if err == io.EOF {
					break
				}
				if err != nil {
					return err
				}
				all = append(all, in...)
				n++
			}
			s.SetTrailer(metadata.Pairs("x-count", fmt.Sprint(n)))
			return s.SendMsg(all)
		}},
		{StreamName: "Chat", ServerStreams: true, ClientStreams: true, Handler: func(_ any, s grpc.ServerStream) error {
			for {
				var in []byte
				err := s.RecvMsg(&in)
				if err == io.EOF {
					return nil
				}
				if err != nil {
					return err
				}
				if err := s.SendMsg(append([]byte("echo:"), in...)); err != nil {
					return err
				}
			}
		}},
	},
}

// grpcBackend is a real grpc-go server on loopback with the health service
// and the test service. It counts the connections it accepted and the
// calls it served, and names itself in the x-backend response header.
type grpcBackend struct {
	name   string
	addr   netip.AddrPort
	health *health.Server
	conns  atomic.Int64
	calls  atomic.Int64
}

func startGRPCBackend(t testing.TB, name string) *grpcBackend {
	t.Helper()
	b := &grpcBackend{name: name, health: health.NewServer()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.addr = netip.MustParseAddrPort(ln.Addr().String())
	srv := grpc.NewServer(
		grpc.ForceServerCodec(rawCodec{}),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			b.calls.Add(1)
			grpc.SetHeader(ctx, metadata.Pairs("x-backend", name))
			return h(ctx, req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			b.calls.Add(1)
			ss.SetHeader(metadata.Pairs("x-backend", name))
			return h(srv, ss)
		}),
	)
	healthpb.RegisterHealthServer(srv, b.health)
	srv.RegisterService(&testServiceDesc, struct{}{})
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(countingListener{ln, &b.conns})
	}()
	t.Cleanup(func() {
		b.health.Shutdown()
		srv.Stop()
		<-served
	})
	return b
}

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// startGRPCProxy runs a gRPC listener (GRPC set, so h2c upstream) routing
// everything to service "grpc.shop" on up, unless routes is given.
func startGRPCProxy(t *testing.T, cfg HTTPConfig, routes *route.Table, ups Upstreams) *testProxy {
	t.Helper()
	cfg.GRPC = true
	return startHTTPProxy(t, cfg, routes, ups, ServerConfig{})
}

// dialGRPC is a grpc-go client connection to addr (insecure, the raw codec
// by default) that counts the TCP connections it dialed; Cleanup closes
// it.
func dialGRPC(t *testing.T, addr string, dials *atomic.Int64) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			if dials != nil {
				dials.Add(1)
			}
			var d net.Dialer
			return d.DialContext(ctx, "tcp", a)
		}),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// callCtx bounds one test call so that a broken proxy fails the test
// instead of hanging it.
func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	t.Cleanup(cancel)
	return ctx
}
