// Package otlpsink is the OTLP trace receiver the benchmarks export to:
// the collector's gRPC trace service, counting spans and discarding them,
// so that a proxy's exporter does its whole job (batch, encode, send) and
// what is measured is the proxy's cost alone, not a collector's. benchrun
// serves it in its own process, bench/cmd/otlpsink as a program of its
// own (for bench/abpair.sh). Export may be called concurrently.
package otlpsink

import (
	"context"
	"net"
	"sync/atomic"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
)

// Sink counts the spans it receives.
type Sink struct {
	collectortrace.UnimplementedTraceServiceServer // the service's other methods (none today) answer Unimplemented
	spans                                          atomic.Int64
}

// Export counts req's spans and drops them.
func (s *Sink) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	var n int64
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			n += int64(len(ss.Spans))
		}
	}
	s.spans.Add(n)
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// Spans is how many spans have arrived.
func (s *Sink) Spans() int64 { return s.spans.Load() }

// Start serves a new sink on ln until the returned server is stopped.
func Start(ln net.Listener) (*Sink, *grpc.Server) {
	s := &Sink{}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, s)
	go srv.Serve(ln)
	return s, srv
}
