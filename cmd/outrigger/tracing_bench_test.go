package main

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/outrigger-mesh/outrigger/proxy"
)

// BenchmarkTracingHTTPFastPath is the fast path with tracing off and with
// our tracer provider at 0% and 100% sampling, exporting through the span
// queue and our OTLP encoder to a client that marshals each request and
// sends it nowhere: what tracing costs a request on a warm core (bench B9
// measures it at 1000 req/s, on cold caches).
//
//	go test -run '^$' -bench 'BenchmarkTracingHTTPFastPath' -benchmem ./cmd/outrigger
func BenchmarkTracingHTTPFastPath(b *testing.B) {
	traced := func(ratio float64) proxy.Options {
		exp, err := newOTLPExporter(context.Background(), &marshalClient{})
		if err != nil {
			b.Fatal(err)
		}
		q := newSpanQueue(exp, defaultSpanQueueOptions, slog.New(slog.NewTextHandler(io.Discard, nil)))
		tp := newTracerProvider(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio)), resource.Default(), q)
		b.Cleanup(func() { tp.Shutdown(context.Background()) })
		return proxy.Options{TracerProvider: tp}
	}
	benchHTTPFastPath(b, []benchOptions{{"off", proxy.Options{}}, {"ratio0", traced(0)}, {"ratio100", traced(1)}})
}
