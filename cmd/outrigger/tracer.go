package main

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"reflect"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
)

// tracerProvider is the tracer the proxy's packages get (through the
// OpenTelemetry API, trace.TracerProvider): it records spans the way the
// SDK's TracerProvider does, with the SDK's samplers, resource and
// ReadOnlySpan, and hands ended, sampled spans to the span queue and so to
// otlpExporter.
//
// Why not the SDK's TracerProvider: a span of the SDK costs four
// allocations, about 1.4 KB, and a long path of small calls (the span,
// the attribute slice grown on the first SetAttributes, a snapshot copied
// at End with a map to drop duplicate keys, the context). At 1000
// requests a second each of those touches cold memory and cold code, and
// with two spans a request that was about a fifth of the proxy's CPU
// (bench B9, perf). Here a span is one allocation (its attributes inline
// up to spanInlineAttrs) plus the context, it is its own ReadOnlySpan
// once ended (nothing is copied), and duplicate keys are replaced in
// place as they are set.
//
// What it keeps of the SDK's behaviour: parent-based sampling by any
// sdktrace.Sampler (OTEL_TRACES_SAMPLER and _ARG read as the SDK reads
// them); the sampler's trace state and attributes; new trace and span IDs
// as the SDK makes them (a trace ID only without a valid parent); spans
// that record but are not sampled are not exported; status precedence
// (Ok over Error over Unset, a description only with Error); a span
// limit of spanAttrLimit attributes (and as many on each event and link)
// and spanEventLimit events and links, the overflow counted as dropped
// (the oldest event or link goes); methods called after End are ignored.
// TestTracerMatchesSDK runs the same calls on both and compares what
// they export. What it leaves out: the OTEL_SPAN_*_LIMIT and
// OTEL_ATTRIBUTE_*_LIMIT variables, span processors other than the
// queue, the execution tracer's tasks, and the SDK's recording of a panic
// that unwinds through End.
//
// Concurrency: a span's methods may be called from any goroutine (a
// mutex per span, uncontended in the proxy). Once End has returned, a
// span never changes, so the exporter reads it without the lock.
type tracerProvider struct {
	embedded.TracerProvider

	sampler sdktrace.Sampler
	plan    samplePlan // how Start decides for the SDK's standard samplers without asking
	res     *resource.Resource
	queue   *spanQueue

	mu      sync.Mutex
	tracers map[tracerKey]*tracer
	stopped atomic.Bool

	// spans released by their owner and exported, for new spans to
	// reuse (span.Release)
	free sync.Pool
}

// Span limits (the SDK's defaults).
const (
	spanAttrLimit   = 128
	spanEventLimit  = 128
	spanInlineAttrs = 8 // the proxy's spans have at most eight (proxy/trace.go)
)

// defaultTracerName is the scope name of a tracer asked for with none
// (the SDK's).
const defaultTracerName = "go.opentelemetry.io/otel/sdk/tracer"

func newTracerProvider(sampler sdktrace.Sampler, res *resource.Resource, queue *spanQueue) *tracerProvider {
	if sampler == nil {
		sampler = sdktrace.ParentBased(sdktrace.AlwaysSample())
	}
	if res == nil {
		res = resource.Default()
	}
	return &tracerProvider{sampler: sampler, plan: planOf(sampler), res: res, queue: queue, tracers: map[tracerKey]*tracer{}}
}

// samplePlan is a sampler's decision rule when the sampler is one of the
// SDK's standard ones (every sampler setupTracing makes is), so that Start
// decides in a few instructions instead of a chain of calls through the
// sampler, the context and the parent's span (at 1000 requests a second,
// on cold caches, that chain was a large part of an unsampled request's
// tracing cost). TestTracerSamplingMatchesSDK checks each plan against
// its sampler's own answers.
type samplePlan struct {
	known bool // false: ask the sampler
	// parentBased: sdktrace.ParentBased with its default parent samplers,
	// so a valid parent's sampled flag decides
	parentBased bool
	// a new trace (or any, when not parentBased) is sampled when the
	// trace ID's last 8 bytes, shifted right by one, are below bound, as
	// TraceIDRatioBased reads them; all is AlwaysSample (a ratio of 1)
	bound uint64
	all   bool
}

// defaultParentSamplers is how sdktrace.ParentBased describes its parent
// samplers when none was replaced.
const defaultParentSamplers = ",remoteParentSampled:AlwaysOnSampler,remoteParentNotSampled:AlwaysOffSampler," +
	"localParentSampled:AlwaysOnSampler,localParentNotSampled:AlwaysOffSampler}"

