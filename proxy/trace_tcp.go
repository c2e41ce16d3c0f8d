package proxy

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/outrigger-mesh/outrigger/discovery"
)

// Tracing of forwarded TCP connections (see trace.go): one server span per
// connection from the start of its connect to its close. TCP carries no
// trace context, so each is the root of its own trace. Failed dials are
// events on it; the endpoint and the bytes moved are attributes.

// startSpan starts the connection's span; a no-op when tracing is off.
func (c *conn) startSpan() {
	tr := c.l.tr
	if tr == nil {
		return
	}
	_, span := tr.tracer.Start(context.Background(), "tcp "+c.l.cfg.Name, serverKind...)
	c.span = span
	if span.IsRecording() {
		attrs := []attribute.KeyValue{semconv.NetworkTransportTCP}
		attrs = append(attrs, peerAttrs(c.client.RemoteAddr().String())...)
		span.SetAttributes(attrs...)
	}
}

// traceConnected records the endpoint a dial reached.
func (c *conn) traceConnected(ep *discovery.Endpoint, attempt int) {
	if c.span == nil || !c.span.IsRecording() {
		return
	}
	a := ep.Addr.Addr().Unmap().String()
	c.span.SetAttributes(
		semconv.ServerAddress(a),
		semconv.ServerPort(int(ep.Addr.Port())),
		attrEndpoint.String(ep.ID),
		attrAttempt.Int(attempt),
	)
}

// traceConnectFailed records a failed dial as an event.
func (c *conn) traceConnectFailed(ep *discovery.Endpoint, err error) {
	if c.span == nil || !c.span.IsRecording() {
		return
	}
	c.span.AddEvent("connect failed", trace.WithAttributes(
		attrEndpoint.String(ep.ID),
		semconv.ServerAddress(ep.Addr.Addr().Unmap().String()),
		semconv.ServerPort(int(ep.Addr.Port())),
		semconv.ErrorTypeKey.String(causeConnectFailure),
		attribute.String("exception.message", err.Error()),
	))
}

// endSpan ends the connection's span with how it ended: error status when
// no endpoint could be reached or a copy failed on the endpoint's side.
func (c *conn) endSpan() {
	span := c.span
	if span == nil {
		return
	}
	if span.IsRecording() {
		reason, err, clientErr := c.result()
		span.SetAttributes(
			attrClose.String(reason.String()),
			attrSent.Int64(c.dirs[0].n),
			attrReceived.Int64(c.dirs[1].n),
		)
		switch {
		case reason == closedNoUpstream:
			span.SetAttributes(semconv.ErrorTypeKey.String(causeConnectFailure))
			if err != nil {
				span.SetStatus(codes.Error, err.Error())
			} else {
				span.SetStatus(codes.Error, "no upstream")
			}
		case err != nil && !clientErr:
			span.SetAttributes(semconv.ErrorTypeKey.String("connection_error"))
			span.SetStatus(codes.Error, err.Error())
		}
	}
	span.End()
}
