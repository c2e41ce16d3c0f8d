package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/outrigger-mesh/outrigger/proxy"
	"github.com/outrigger-mesh/outrigger/proxy/route"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// ourProvider is a tracerProvider exporting to an in-memory exporter
// through a span queue; flush exports what has ended.
func ourProvider(t testing.TB, s sdktrace.Sampler, res *resource.Resource) (*tracerProvider, func() []sdktrace.ReadOnlySpan) {
	exp := &collectExporter{}
	q := newSpanQueue(exp, defaultSpanQueueOptions, slog.New(slog.NewTextHandler(io.Discard, nil)))
	tp := newTracerProvider(s, res, q)
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	return tp, func() []sdktrace.ReadOnlySpan {
		if err := tp.ForceFlush(context.Background()); err != nil {
			t.Fatal(err)
		}
		exp.mu.Lock()
		defer exp.mu.Unlock()
		out := exp.spans
		exp.spans = nil
		return out
	}
}

// collectExporter keeps the spans it is given.
type collectExporter struct {
	mu    sync.Mutex
	spans []sdktrace.ReadOnlySpan
}

func (e *collectExporter) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.spans = append(e.spans, spans...)
	return nil
}

func (e *collectExporter) Shutdown(context.Context) error { return nil }

// sdkProvider is the SDK's TracerProvider with the same sampler and
// resource, its ended spans collected.
func sdkProvider(t testing.TB, s sdktrace.Sampler, res *resource.Resource) (trace.TracerProvider, func() []sdktrace.ReadOnlySpan) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(s), sdktrace.WithResource(res), sdktrace.WithSyncer(exp))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	return tp, func() []sdktrace.ReadOnlySpan {
		out := exp.GetSpans().Snapshots()
		exp.Reset()
		return out
	}
}

// spanScript makes spans of every shape the proxy's and the API's calls
// can: attributes set at start and later, duplicate keys, invalid ones,
// more than the limit; status sequences; events, errors, links; renames;
// children; calls after End; explicit times.
func spanScript(tp trace.TracerProvider) {
	at := func(s int) time.Time { return time.Unix(1700000000+int64(s), 0) }
	remote := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, SpanID: trace.SpanID{9, 8, 7, 6, 5, 4, 3, 2},
		TraceFlags: trace.FlagsSampled, Remote: true,
	})
	tr := tp.Tracer("github.com/outrigger-mesh/outrigger/proxy", trace.WithInstrumentationVersion("v1"),
		trace.WithInstrumentationAttributes(attribute.String("outrigger.listener", "web")))
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), remote)

	sctx, server := tr.Start(ctx, "GET", trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(at(0)),
		trace.WithAttributes(attribute.String("http.request.method", "GET"), attribute.String("url.path", "/a")),
		trace.WithLinks(trace.Link{SpanContext: remote, Attributes: []attribute.KeyValue{attribute.Int("n", 1)}},
			trace.Link{})) // the empty link is no link
	_, c1 := tr.Start(sctx, "GET", trace.WithSpanKind(trace.SpanKindClient), trace.WithTimestamp(at(1)))
	c1.SetAttributes(attribute.Int("outrigger.attempt", 1), attribute.String("outrigger.endpoint", "k8s/a"))
	c1.SetStatus(codes.Error, "reset")
	c1.SetStatus(codes.Unset, "ignored")
	c1.RecordError(errors.New("connection reset"), trace.WithTimestamp(at(2)))
	c1.RecordError(nil)
	c1.End(trace.WithTimestamp(at(2)))
	c1.SetAttributes(attribute.String("after", "end")) // ignored
	c1.SetStatus(codes.Ok, "")
	c1.AddEvent("after end", trace.WithTimestamp(at(3)))
	c1.End(trace.WithTimestamp(at(9)))

	_, c2 := tr.Start(sctx, "GET", trace.WithSpanKind(trace.SpanKindClient), trace.WithTimestamp(at(3)))
	c2.SetAttributes(attribute.Int("outrigger.attempt", 2), attribute.Int("outrigger.attempt", 3), attribute.KeyValue{}, attribute.String("", "x"))
	c2.SetStatus(codes.Ok, "description dropped with ok")
	c2.SetStatus(codes.Error, "an error after ok is ignored")
	c2.SetName("GET renamed")
	c2.End(trace.WithTimestamp(at(4)))

	server.SetAttributes(attribute.Int("http.response.status_code", 200), attribute.String("url.path", "/a/b"))
	many := make([]attribute.KeyValue, 0, 140)
	for i := range 140 {
		many = append(many, attribute.Int(fmt.Sprintf("k%03d", i), i))
	}
	server.SetAttributes(many...)
	server.SetAttributes(attribute.String("k000", "updated at the limit"), attribute.String("new", "dropped at the limit"))
	for i := range 130 {
		server.AddEvent(fmt.Sprintf("e%d", i), trace.WithTimestamp(at(5)), trace.WithAttributes(many...))
	}
	for i := range 130 {
		server.AddLink(trace.Link{SpanContext: remote, Attributes: []attribute.KeyValue{attribute.Int("i", i)}})
	}
	server.End(trace.WithTimestamp(at(6)))

	// A root, a span under a local parent that is not sampled, a new root
	// under a parent.
	_, root := tp.Tracer("").Start(context.Background(), "root", trace.WithTimestamp(at(7)))
	root.End(trace.WithTimestamp(at(8)))
	_, nr := tr.Start(sctx, "new root", trace.WithNewRoot(), trace.WithTimestamp(at(7)))
	nr.End(trace.WithTimestamp(at(8)))
}