// planOf reads s's rule from its description (the SDK's samplers are not
// otherwise inspectable); unknown samplers get a plan that asks them.
func planOf(s sdktrace.Sampler) samplePlan {
	d := s.Description()
	var p samplePlan
	if root, ok := strings.CutPrefix(d, "ParentBased{root:"); ok {
		if root, ok = strings.CutSuffix(root, defaultParentSamplers); !ok {
			return samplePlan{}
		}
		p.parentBased, d = true, root
	}
	switch {
	case d == "AlwaysOnSampler":
		p.all = true
	case d == "AlwaysOffSampler":
	case strings.HasPrefix(d, "TraceIDRatioBased{") && strings.HasSuffix(d, "}"):
		f, err := strconv.ParseFloat(d[len("TraceIDRatioBased{"):len(d)-1], 64)
		switch {
		case err != nil:
			return samplePlan{}
		case f >= 1:
			p.all = true
		case f > 0:
			p.bound = uint64(f * (1 << 63)) // %g round-trips: the SDK's own bound
		}
	default:
		return samplePlan{}
	}
	p.known = true
	return p
}

// sampled is the plan's decision for a span of trace tid under parent.
func (p *samplePlan) sampled(tid trace.TraceID, parent trace.SpanContext) bool {
	switch {
	case p.parentBased && parent.IsValid():
		return parent.IsSampled()
	case p.all:
		return true
	}
	return binary.BigEndian.Uint64(tid[8:16])>>1 < p.bound
}

type tracerKey struct {
	name, version, schemaURL string
	attrs                    attribute.Distinct
}

// Tracer returns the tracer of one instrumentation scope; the same
// tracer for the same scope.
func (p *tracerProvider) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	if name == "" {
		name = defaultTracerName
	}
	c := trace.NewTracerConfig(opts...)
	attrs := c.InstrumentationAttributes()
	k := tracerKey{name, c.InstrumentationVersion(), c.SchemaURL(), attrs.Equivalent()}
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.tracers[k]
	if !ok {
		t = &tracer{p: p, scope: instrumentation.Scope{Name: name, Version: c.InstrumentationVersion(),
			SchemaURL: c.SchemaURL(), Attributes: attrs}}
		p.tracers[k] = t
	}
	return t
}

// ForceFlush exports every span ended so far.
func (p *tracerProvider) ForceFlush(ctx context.Context) error { return p.queue.ForceFlush(ctx) }

// Shutdown stops recording (spans started later do not record) and
// exports what is queued.
func (p *tracerProvider) Shutdown(ctx context.Context) error {
	p.stopped.Store(true)
	return p.queue.Shutdown(ctx)
}

type tracer struct {
	embedded.Tracer

	p     *tracerProvider
	scope instrumentation.Scope
}

// Start starts a span as a child of the span in ctx (unless WithNewRoot),
// sampled as the provider's sampler decides.
func (t *tracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if ctx == nil {
		ctx = context.Background()
	}
	cfg := trace.NewSpanStartConfig(opts...)
	st := spanStart{name: name, kind: cfg.SpanKind(), newRoot: cfg.NewRoot(),
		attrs: cfg.Attributes(), links: cfg.Links(), ts: cfg.Timestamp()}
	d := t.decide(ctx, nil, &st)
	if !d.record {
		s := &unrecordedSpan{sc: d.sc, p: t.p}
		return trace.ContextWithSpan(d.ctx, s), s
	}
	s := t.newSpan(&d, &st)
	return trace.ContextWithSpan(d.ctx, s), s
}

// StartSampled starts a span of kind as a child of parent (when nil, of
// the span in ctx), as Start(ctx, name, trace.WithSpanKind(kind)) does
// with parent in ctx, when the sampler samples it, and returns it and its
// SpanContext. For a span the sampler
// does not sample, it starts nothing: it returns a nil span and the
// SpanContext the span would have had, which is all a proxy passes on of
// an unsampled request (the trace, with the sampled flag clear, for the
// next hop). The span is in no context: the caller makes one if it needs
// one.
//
// The proxy's HTTP fast path calls this rather than Start
// (proxy/trace_h1.go): an unsampled request then costs no span and no
// context (at 0% sampling, making them was most of what tracing cost,
// bench B9), and a sampled one no span options, no contexts and no
// allocation but the spans (released spans are reused: span.Release).
//
// A span that the sampler would record without sampling it
// (sdktrace.RecordOnly, from a sampler of the user's own) is skipped too:
// it would never be exported, and no span processor but the queue sees
// spans here.
func (t *tracer) StartSampled(ctx context.Context, parent trace.Span, name string, kind trace.SpanKind) (trace.Span, trace.SpanContext) {
	if ctx == nil {
		ctx = context.Background()
	}
	st := spanStart{name: name, kind: kind}
	d := t.decide(ctx, parent, &st)
	if !d.record || !d.sc.IsSampled() {
		return nil, d.sc
	}
	return t.newSpan(&d, &st), d.sc
}

