package main

import (
	"context"
	"fmt"
	"math"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// otlpExporter is the span exporter: the official OTLP client (gRPC or
// HTTP, with all its OTEL_EXPORTER_OTLP_* settings, TLS, headers, retries
// and compression) fed spans encoded here, straight from the SDK's
// ReadOnlySpan into OTLP's protobuf wire format.
//
// Why not the official otlptrace.Exporter: it turns every span into a
// tree of generated protobuf structs (about 50 allocations for a span of
// the proxy's, three per attribute) that protobuf then sizes and marshals
// by reflection; measured (BenchmarkOTLPExport) that is several
// microseconds a span, the largest part of what tracing every request
// cost the proxy (bench B9). Encoded here, a span costs a few hundred
// nanoseconds and allocates nothing.
//
// How the bytes reach the client: each resource's encoded ResourceSpans
// body is set as the unknown fields of an otherwise empty
// tracepb.ResourceSpans. Protobuf keeps unknown fields and writes them back
// verbatim when it marshals, so the request on the wire is exactly what the
// official exporter would send (TestOTLPEncodingMatchesOfficial decodes
// ours and compares it with the official transform's, field by field).
// One thing differs: the client's own span count, used only by its
// opt-in self-observability metrics, sees no spans in such a message.
//
// ExportSpans is called by one goroutine at a time (spanQueue.run); the
// mutex only makes a misuse safe.
type otlpExporter struct {
	client otlptrace.Client

	mu     sync.Mutex
	buf    []byte
	groups []otlpGroup
	order  []int32 // span indexes, grouped
	wrap   []*tracepb.ResourceSpans
	res    *resource.Resource // the resource whose encoding is resBytes
	resEnc []byte
}

// otlpGroup is the spans of one resource and scope, in a batch.
type otlpGroup struct {
	res   *resource.Resource
	scope instrumentation.Scope
	spans []int32
}

// newOTLPExporter starts client and returns an exporter sending to it.
func newOTLPExporter(ctx context.Context, client otlptrace.Client) (*otlpExporter, error) {
	if err := client.Start(ctx); err != nil {
		return nil, fmt.Errorf("tracing: starting the OTLP client: %w", err)
	}
	return &otlpExporter{client: client}, nil
}

// ExportSpans encodes spans, a ResourceSpans per resource and a ScopeSpans
// per scope in the order they first appear (as the official exporter
// groups them), and uploads them in one request.
func (e *otlpExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.group(spans)
	if len(e.groups) == 0 {
		return nil
	}
	// Encode all, remembering where each resource's body ends.
	b := e.buf[:0]
	var ends []int
	for i := 0; i < len(e.groups); {
		res := e.groups[i].res
		start := len(b)
		b = e.appendResource(b, res)
		for ; i < len(e.groups) && e.groups[i].res == res; i++ {
			g := &e.groups[i]
			var at int
			b, at = beginMsg(b, 2) // ResourceSpans.scope_spans
			b = appendScopeSpans(b, g.scope, g.spans, spans)
			b = endMsg(b, at)
		}
		if u := res.SchemaURL(); u != "" {
			b = appendString(b, 3, u) // ResourceSpans.schema_url
		}
		ends = append(ends, start, len(b))
	}
	e.buf = b
	e.wrap = e.wrap[:0]
	for k := 0; k < len(ends); k += 2 {
		rs := &tracepb.ResourceSpans{}
		rs.ProtoReflect().SetUnknown(protoreflect.RawFields(b[ends[k]:ends[k+1]]))
		e.wrap = append(e.wrap, rs)
	}
	// The client marshals (and retries) before it returns: b is free for
	// the next batch after this.
	err := e.client.UploadTraces(ctx, e.wrap)
	clear(e.wrap)
	if err != nil {
		return fmt.Errorf("traces export: %w", err)
	}
	return nil
}

// group sorts spans' indexes into e.groups: by resource, then by scope,
// each in order of first appearance. A batch has one resource and a scope
// or two, so the lookups are linear.
func (e *otlpExporter) group(spans []sdktrace.ReadOnlySpan) {
	for i := range e.groups {
		e.groups[i].spans = e.groups[i].spans[:0]
	}
	e.groups = e.groups[:0]
	for i, s := range spans {
		if s == nil {
			continue
		}
		res, scope := s.Resource(), s.InstrumentationScope()
		last := -1 // the last group of res
		found := false
		for j := range e.groups {
			g := &e.groups[j]
			if !sameResource(g.res, res) {
				continue
			}
			res, last = g.res, j
			if g.scope == scope {
				g.spans = append(g.spans, int32(i))
				found = true
				break
			}
		}
		if found {
			continue
		}
		g := otlpGroup{res: res, scope: scope}
		if cap(e.groups) > len(e.groups) {
			g.spans = e.groups[:len(e.groups)+1][len(e.groups)].spans[:0]
		}
		g.spans = append(g.spans, int32(i))
		if last < 0 {
			e.groups = append(e.groups, g)
			continue
		}
		// Keep a resource's groups together.
		e.groups = append(e.groups, otlpGroup{})
		copy(e.groups[last+2:], e.groups[last+1:])
		e.groups[last+1] = g
	}
}

func sameResource(a, b *resource.Resource) bool {
	return a == b || a.Equivalent() == b.Equivalent()
}

// appendResource appends ResourceSpans.resource (field 1) for res; the
// last resource's encoding is kept.
func (e *otlpExporter) appendResource(b []byte, res *resource.Resource) []byte {
	if res == nil {
		return b
	}
	if res != e.res {
		var rb []byte
		var at int
		rb, at = beginMsg(rb, 1)
		for it := res.Iter(); it.Next(); {
			rb = appendKeyValue(rb, 1, it.Attribute()) // Resource.attributes
		}
		e.res, e.resEnc = res, endMsg(rb, at)
	}
	return append(b, e.resEnc...)
}

// Shutdown stops the client.
func (e *otlpExporter) Shutdown(ctx context.Context) error {
	return e.client.Stop(ctx)
}

// appendScopeSpans appends a ScopeSpans body: the scope and the spans of
// idx.
func appendScopeSpans(b []byte, scope instrumentation.Scope, idx []int32, spans []sdktrace.ReadOnlySpan) []byte {
	if scope != (instrumentation.Scope{}) {
		var at int
		b, at = beginMsg(b, 1) // ScopeSpans.scope
		b = appendString(b, 1, scope.Name)
		b = appendString(b, 2, scope.Version)
		for it := scope.Attributes.Iter(); it.Next(); {
			b = appendKeyValue(b, 3, it.Attribute())
		}
		b = endMsg(b, at)
	}
	for _, i := range idx {
		var at int
		b, at = beginMsg(b, 2) // ScopeSpans.spans
		b = appendSpan(b, spans[i])
		b = endMsg(b, at)
	}
	return appendString(b, 3, scope.SchemaURL)
}

// appendSpan appends a Span body (opentelemetry/proto/trace/v1/trace.proto).
func appendSpan(b []byte, s sdktrace.ReadOnlySpan) []byte {
	sc := s.SpanContext()
	tid, sid := sc.TraceID(), sc.SpanID()
	b = appendBytes(b, 1, tid[:])
	b = appendBytes(b, 2, sid[:])
	b = appendString(b, 3, sc.TraceState().String())
	parent := s.Parent()
	if psid := parent.SpanID(); psid.IsValid() {
		b = appendBytes(b, 4, psid[:])
	}
	b = appendString(b, 5, s.Name())
	b = appendVarint(b, 6, uint64(spanKind(s.SpanKind())))
	b = appendFixed64(b, 7, unixNano(s.StartTime().UnixNano()))
	b = appendFixed64(b, 8, unixNano(s.EndTime().UnixNano()))
	for _, kv := range s.Attributes() {
		b = appendKeyValue(b, 9, kv)
	}
	b = appendVarint(b, 10, uint64(clampUint32(s.DroppedAttributes())))
	for _, ev := range s.Events() {
		var at int
		b, at = beginMsg(b, 11)
		b = appendFixed64(b, 1, unixNano(ev.Time.UnixNano()))
		b = appendString(b, 2, ev.Name)
		for _, kv := range ev.Attributes {
			b = appendKeyValue(b, 3, kv)
		}
		b = appendVarint(b, 4, uint64(clampUint32(ev.DroppedAttributeCount)))
		b = endMsg(b, at)
	}
	b = appendVarint(b, 12, uint64(clampUint32(s.DroppedEvents())))
	for _, l := range s.Links() {
		ltid, lsid := l.SpanContext.TraceID(), l.SpanContext.SpanID()
		var at int
		b, at = beginMsg(b, 13)
		b = appendBytes(b, 1, ltid[:])
		b = appendBytes(b, 2, lsid[:])
		for _, kv := range l.Attributes {
			b = appendKeyValue(b, 4, kv)
		}
		b = appendVarint(b, 5, uint64(clampUint32(l.DroppedAttributeCount)))
		b = appendFixed32(b, 6, spanFlags(l.SpanContext.TraceFlags(), l.SpanContext))
		b = endMsg(b, at)
	}
	b = appendVarint(b, 14, uint64(clampUint32(s.DroppedLinks())))
	st := s.Status()
	var at int
	b, at = beginMsg(b, 15) // always present, as the official exporter sends it
	b = appendString(b, 2, st.Description)
	b = appendVarint(b, 3, uint64(statusCode(st.Code)))
	b = endMsg(b, at)
	return appendFixed32(b, 16, spanFlags(sc.TraceFlags(), parent))
}

// spanFlags are Span.flags and Span.Link.flags: the W3C trace flags, and
// whether the parent (or linked) context is remote, with the bit saying
// that this is known.
func spanFlags(tf trace.TraceFlags, parent trace.SpanContext) uint32 {
	f := uint32(tf) | uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK)
	if parent.IsRemote() {
		f |= uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK)
	}
	return f
}