// exported is what the test compares of a span: all but its own IDs
// (random), which become the order they were seen in.
type exported struct {
	Name                      string
	Kind                      trace.SpanKind
	Trace, ID, Parent         int
	RemoteParent, Sampled     bool
	Start, End                time.Time
	Attrs                     []attribute.KeyValue
	Events                    []sdktrace.Event
	Links                     []sdktrace.Link
	Status                    sdktrace.Status
	Scope                     instrumentation.Scope
	Resource                  string
	DropAttrs, DropEv, DropLn int
	Children                  int
}

func normalize(spans []sdktrace.ReadOnlySpan) []exported {
	traces, ids := map[trace.TraceID]int{}, map[trace.SpanID]int{}
	num := func(m map[trace.SpanID]int, id trace.SpanID) int {
		if !id.IsValid() {
			return 0
		}
		if _, ok := m[id]; !ok {
			m[id] = len(m) + 1
		}
		return m[id]
	}
	var out []exported
	for _, s := range spans {
		if _, ok := traces[s.SpanContext().TraceID()]; !ok {
			traces[s.SpanContext().TraceID()] = len(traces) + 1
		}
		out = append(out, exported{
			Name: s.Name(), Kind: s.SpanKind(), Trace: traces[s.SpanContext().TraceID()],
			ID: num(ids, s.SpanContext().SpanID()), Parent: num(ids, s.Parent().SpanID()),
			RemoteParent: s.Parent().IsRemote(), Sampled: s.SpanContext().IsSampled(),
			Start: s.StartTime(), End: s.EndTime(), Attrs: s.Attributes(), Events: s.Events(), Links: s.Links(),
			Status: s.Status(), Scope: s.InstrumentationScope(), Resource: s.Resource().String(),
			DropAttrs: s.DroppedAttributes(), DropEv: s.DroppedEvents(), DropLn: s.DroppedLinks(), Children: s.ChildSpanCount(),
		})
	}
	return out
}

// The same calls on our tracer and on the SDK's export the same spans.
func TestTracerMatchesSDK(t *testing.T) {
	res := resource.NewSchemaless(attribute.String("service.name", "outrigger"))
	sampler := sdktrace.ParentBased(sdktrace.AlwaysSample())
	sdk, sdkSpans := sdkProvider(t, sampler, res)
	ours, ourSpans := ourProvider(t, sampler, res)
	spanScript(sdk)
	spanScript(ours)
	want, got := normalize(sdkSpans()), normalize(ourSpans())
	if len(want) != 5 {
		t.Fatalf("the SDK exported %d spans, want 5", len(want))
	}
	opts := gocmp.Options{gocmp.Comparer(func(a, b attribute.Value) bool { return a.Emit() == b.Emit() && a.Type() == b.Type() }),
		gocmp.Comparer(func(a, b attribute.Set) bool { return a.Equals(&b) }),
		gocmp.Comparer(func(a, b trace.SpanContext) bool { return a.Equal(b) })}
	if d := gocmp.Diff(want, got, opts); d != "" {
		t.Errorf("ours differs from the SDK's (-sdk +ours):\n%s", d)
	}
}