// spanStart is what a span is started with: its name and the start
// options.
type spanStart struct {
	name    string
	kind    trace.SpanKind
	newRoot bool
	attrs   []attribute.KeyValue
	links   []trace.Link
	ts      time.Time
}

// decision is what decide makes of a span to start.
type decision struct {
	ctx    context.Context // the parent's context; with no parent in it for a new root
	parent trace.SpanContext
	sc     trace.SpanContext
	record bool
	attrs  []attribute.KeyValue // the sampler's
}

// decide is the sampler's decision on a span st to start under
// parentSpan (when nil, the span in ctx), and the span's context.
func (t *tracer) decide(ctx context.Context, parentSpan trace.Span, st *spanStart) decision {
	var d decision
	if st.newRoot {
		ctx = trace.ContextWithSpanContext(ctx, d.parent)
	} else {
		ps := parentSpan
		if ps == nil {
			ps = trace.SpanFromContext(ctx)
		}
		switch s := ps.(type) {
		case *span:
			s.addChild()
			d.parent = s.sc
		default:
			d.parent = s.SpanContext()
		}
	}
	d.ctx = ctx
	tid := d.parent.TraceID()
	if !tid.IsValid() {
		tid = newTraceID()
	}
	var res sdktrace.SamplingResult
	if t.p.plan.known {
		// the SDK's standard samplers pass the parent's trace state on
		// and add no attributes
		res.Tracestate = d.parent.TraceState()
		if t.p.plan.sampled(tid, d.parent) {
			res.Decision = sdktrace.RecordAndSample
		}
	} else {
		pctx := ctx
		if parentSpan != nil {
			pctx = trace.ContextWithSpan(ctx, parentSpan) // where samplers look for it
		}
		res = t.p.sampler.ShouldSample(sdktrace.SamplingParameters{ParentContext: pctx, TraceID: tid,
			Name: st.name, Kind: st.kind, Attributes: st.attrs, Links: st.links})
		d.attrs = res.Attributes
	}
	scc := trace.SpanContextConfig{TraceID: tid, SpanID: newSpanID(), TraceState: res.Tracestate}
	if res.Decision == sdktrace.RecordAndSample {
		scc.TraceFlags = d.parent.TraceFlags() | trace.FlagsSampled
	} else {
		scc.TraceFlags = d.parent.TraceFlags() &^ trace.FlagsSampled
	}
	d.sc = trace.NewSpanContext(scc)
	d.record = res.Decision != sdktrace.Drop && !t.p.stopped.Load()
	return d
}

// newSpan makes the recording span d decided on.
func (t *tracer) newSpan(d *decision, st *spanStart) *span {
	s, _ := t.p.free.Get().(*span) // zeroed by recycle
	if s == nil {
		s = new(span)
	}
	s.t, s.sc, s.parent, s.kind, s.name, s.start = t, d.sc, d.parent, trace.ValidateSpanKind(st.kind), st.name, st.ts
	if s.start.IsZero() {
		s.start = time.Now()
	}
	s.attrs = s.inline[:0]
	for _, l := range st.links {
		s.addLink(l)
	}
	s.setAttributes(d.attrs)
	s.setAttributes(st.attrs)
	return s
}

// newTraceID and newSpanID make random, valid IDs from the runtime's
// per-thread generator (no lock).
func newTraceID() (id trace.TraceID) {
	for !id.IsValid() {
		a, b := rand.Uint64(), rand.Uint64()
		for i := range 8 {
			id[i], id[8+i] = byte(a>>(56-8*i)), byte(b>>(56-8*i))
		}
	}
	return id
}

func newSpanID() (id trace.SpanID) {
	for !id.IsValid() {
		a := rand.Uint64()
		for i := range 8 {
			id[i] = byte(a >> (56 - 8*i))
		}
	}
	return id
}