func spanKind(k trace.SpanKind) tracepb.Span_SpanKind {
	switch k {
	case trace.SpanKindInternal:
		return tracepb.Span_SPAN_KIND_INTERNAL
	case trace.SpanKindServer:
		return tracepb.Span_SPAN_KIND_SERVER
	case trace.SpanKindClient:
		return tracepb.Span_SPAN_KIND_CLIENT
	case trace.SpanKindProducer:
		return tracepb.Span_SPAN_KIND_PRODUCER
	case trace.SpanKindConsumer:
		return tracepb.Span_SPAN_KIND_CONSUMER
	}
	return tracepb.Span_SPAN_KIND_UNSPECIFIED
}

func statusCode(c codes.Code) tracepb.Status_StatusCode {
	switch c {
	case codes.Ok:
		return tracepb.Status_STATUS_CODE_OK
	case codes.Error:
		return tracepb.Status_STATUS_CODE_ERROR
	}
	return tracepb.Status_STATUS_CODE_UNSET
}

func unixNano(ns int64) uint64 { return uint64(max(0, ns)) }

func clampUint32(v int) uint32 {
	return uint32(min(max(v, 0), math.MaxUint32))
}

// appendKeyValue appends kv as a KeyValue message in field num.
func appendKeyValue(b []byte, num protowire.Number, kv attribute.KeyValue) []byte {
	var at, vat int
	b, at = beginMsg(b, num)
	b = appendString(b, 1, string(kv.Key))
	b, vat = beginMsg(b, 2)
	b = appendAnyValue(b, kv.Value)
	b = endMsg(b, vat)
	return endMsg(b, at)
}

