// Command otlpsink is an OTLP/gRPC trace receiver that counts spans and
// discards them, for measuring what tracing costs a proxy (bench/abpair.sh;
// benchrun runs the same sink in its own process). It serves until killed.
//
//	go run ./bench/cmd/otlpsink -listen 127.0.0.1:18296
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
)

type sink struct {
	collectortrace.UnimplementedTraceServiceServer
	spans atomic.Int64
}

func (s *sink) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	var n int64
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			n += int64(len(ss.Spans))
		}
	}
	s.spans.Add(n)
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func main() {
	listen := flag.String("listen", "127.0.0.1:18296", "address to serve OTLP/gRPC on")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "otlpsink:", err)
		os.Exit(1)
	}
	s := &sink{}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, s)
	go func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGTERM, os.Interrupt)
		<-ch
		srv.Stop()
	}()
	srv.Serve(ln)
	fmt.Fprintf(os.Stderr, "otlpsink: %d spans received\n", s.spans.Load())
}
