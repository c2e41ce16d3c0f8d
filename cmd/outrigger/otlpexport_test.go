package main

import (
	"cmp"
	"context"
	"errors"
	"math"
	"slices"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
)

// captureClient is an OTLP client that keeps each request as the receiver
// would decode it: marshalled and unmarshalled again.
type captureClient struct {
	got     []*tracepb.ResourceSpans
	err     error // returned by UploadTraces
	started bool
	stopped bool
}

func (c *captureClient) Start(context.Context) error { c.started = true; return nil }
func (c *captureClient) Stop(context.Context) error  { c.stopped = true; return nil }
func (c *captureClient) UploadTraces(_ context.Context, rs []*tracepb.ResourceSpans) error {
	b, err := proto.Marshal(&collectortrace.ExportTraceServiceRequest{ResourceSpans: rs})
	if err != nil {
		return err
	}
	var req collectortrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		return err
	}
	c.got = append(c.got, req.ResourceSpans...)
	return c.err
}

// variedSpans makes spans of every shape the encoder handles: all
// attribute types, events, links, remote and local parents, trace state,
// statuses, span kinds, dropped counts, two resources (one with a schema
// URL) and several scopes (one with no name at all), interleaved.
func variedSpans(t *testing.T) []sdktrace.ReadOnlySpan {
	t.Helper()
	var spans []sdktrace.ReadOnlySpan
	rec := &collectProcessor{out: &spans}
	res1 := resource.NewWithAttributes("https://opentelemetry.io/schemas/1.26.0",
		attribute.String("service.name", "outrigger"), attribute.Int("n", 7), attribute.Bool("on", true))
	res2 := resource.NewSchemaless(attribute.String("service.name", "other"))
	tp1 := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithResource(res1),
		sdktrace.WithRawSpanLimits(sdktrace.SpanLimits{AttributeCountLimit: 40, EventCountLimit: 2, LinkCountLimit: 1,
			AttributeValueLengthLimit: -1, AttributePerEventCountLimit: 2, AttributePerLinkCountLimit: 1}))
	tp2 := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithResource(res2))
	scoped := tp1.Tracer("scoped", trace.WithInstrumentationVersion("1.2.3"), trace.WithSchemaURL("https://example.com/s"),
		trace.WithInstrumentationAttributes(attribute.String("lib", "x"), attribute.Int64Slice("v", []int64{1, 2})))
	plain := tp1.Tracer("github.com/outrigger-mesh/outrigger/proxy")
	nameless := tp1.Tracer("")
	other := tp2.Tracer("other")

	ts, err := trace.ParseTraceState("vendor=a:b,x=y")
	if err != nil {
		t.Fatal(err)
	}
	remote := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, SpanID: trace.SpanID{9, 8, 7, 6, 5, 4, 3, 2},
		TraceFlags: trace.FlagsSampled, TraceState: ts, Remote: true,
	})
	linked := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0xff, 1}, SpanID: trace.SpanID{0xee, 2}, TraceFlags: trace.FlagsSampled,
	})
	all := []attribute.KeyValue{
		attribute.Bool("b", true), attribute.Bool("b0", false),
		attribute.Int("i", -42), attribute.Int64("i0", 0), attribute.Int64("imax", math.MaxInt64),
		attribute.Float64("f", 3.25), attribute.Float64("f0", 0), attribute.Float64("fneg", -1e300),
		attribute.String("s", "héllo"), attribute.String("s0", ""),
		attribute.String("long", string(make([]byte, 300))), // a length over one varint byte
		attribute.BoolSlice("bs", []bool{true, false}), attribute.IntSlice("is", []int{1, -1, 1 << 40}),
		attribute.Float64Slice("fs", []float64{0.5, 0}), attribute.StringSlice("ss", []string{"a", "", "c"}),
		attribute.StringSlice("empty", nil),
		attribute.ByteSlice("bytes", []byte{0, 1, 2}), attribute.ByteSlice("bytes0", nil),
		attribute.Slice("mixed", attribute.StringValue("x"), attribute.IntValue(3), attribute.Value{},
			attribute.SliceValue(attribute.BoolValue(true))),
		attribute.Map("m", attribute.String("k", "v"), attribute.Map("inner", attribute.Int("deep", 1))),
	}

	ctx := trace.ContextWithRemoteSpanContext(context.Background(), remote)
	sctx, server := plain.Start(ctx, "GET", trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(all...),
		trace.WithLinks(trace.Link{SpanContext: linked, Attributes: []attribute.KeyValue{attribute.String("why", "retry"), attribute.Int("dropped", 1)}},
			trace.Link{SpanContext: remote}))
	_, client := plain.Start(sctx, "GET", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("outrigger.endpoint", "k8s/web-1"), attribute.Int("outrigger.attempt", 1)))
	client.AddEvent("first", trace.WithTimestamp(time.Unix(1700000000, 5)), trace.WithAttributes(attribute.Int("a", 1), attribute.Int("b", 2), attribute.Int("c", 3)))
	client.AddEvent("second")
	client.AddEvent("third: dropped")
	client.SetStatus(codes.Error, "upstream reset")
	client.End()
	_, other1 := other.Start(context.Background(), "other", trace.WithSpanKind(trace.SpanKindProducer))
	other1.SetStatus(codes.Ok, "ignored for ok")
	other1.End()
	server.SetAttributes(attribute.Int("http.response.status_code", 200))
	server.End()
	for i, tr := range []trace.Tracer{scoped, nameless, plain, scoped} {
		kind := []trace.SpanKind{trace.SpanKindInternal, trace.SpanKindConsumer, trace.SpanKindUnspecified, trace.SpanKindServer}[i]
		_, s := tr.Start(sctx, "span", trace.WithSpanKind(kind), trace.WithTimestamp(time.Unix(0, 0)))
		s.End(trace.WithTimestamp(time.Unix(1, 0)))
	}
	_, other2 := other.Start(context.Background(), "", trace.WithNewRoot())
	other2.End()
	return spans
}