// appendAnyValue appends an AnyValue body. Its members are a oneof: set,
// a member is written even when it is its type's zero value.
func appendAnyValue(b []byte, v attribute.Value) []byte {
	switch v.Type() {
	case attribute.BOOL:
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		return protowire.AppendVarint(b, protowire.EncodeBool(v.AsBool()))
	case attribute.INT64:
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(v.AsInt64()))
	case attribute.FLOAT64:
		b = protowire.AppendTag(b, 4, protowire.Fixed64Type)
		return protowire.AppendFixed64(b, math.Float64bits(v.AsFloat64()))
	case attribute.STRING:
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		return protowire.AppendString(b, v.AsString())
	case attribute.BYTESLICE:
		b = protowire.AppendTag(b, 7, protowire.BytesType)
		return protowire.AppendBytes(b, v.AsByteSlice())
	case attribute.BOOLSLICE:
		s := v.AsBoolSlice()
		return appendArray(b, len(s), func(b []byte, i int) []byte { return appendAnyValue(b, attribute.BoolValue(s[i])) })
	case attribute.INT64SLICE:
		s := v.AsInt64Slice()
		return appendArray(b, len(s), func(b []byte, i int) []byte { return appendAnyValue(b, attribute.Int64Value(s[i])) })
	case attribute.FLOAT64SLICE:
		s := v.AsFloat64Slice()
		return appendArray(b, len(s), func(b []byte, i int) []byte { return appendAnyValue(b, attribute.Float64Value(s[i])) })
	case attribute.STRINGSLICE:
		s := v.AsStringSlice()
		return appendArray(b, len(s), func(b []byte, i int) []byte { return appendAnyValue(b, attribute.StringValue(s[i])) })
	case attribute.SLICE:
		s := v.AsSlice()
		return appendArray(b, len(s), func(b []byte, i int) []byte { return appendAnyValue(b, s[i]) })
	case attribute.MAP:
		var at int
		b, at = beginMsg(b, 6) // AnyValue.kvlist_value
		for _, kv := range v.AsMap() {
			b = appendKeyValue(b, 1, kv) // KeyValueList.values
		}
		return endMsg(b, at)
	case attribute.EMPTY:
		return b // an AnyValue with no member set
	}
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	return protowire.AppendString(b, "INVALID")
}

// appendArray appends AnyValue.array_value with n values made by value.
func appendArray(b []byte, n int, value func([]byte, int) []byte) []byte {
	var at int
	b, at = beginMsg(b, 5)
	for i := range n {
		var vat int
		b, vat = beginMsg(b, 1) // ArrayValue.values
		b = value(b, i)
		b = endMsg(b, vat)
	}
	return endMsg(b, at)
}

// beginMsg appends the tag of a length-delimited field num and one byte
// for its length, and returns where the message's body starts; endMsg
// fills the length in once the body is appended.
func beginMsg(b []byte, num protowire.Number) ([]byte, int) {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = append(b, 0)
	return b, len(b)
}

// endMsg writes the length of the body appended since beginMsg returned
// at, moving the body when the length takes more than the one byte kept.
func endMsg(b []byte, at int) []byte {
	n := len(b) - at
	if n < 0x80 {
		b[at-1] = byte(n)
		return b
	}
	extra := protowire.SizeVarint(uint64(n)) - 1
	for range extra {
		b = append(b, 0)
	}
	copy(b[at+extra:], b[at:at+n])
	protowire.AppendVarint(b[:at-1], uint64(n))
	return b
}

// The scalar fields of proto3: a zero value is not written.

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendFixed64(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.Fixed64Type)
	return protowire.AppendFixed64(b, v)
}

func appendFixed32(b []byte, num protowire.Number, v uint32) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.Fixed32Type)
	return protowire.AppendFixed32(b, v)
}