// Sampling: for every sampler the proxy can be given and every kind of
// parent, our tracer's decision (recording, sampled flag, trace state) is
// the sampler's own for the trace ID it made, which with a parent is the
// parent's; for the SDK's standard samplers Start does not ask the
// sampler (samplePlan), and this checks it answers the same.
func TestTracerSamplingMatchesSDK(t *testing.T) {
	ts, err := trace.ParseTraceState("vendor=x")
	if err != nil {
		t.Fatal(err)
	}
	parent := func(sampled, remote bool) trace.SpanContext {
		cfg := trace.SpanContextConfig{TraceID: trace.TraceID{0xab, 1}, SpanID: trace.SpanID{0xcd, 1}, TraceState: ts, Remote: remote}
		if sampled {
			cfg.TraceFlags = trace.FlagsSampled
		}
		return trace.NewSpanContext(cfg)
	}
	parents := map[string]trace.SpanContext{
		"none": {}, "remote sampled": parent(true, true), "remote not sampled": parent(false, true),
		"local sampled": parent(true, false), "local not sampled": parent(false, false),
	}
	for _, tc := range []struct {
		s     sdktrace.Sampler
		known bool // planned, not asked
	}{
		{sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0)), true},
		{sdktrace.ParentBased(sdktrace.TraceIDRatioBased(1)), true},
		{sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.5)), true},
		{sdktrace.ParentBased(sdktrace.TraceIDRatioBased(1.0 / 3)), true},
		{sdktrace.ParentBased(sdktrace.AlwaysSample()), true},
		{sdktrace.ParentBased(sdktrace.NeverSample()), true},
		{sdktrace.AlwaysSample(), true},
		{sdktrace.NeverSample(), true},
		{sdktrace.TraceIDRatioBased(0.5), true},
		{sdktrace.TraceIDRatioBased(1e-300), true},
		{sdktrace.ParentBased(sdktrace.AlwaysSample(), sdktrace.WithRemoteParentNotSampled(sdktrace.AlwaysSample())), false},
		{sdktrace.ParentBased(sdktrace.ParentBased(sdktrace.AlwaysSample())), false},
	} {
		ours, _ := ourProvider(t, tc.s, resource.Empty())
		if ours.plan.known != tc.known {
			t.Errorf("%s: planned %v, want %v", tc.s.Description(), ours.plan.known, tc.known)
		}
		for name, p := range parents {
			ctx := trace.ContextWithSpanContext(context.Background(), p)
			seen := map[bool]int{}
			for range 64 { // the ratio samplers, without a parent: both ways
				_, sp := ours.Tracer("t").Start(ctx, "s")
				sc := sp.SpanContext()
				want := tc.s.ShouldSample(sdktrace.SamplingParameters{ParentContext: ctx, TraceID: sc.TraceID(), Name: "s"})
				if sp.IsRecording() != (want.Decision != sdktrace.Drop) || sc.IsSampled() != (want.Decision == sdktrace.RecordAndSample) ||
					sc.TraceState().String() != want.Tracestate.String() {
					t.Fatalf("%s, parent %s: recording %v sampled %v state %q; the sampler says %v, state %q",
						tc.s.Description(), name, sp.IsRecording(), sc.IsSampled(), sc.TraceState(), want.Decision, want.Tracestate)
				}
				if !sc.IsValid() || sc.SpanID() == p.SpanID() || p.IsValid() && sc.TraceID() != p.TraceID() {
					t.Fatalf("%s, parent %s: span context %v: want valid, a new span ID, the parent's trace", tc.s.Description(), name, sc)
				}
				seen[sc.IsSampled()]++
				sp.End()

				// StartSampled decides alike, and starts a span only
				// when it is sampled.
				ss, ssc := ours.Tracer("t").(*tracer).StartSampled(ctx, nil, "s", trace.SpanKindServer)
				want = tc.s.ShouldSample(sdktrace.SamplingParameters{ParentContext: ctx, TraceID: ssc.TraceID(), Name: "s", Kind: trace.SpanKindServer})
				sampled := want.Decision == sdktrace.RecordAndSample
				if (ss != nil) != sampled || ssc.IsSampled() != sampled || ssc.TraceState().String() != want.Tracestate.String() {
					t.Fatalf("%s, parent %s: StartSampled gave span %v, sampled %v, state %q; the sampler says %v, state %q",
						tc.s.Description(), name, ss != nil, ssc.IsSampled(), ssc.TraceState(), want.Decision, want.Tracestate)
				}
				if !ssc.IsValid() || ssc.SpanID() == p.SpanID() || p.IsValid() && ssc.TraceID() != p.TraceID() {
					t.Fatalf("%s, parent %s: StartSampled's span context %v: want valid, a new span ID, the parent's trace", tc.s.Description(), name, ssc)
				}
				if ss != nil {
					if !ss.SpanContext().Equal(ssc) || !ss.IsRecording() {
						t.Fatalf("%s, parent %s: StartSampled's span %v (recording %v), its context %v", tc.s.Description(), name, ss.SpanContext(), ss.IsRecording(), ssc)
					}
					ss.End()
				}
			}
			if strings.Contains(tc.s.Description(), "{0.5}") && !p.IsValid() && (seen[true] == 0 || seen[false] == 0) {
				t.Errorf("%s: 64 new traces all went one way (%v): are trace IDs random?", tc.s.Description(), seen)
			}
		}
	}
}