// span is a recording span; once ended, it is the ReadOnlySpan the queue
// and the exporter read.
type span struct {
	embedded.Span
	sdktrace.ReadOnlySpan // only for its unexported method; every method is ours

	t      *tracer
	sc     trace.SpanContext
	parent trace.SpanContext
	kind   trace.SpanKind

	mu         sync.Mutex
	ended      bool
	name       string
	start, end time.Time
	status     sdktrace.Status
	attrs      []attribute.KeyValue // inline's, or a larger array past spanInlineAttrs
	events     []sdktrace.Event
	links      []sdktrace.Link
	// int32: with eight inline attributes the span fits the allocator's
	// 896-byte size class, with room to spare (the next is 1024 bytes;
	// TestSpanSizeClass)
	children   int32
	dropAttrs  int32
	dropEvents int32
	dropLinks  int32
	released   atomic.Bool // Release was called
	inline     [spanInlineAttrs]attribute.KeyValue
}

func (s *span) SpanContext() trace.SpanContext { return s.sc }

func (s *span) IsRecording() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.ended
}

func (s *span) SetStatus(code codes.Code, description string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || s.status.Code > code {
		return
	}
	s.status = sdktrace.Status{Code: code}
	if code == codes.Error {
		s.status.Description = description
	}
}

func (s *span) SetAttributes(kv ...attribute.KeyValue) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended {
		s.setAttributes(kv)
	}
}

// setAttributes adds kv, a key already set taking the new value in its
// place; invalid ones and those past the limit are dropped and counted.
func (s *span) setAttributes(kv []attribute.KeyValue) {
next:
	for _, a := range kv {
		if !a.Valid() {
			s.dropAttrs++
			continue
		}
		for i := range s.attrs {
			if s.attrs[i].Key == a.Key {
				s.attrs[i] = a
				continue next
			}
		}
		if len(s.attrs) == spanAttrLimit {
			s.dropAttrs++
			continue
		}
		s.attrs = append(s.attrs, a)
	}
}

func (s *span) AddEvent(name string, opts ...trace.EventOption) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended {
		s.addEvent(name, trace.NewEventConfig(opts...))
	}
}

func (s *span) addEvent(name string, c trace.EventConfig) {
	e := sdktrace.Event{Name: name, Attributes: c.Attributes(), Time: c.Timestamp()}
	if len(e.Attributes) > spanAttrLimit {
		e.DroppedAttributeCount = len(e.Attributes) - spanAttrLimit
		e.Attributes = e.Attributes[:spanAttrLimit]
	}
	if len(s.events) == spanEventLimit { // the oldest goes, as in the SDK
		s.events = append(s.events[:0], s.events[1:]...)
		s.dropEvents++
	}
	s.events = append(s.events, e)
}

func (s *span) RecordError(err error, opts ...trace.EventOption) {
	if err == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	opts = append(opts, trace.WithAttributes(semconv.ExceptionType(errorType(err)), semconv.ExceptionMessage(err.Error())))
	if c := trace.NewEventConfig(opts...); c.StackTrace() {
		opts = append(opts, trace.WithAttributes(semconv.ExceptionStacktrace(string(debug.Stack()))))
	}
	s.addEvent(semconv.ExceptionEventName, trace.NewEventConfig(opts...))
}

func (s *span) AddLink(l trace.Link) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended {
		s.addLink(l)
	}
}

func (s *span) addLink(l trace.Link) {
	if !l.SpanContext.IsValid() && len(l.Attributes) == 0 && l.SpanContext.TraceState().Len() == 0 {
		return // as the SDK: a link to nothing, saying nothing, is no link
	}
	sl := sdktrace.Link{SpanContext: l.SpanContext, Attributes: l.Attributes}
	if len(sl.Attributes) > spanAttrLimit {
		sl.DroppedAttributeCount = len(sl.Attributes) - spanAttrLimit
		sl.Attributes = sl.Attributes[:spanAttrLimit]
	}
	if len(s.links) == spanEventLimit {
		s.links = append(s.links[:0], s.links[1:]...)
		s.dropLinks++
	}
	s.links = append(s.links, sl)
}

func (s *span) SetName(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended {
		s.name = name
	}
}

func (s *span) addChild() {
	s.mu.Lock()
	if !s.ended {
		s.children++
	}
	s.mu.Unlock()
}

