package main

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// benchSpans makes n spans shaped as the proxy's: alternately a server
// span and a client span with their attributes.
func benchSpans(n int) []sdktrace.ReadOnlySpan {
	var spans []sdktrace.ReadOnlySpan
	rec := &collectProcessor{out: &spans}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tr := tp.Tracer("github.com/outrigger-mesh/outrigger/proxy")
	for range n / 2 {
		ctx, s := tr.Start(context.Background(), "GET", trace.WithSpanKind(trace.SpanKindServer))
		s.SetAttributes(semconv.HTTPRequestMethodKey.String("GET"), semconv.URLPath("/api/items"), semconv.URLScheme("http"),
			semconv.NetworkProtocolVersion("1.1"), attribute.String("outrigger.listener", "web"),
			semconv.ServerAddress("web.shop"), semconv.ServerPort(80), semconv.ClientAddress("10.0.0.7"),
			semconv.NetworkPeerAddress("10.0.0.7"), semconv.NetworkPeerPort(50312), semconv.HTTPResponseStatusCode(200),
			attribute.String("outrigger.route", "api"), attribute.String("outrigger.service", "web.shop"), attribute.Int("outrigger.attempts", 1))
		_, c := tr.Start(ctx, "GET", trace.WithSpanKind(trace.SpanKindClient))
		c.SetAttributes(semconv.HTTPRequestMethodKey.String("GET"), semconv.ServerAddress("10.0.1.4"), semconv.ServerPort(8080),
			semconv.NetworkPeerAddress("10.0.1.4"), semconv.NetworkPeerPort(8080), attribute.String("outrigger.route", "api"),
			attribute.String("outrigger.service", "web.shop"), attribute.String("outrigger.endpoint", "k8s/web-7d9c-1"),
			attribute.Int("outrigger.attempt", 1), semconv.HTTPResponseStatusCode(200))
		c.End()
		s.End()
	}
	return spans
}

type collectProcessor struct{ out *[]sdktrace.ReadOnlySpan }

func (p *collectProcessor) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (p *collectProcessor) OnEnd(s sdktrace.ReadOnlySpan)                   { *p.out = append(*p.out, s) }
func (p *collectProcessor) Shutdown(context.Context) error                  { return nil }
func (p *collectProcessor) ForceFlush(context.Context) error                { return nil }

// BenchmarkOTLPExport is the exporter's cost per span, ours and the
// official one: batches of 512 proxy-shaped spans made into an OTLP
// request and marshalled, as the gRPC and HTTP clients do before they send.
func BenchmarkOTLPExport(b *testing.B) {
	b.Run("ours", func(b *testing.B) { benchOTLPExport(b, false) })
	b.Run("official", func(b *testing.B) { benchOTLPExport(b, true) })
}

func benchOTLPExport(b *testing.B, official bool) {
	spans := benchSpans(512)
	var client otlptrace.Client = &marshalClient{}
	var err error
	var exp sdktrace.SpanExporter
	if official {
		exp = otlptrace.NewUnstarted(client)
		err = exp.(*otlptrace.Exporter).Start(context.Background())
	} else {
		exp, err = newOTLPExporter(context.Background(), client)
	}
	if err != nil {
		b.Fatal(err)
	}
	defer exp.Shutdown(context.Background())
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := exp.ExportSpans(context.Background(), spans); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(spans)), "ns/span")
}

// marshalClient is an OTLP client that marshals each request, as the real
// clients do, and sends it nowhere.
type marshalClient struct{ buf []byte }

func (c *marshalClient) Start(context.Context) error { return nil }
func (c *marshalClient) Stop(context.Context) error  { return nil }
func (c *marshalClient) UploadTraces(_ context.Context, rs []*tracepb.ResourceSpans) error {
	var err error
	c.buf, err = proto.MarshalOptions{}.MarshalAppend(c.buf[:0], &collectortrace.ExportTraceServiceRequest{ResourceSpans: rs})
	return err
}