// Spans are used from several goroutines at once (run with -race), and
// End wins once.
func TestTracerConcurrentUse(t *testing.T) {
	tp, flush := ourProvider(t, sdktrace.AlwaysSample(), resource.Empty())
	ctx, parent := tp.Tracer("t").Start(context.Background(), "parent")
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			_, child := tp.Tracer("t").Start(ctx, "child")
			for i := range 50 {
				parent.SetAttributes(attribute.Int(fmt.Sprintf("g%d", g), i))
				parent.AddEvent("e")
				parent.SetStatus(codes.Error, "x")
				_ = parent.IsRecording()
				child.SetAttributes(attribute.Int("i", i))
			}
			child.End()
			child.End()
		})
	}
	wg.Wait()
	for range 3 {
		wg.Go(func() { parent.End() })
	}
	wg.Wait()
	spans := flush()
	if len(spans) != 9 {
		t.Fatalf("%d spans exported, want 9 (each child and the parent once)", len(spans))
	}
	for _, s := range spans {
		if s.Name() == "parent" && (s.ChildSpanCount() != 8 || len(s.Attributes()) != 8 || len(s.Events()) != 128 || s.DroppedEvents() != 8*50-128) {
			t.Errorf("parent: %d children, %d attributes, %d events (%d dropped); want 8, 8, 128 (%d)",
				s.ChildSpanCount(), len(s.Attributes()), len(s.Events()), s.DroppedEvents(), 8*50-128)
		}
	}
}

// After Shutdown, spans still carry a context but record nothing; and
// the same scope gets the same tracer.
func TestTracerShutdownAndScopes(t *testing.T) {
	tp, _ := ourProvider(t, sdktrace.AlwaysSample(), resource.Empty())
	a := tp.Tracer("x", trace.WithInstrumentationAttributes(attribute.String("l", "1")))
	if b := tp.Tracer("x", trace.WithInstrumentationAttributes(attribute.String("l", "1"))); a != b {
		t.Error("the same scope gave two tracers")
	}
	if b := tp.Tracer("x", trace.WithInstrumentationAttributes(attribute.String("l", "2"))); a == b {
		t.Error("scopes differing in attributes share a tracer")
	}
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, s := a.Start(context.Background(), "late")
	if s.IsRecording() || !s.SpanContext().IsValid() {
		t.Errorf("after Shutdown: recording %v, context %v", s.IsRecording(), s.SpanContext())
	}
}