// End ends the span and, when it is sampled, queues it for export.
func (s *span) End(opts ...trace.SpanEndOption) {
	var end time.Time
	if len(opts) > 0 {
		c := trace.NewSpanEndConfig(opts...)
		end = c.Timestamp()
	}
	if end.IsZero() {
		end = s.start.Add(time.Since(s.start)) // monotonic, as the SDK
	}
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended, s.end = true, end
	s.mu.Unlock()
	if s.sc.IsSampled() {
		s.t.p.queue.OnEnd(s)
	}
}

func (s *span) TracerProvider() trace.TracerProvider { return s.t.p }

// Release hands an ended span back for its memory to be reused: its
// caller promises that the span will not be used again, by it or by
// anyone it gave the span (or a context holding it) to; no method is
// called on it and it is not read. The proxy's HTTP fast path keeps its
// spans to itself and releases each after End (proxy/trace.go).
//
// Why: a span is the largest allocation of a traced request, two a
// request, each touching cold memory; reused, they were 1.3 points of
// the 100%-sampling cost (bench B9, abpair). A span that is not released
// is simply garbage once exported, as any span of the SDK.
//
// The span is reused only after the exporter is done with it
// (spanQueue.exportUpTo calls recycle), and only with our OTLP exporter,
// which keeps no reference to the spans it was given. Calling Release
// before End is a no-op. A sampler of the user's own is given the span
// in its ParentContext when a child of it starts, and one that kept that
// context would break the promise; the SDK's samplers keep nothing (and
// are never asked: samplePlan).
func (s *span) Release() {
	s.mu.Lock()
	ended := s.ended
	s.mu.Unlock()
	if ended {
		s.released.Store(true)
	}
}

// recycle puts an exported span in the provider's free pool if its owner
// released it. Only the queue's goroutine calls it, after the export.
func (s *span) recycle() {
	if !s.released.Load() {
		return
	}
	p := s.t.p
	*s = span{}
	p.free.Put(s)
}

// ReadOnlySpan, read by the exporter once the span has ended.

func (s *span) Name() string              { return s.name }
func (s *span) Parent() trace.SpanContext { return s.parent }
func (s *span) SpanKind() trace.SpanKind  { return s.kind }
func (s *span) StartTime() time.Time      { return s.start }
func (s *span) EndTime() time.Time        { return s.end }
func (s *span) Attributes() []attribute.KeyValue {
	if len(s.attrs) == 0 {
		return nil // as the SDK's
	}
	return s.attrs
}
func (s *span) Links() []sdktrace.Link                      { return s.links }
func (s *span) Events() []sdktrace.Event                    { return s.events }
func (s *span) Status() sdktrace.Status                     { return s.status }
func (s *span) InstrumentationScope() instrumentation.Scope { return s.t.scope }

//nolint:staticcheck // part of ReadOnlySpan
func (s *span) InstrumentationLibrary() instrumentation.Library {
	return instrumentation.Library(s.t.scope)
}
func (s *span) Resource() *resource.Resource { return s.t.p.res }
func (s *span) DroppedAttributes() int       { return int(s.dropAttrs) }
func (s *span) DroppedLinks() int            { return int(s.dropLinks) }
func (s *span) DroppedEvents() int           { return int(s.dropEvents) }
func (s *span) ChildSpanCount() int          { return int(s.children) }

// unrecordedSpan is a span the sampler dropped: it carries its context
// for propagation and records nothing.
type unrecordedSpan struct {
	embedded.Span
	sc trace.SpanContext
	p  *tracerProvider
}

func (s *unrecordedSpan) SpanContext() trace.SpanContext          { return s.sc }
func (s *unrecordedSpan) IsRecording() bool                       { return false }
func (s *unrecordedSpan) SetStatus(codes.Code, string)            {}
func (s *unrecordedSpan) SetAttributes(...attribute.KeyValue)     {}
func (s *unrecordedSpan) AddEvent(string, ...trace.EventOption)   {}
func (s *unrecordedSpan) AddLink(trace.Link)                      {}
func (s *unrecordedSpan) RecordError(error, ...trace.EventOption) {}
func (s *unrecordedSpan) SetName(string)                          {}
func (s *unrecordedSpan) End(...trace.SpanEndOption)              {}
func (s *unrecordedSpan) TracerProvider() trace.TracerProvider    { return s.p }

// errorType names an error's type for an exception event, as the SDK
// does.
func errorType(err error) string {
	t := reflect.TypeOf(err)
	if t.PkgPath() == "" && t.Name() == "" {
		return t.String()
	}
	return t.PkgPath() + "." + t.Name()
}