// sortResourceSpans orders resources by their service.name: the official
// exporter emits them in map order.
func sortResourceSpans(rss []*tracepb.ResourceSpans) {
	name := func(rs *tracepb.ResourceSpans) string {
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.Key == "service.name" {
				return kv.GetValue().GetStringValue()
			}
		}
		return ""
	}
	slices.SortFunc(rss, func(a, b *tracepb.ResourceSpans) int { return cmp.Compare(name(a), name(b)) })
}

// Our encoding, decoded, is field for field what the official exporter
// sends for the same spans.
func TestOTLPEncodingMatchesOfficial(t *testing.T) {
	spans := variedSpans(t)
	official := &captureClient{}
	if err := otlptrace.NewUnstarted(official).ExportSpans(context.Background(), spans); err != nil {
		t.Fatal(err)
	}
	ours := &captureClient{}
	exp, err := newOTLPExporter(context.Background(), ours)
	if err != nil {
		t.Fatal(err)
	}
	if !ours.started {
		t.Error("the client was not started")
	}
	// Twice: the second batch reuses every buffer and must come out the
	// same.
	for range 2 {
		ours.got = nil
		if err := exp.ExportSpans(context.Background(), spans); err != nil {
			t.Fatal(err)
		}
		sortResourceSpans(official.got)
		sortResourceSpans(ours.got)
		if len(ours.got) != 2 {
			t.Fatalf("%d ResourceSpans, want 2", len(ours.got))
		}
		if d := diffProto(official.got, ours.got); d != "" {
			t.Fatalf("ours differs from the official encoding (-official +ours):\n%s", d)
		}
	}
	// The shapes the test means to cover are there.
	n := 0
	for _, rs := range ours.got {
		for _, ss := range rs.ScopeSpans {
			n += len(ss.Spans)
		}
	}
	if n != len(spans) {
		t.Errorf("%d spans encoded, want %d", n, len(spans))
	}
	if err := exp.Shutdown(context.Background()); err != nil || !ours.stopped {
		t.Errorf("Shutdown: %v, client stopped %v", err, ours.stopped)
	}
}

// A batch of proxy-shaped spans, long enough that lengths take several
// varint bytes at every level, matches too; and an empty batch sends
// nothing.
func TestOTLPEncodingLargeBatch(t *testing.T) {
	official, ours, exp := exportBoth(t, benchSpans(1024))
	if d := diffProto(official.got, ours.got); d != "" {
		t.Fatalf("(-official +ours):\n%s", d)
	}
	ours.got = nil
	if err := exp.ExportSpans(context.Background(), nil); err != nil || ours.got != nil {
		t.Errorf("empty batch: err %v, sent %v", err, ours.got)
	}
}

// exportBoth exports spans through the official exporter and through
// ours, each into a captureClient, and returns both and our exporter.
func exportBoth(t *testing.T, spans []sdktrace.ReadOnlySpan) (official, ours *captureClient, exp *otlpExporter) {
	t.Helper()
	official, ours = &captureClient{}, &captureClient{}
	if err := otlptrace.NewUnstarted(official).ExportSpans(context.Background(), spans); err != nil {
		t.Fatal(err)
	}
	exp, err := newOTLPExporter(context.Background(), ours)
	if err != nil {
		t.Fatal(err)
	}
	if err := exp.ExportSpans(context.Background(), spans); err != nil {
		t.Fatal(err)
	}
	return official, ours, exp
}

// An upload error comes back to the span queue, which logs it.
func TestOTLPExportError(t *testing.T) {
	c := &captureClient{err: errors.New("collector unavailable")}
	exp, err := newOTLPExporter(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	err = exp.ExportSpans(context.Background(), benchSpans(2))
	if err == nil || !errors.Is(err, c.err) {
		t.Errorf("got %v, want the client's error wrapped", err)
	}
}

// diffProto is the protocmp diff of two ResourceSpans lists, "" when equal
// (proto.Equal first: the diff of a large batch takes seconds).
func diffProto(want, got []*tracepb.ResourceSpans) string {
	if slices.EqualFunc(want, got, func(a, b *tracepb.ResourceSpans) bool { return proto.Equal(a, b) }) {
		return ""
	}
	return gocmp.Diff(want, got, protocmp.Transform())
}