// OTEL_TRACES_SAMPLER and _ARG are read as the SDK reads them.
func TestSamplerFromEnv(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range []struct{ name, arg, want string }{
		{"", "", sdktrace.ParentBased(sdktrace.AlwaysSample()).Description()},
		{"always_on", "", "AlwaysOnSampler"},
		{" Always_Off ", "", "AlwaysOffSampler"},
		{"traceidratio", "0.25", "TraceIDRatioBased{0.25}"},
		{"traceidratio", "", "TraceIDRatioBased{1}"},
		{"traceidratio", "2", "TraceIDRatioBased{1}"},
		{"traceidratio", "half", "TraceIDRatioBased{1}"},
		{"parentbased_always_on", "", sdktrace.ParentBased(sdktrace.AlwaysSample()).Description()},
		{"parentbased_always_off", "", sdktrace.ParentBased(sdktrace.NeverSample()).Description()},
		{"parentbased_traceidratio", "0.1", sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.1)).Description()},
		{"jaeger_remote", "", sdktrace.ParentBased(sdktrace.AlwaysSample()).Description()},
	} {
		env := map[string]string{"OTEL_TRACES_SAMPLER": tc.name, "OTEL_TRACES_SAMPLER_ARG": tc.arg}
		if s, _ := samplerFromEnv(func(k string) string { return env[k] }, log); s.Description() != tc.want {
			t.Errorf("%q %q: %s, want %s", tc.name, tc.arg, s.Description(), tc.want)
		}
	}
}

// Our spans encode as the official exporter encodes them.
func TestOTLPEncodingOfOurSpans(t *testing.T) {
	tp, flush := ourProvider(t, sdktrace.AlwaysSample(), resource.NewSchemaless(attribute.String("service.name", "outrigger")))
	spanScript(tp)
	spans := flush()
	official, ours, _ := exportBoth(t, spans)
	if len(ours.got) != 1 || len(spans) != 5 {
		t.Fatalf("%d resources of %d spans, want 1 of 5", len(ours.got), len(spans))
	}
	if d := diffProto(official.got, ours.got); d != "" {
		t.Fatalf("(-official +ours):\n%s", d)
	}
}

// A span with its inline attributes stays in the allocator's 896-byte
// size class: past it, the next class is 1024 bytes, which measured
// slower on every traced request (bench/abpair.sh, +1.4%).
func TestSpanSizeClass(t *testing.T) {
	if n := unsafe.Sizeof(span{}); n > 896 {
		t.Errorf("span is %d bytes, over the 896-byte size class", n)
	}
}

