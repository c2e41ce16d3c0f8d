package main

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
)

// portOTLP is where the OTLP sink listens for B9's tracing targets.
const portOTLP = 18295

// otlpSink is the OTLP trace receiver that B9's tracing targets export to:
// the collector's gRPC trace service, counting spans and discarding them,
// so that the exporter does its whole job (batch, encode, send) and the
// measured cost is Outrigger's alone, not a collector's. It runs in
// benchrun's own process, whose CPU is not counted as the proxy's.
type otlpSink struct {
	collectortrace.UnimplementedTraceServiceServer
	spans atomic.Int64
}

func (s *otlpSink) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	var n int64
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			n += int64(len(ss.Spans))
		}
	}
	s.spans.Add(n)
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// otlp starts the sink on first use and returns it; it serves until
// benchrun exits.
func (h *harness) otlp() (*otlpSink, error) {
	if h.sink != nil {
		return h.sink, nil
	}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", portOTLP))
	if err != nil {
		return nil, fmt.Errorf("otlp sink: %w", err)
	}
	h.sink = &otlpSink{}
	s := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(s, h.sink)
	go s.Serve(ln)
	return h.sink, nil
}