// Released spans are reused once exported, and what is exported is each
// span's own: nothing of a span before it (attributes, events, links,
// status) shows in a span that reuses its memory. Spans not released, or
// released before End, are never reused.
func TestTracerRecyclesReleasedSpans(t *testing.T) {
	// No GC: sync.Pool empties on the second GC after a Put, and the
	// test wants to see the reuse.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	c := &captureClient{}
	exp, err := newOTLPExporter(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	tp := newTracerProvider(sdktrace.AlwaysSample(), resource.Empty(),
		newSpanQueue(exp, defaultSpanQueueOptions, slog.New(slog.NewTextHandler(io.Discard, nil))))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	tr := tp.Tracer("t").(*tracer)

	const n = 40
	seen := map[*span]bool{} // the spans of earlier rounds
	var kept []*span         // not released (odd i of round 0): never reused
	var early *span          // released before End: never reused
	reused := 0
	for round := range 3 {
		c.got = nil
		for i := range n {
			s, _ := tr.StartSampled(context.Background(), nil, fmt.Sprintf("r%d-%d", round, i), trace.SpanKindServer)
			sp := s.(*span)
			if seen[sp] {
				reused++
			}
			seen[sp] = true
			sp.SetAttributes(attribute.Int("round", round), attribute.Int("i", i))
			if round == 0 {
				sp.SetAttributes(attribute.String("first", "only"))
				sp.AddEvent("e")
				sp.AddLink(trace.Link{SpanContext: sp.SpanContext()})
				sp.SetStatus(codes.Error, "round 0")
			}
			switch {
			case round == 0 && i == 0:
				sp.Release()
				sp.End()
				early = sp
			case round == 0 && i%2 == 1:
				sp.End()
				kept = append(kept, sp)
			default:
				sp.End()
				sp.Release()
			}
		}
		if err := tp.ForceFlush(context.Background()); err != nil {
			t.Fatal(err)
		}
		var got int
		for _, rs := range c.got {
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					got++
					var r, i int
					if _, err := fmt.Sscanf(s.Name, "r%d-%d", &r, &i); err != nil || r != round {
						t.Fatalf("round %d exported span %q", round, s.Name)
					}
					want := 2
					if round == 0 {
						want = 3
					}
					if len(s.Attributes) != want || s.Attributes[0].Value.GetIntValue() != int64(round) || s.Attributes[1].Value.GetIntValue() != int64(i) ||
						round > 0 && (len(s.Events) != 0 || len(s.Links) != 0 || s.Status.GetMessage() != "" || s.DroppedAttributesCount != 0) {
						t.Errorf("round %d span %q: attributes %v, %d events, %d links, status %v; want its own only",
							round, s.Name, s.Attributes, len(s.Events), len(s.Links), s.Status)
					}
				}
			}
		}
		if got != n {
			t.Fatalf("round %d: %d spans exported, want %d", round, got, n)
		}
	}
	if reused == 0 {
		t.Error("no released span was reused")
	}
	for _, s := range append(kept, early) {
		var r, i int
		if _, err := fmt.Sscanf(s.Name(), "r%d-%d", &r, &i); err != nil || r != 0 || len(s.Attributes()) != 3 || s.Attributes()[1].Value.AsInt64() != int64(i) {
			t.Errorf("span %q not released (or released before End) changed: attributes %v", s.Name(), s.Attributes())
		}
	}
}

// With an exporter that may keep the spans it was given (any but ours),
// released spans are not reused.
func TestTracerKeepsSpansForOtherExporters(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	tp, flush := ourProvider(t, sdktrace.AlwaysSample(), resource.Empty())
	tr := tp.Tracer("t").(*tracer)
	for i := range 20 {
		s, _ := tr.StartSampled(context.Background(), nil, fmt.Sprint("first-", i), trace.SpanKindServer)
		s.End()
		s.(*span).Release()
	}
	first := flush()
	for i := range 20 {
		s, _ := tr.StartSampled(context.Background(), nil, fmt.Sprint("second-", i), trace.SpanKindServer)
		s.End()
	}
	flush()
	if len(first) != 20 {
		t.Fatalf("%d spans exported, want 20", len(first))
	}
	for i, s := range first {
		if s.Name() != fmt.Sprint("first-", i) {
			t.Errorf("kept span %d is now %q", i, s.Name())
		}
	}
}

// StartSampled with a parent span given, not in a context: the child is
// the parent's, counted as its child, and a sampler that is asked (not
// one of the standard ones planned) sees the parent too.
func TestStartSampledWithParentSpan(t *testing.T) {
	tp, flush := ourProvider(t, sdktrace.AlwaysSample(), resource.Empty())
	tr := tp.Tracer("t").(*tracer)
	parent, psc := tr.StartSampled(context.Background(), nil, "parent", trace.SpanKindServer)
	child, csc := tr.StartSampled(nil, parent, "child", trace.SpanKindClient)
	_, other := tr.Start(trace.ContextWithSpan(context.Background(), parent), "other")
	if child == nil || csc.TraceID() != psc.TraceID() || !child.(*span).Parent().Equal(psc) {
		t.Fatalf("child %v of parent %v", csc, psc)
	}
	other.End()
	child.End()
	parent.End()
	found := false
	for _, s := range flush() {
		if s.Name() == "parent" {
			found = true
			if s.ChildSpanCount() != 2 {
				t.Errorf("parent has %d children, want 2", s.ChildSpanCount())
			}
		}
	}
	if !found {
		t.Error("the parent span was not exported")
	}

	// Root spans sampled, children of a sampled local parent not.
	asked, _ := ourProvider(t, sdktrace.ParentBased(sdktrace.AlwaysSample(),
		sdktrace.WithLocalParentSampled(sdktrace.NeverSample())), resource.Empty())
	if asked.plan.known {
		t.Fatal("the sampler is planned; the test wants one that is asked")
	}
	atr := asked.Tracer("t").(*tracer)
	root, rsc := atr.StartSampled(context.Background(), nil, "root", trace.SpanKindServer)
	if root == nil {
		t.Fatal("root not sampled")
	}
	if c, sc := atr.StartSampled(context.Background(), root, "child", trace.SpanKindClient); c != nil || sc.IsSampled() || sc.TraceID() != rsc.TraceID() {
		t.Errorf("child of a sampled local parent: span made %v, context %v; the sampler says drop, in the parent's trace", c != nil, sc)
	}
}

// The fast path with our tracer, our exporter and span reuse on, under
// load that exports (and so recycles) while requests run: 8 keep-alive
// connections, a batch every 4 spans. Every request's server span is
// exported once, with its own path, and its attempt's span once, its
// child in its trace: a span reused too early would show another
// request's attributes or parent, or go missing (run with -race).
func TestTracerReuseThroughProxy(t *testing.T) {
	be := rawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return
			}
		}
	})
	c := &captureClient{}
	exp, err := newOTLPExporter(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	o := defaultSpanQueueOptions
	o.MaxExportBatchSize, o.ScheduleDelay = 4, time.Millisecond
	tp := newTracerProvider(sdktrace.ParentBased(sdktrace.AlwaysSample()), resource.Empty(),
		newSpanQueue(exp, o, slog.New(slog.NewTextHandler(io.Discard, nil))))
	if !tp.queue.recycle {
		t.Fatal("the queue does not recycle with our exporter")
	}
	tab, err := route.New(route.Config{Routes: []route.RouteConfig{{Name: "all", Backends: []route.Backend{{Service: "web.shop"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	l := proxy.NewHTTPListener(proxy.HTTPConfig{Name: "web", Listen: "127.0.0.1:0"}, tab,
		proxy.Upstreams{"web.shop": proxy.StaticUpstream("web", be)}, proxy.Options{TracerProvider: tp})
	addr, stop := serveUntil(t, l)
	t.Cleanup(func() { stop() })

	const conns, reqs = 8, 150
	var wg sync.WaitGroup
	for g := range conns {
		wg.Go(func() {
			cl := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			defer cl.CloseIdleConnections()
			for i := range reqs {
				resp, err := cl.Get(fmt.Sprintf("http://%s/r/%d/%d", addr, g, i))
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	// A server span ends just after its response is sent: Serve returns
	// when every connection's goroutine has, so every span has ended.
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	type server struct {
		trace, id []byte
		children  int
	}
	servers := map[string]*server{} // by span ID
	paths := map[string]bool{}
	var clients []*tracepb.Span
	for _, rs := range c.got {
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				switch s.Kind {
				case tracepb.Span_SPAN_KIND_SERVER:
					var path string
					for _, kv := range s.Attributes {
						if kv.Key == "url.path" {
							path = kv.Value.GetStringValue()
						}
					}
					if paths[path] || !strings.HasPrefix(path, "/r/") {
						t.Errorf("server span with path %q (seen before: %v)", path, paths[path])
					}
					paths[path] = true
					servers[string(s.SpanId)] = &server{trace: s.TraceId, id: s.SpanId}
				case tracepb.Span_SPAN_KIND_CLIENT:
					clients = append(clients, s)
				}
			}
		}
	}
	if len(paths) != conns*reqs || len(clients) != conns*reqs {
		t.Fatalf("%d server spans and %d client spans exported, want %d of each", len(paths), len(clients), conns*reqs)
	}
	for _, s := range clients {
		p := servers[string(s.ParentSpanId)]
		if p == nil || !bytes.Equal(p.trace, s.TraceId) {
			t.Fatalf("client span %x: parent %x not a server span of its trace", s.SpanId, s.ParentSpanId)
		}
		p.children++
	}
	for _, p := range servers {
		if p.children != 1 {
			t.Fatalf("server span %x has %d attempt spans, want 1", p.id, p.children)
		}
	}
}
