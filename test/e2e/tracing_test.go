package e2e

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
)

// The tracing tests chain two real Outrigger processes: client →
// outrigger A (http listener) → outrigger B (http listener) → echo, with
// a real OTLP trace receiver (the collector's gRPC trace service) that
// both export to. A's upstream has an endpoint where nothing listens, so
// some requests need a second attempt.
const (
	traceReceiver = "127.0.0.1:9720"
	traceEcho     = "127.0.0.1:9721"
	traceDead     = "127.0.0.1:9722" // nothing listens
	traceB        = "127.0.0.1:9723"
	traceA        = "127.0.0.1:9724"
	traceAdminA   = "127.0.0.1:9731"
	traceAdminB   = "127.0.0.1:9732"
)

var tracePorts = []string{"9720", "9721", "9722", "9723", "9724", "9731", "9732"}

// otlpReceiver keeps every span exported to it, with its exporter's
// service.name.
type otlpReceiver struct {
	collectortrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []receivedSpan
}

type receivedSpan struct {
	service string
	*tracepb.Span
}

func (r *otlpReceiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		svc := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.Key == "service.name" {
				svc = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				r.spans = append(r.spans, receivedSpan{svc, s})
			}
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func (r *otlpReceiver) all() []receivedSpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]receivedSpan(nil), r.spans...)
}

// startOTLPReceiver checks that every port of these tests is free, so
// that a stray process cannot answer in place of the one under test, and
// starts the receiver.
func startOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	for _, port := range tracePorts {
		ln, err := net.Listen("tcp", "127.0.0.1:"+port)
		if err != nil {
			t.Fatalf("port %s is taken by another process (%v); stop it and run the tests again", port, err)
		}
		ln.Close()
	}
	ln, err := net.Listen("tcp", traceReceiver)
	if err != nil {
		t.Fatal(err)
	}
	r := &otlpReceiver{}
	s := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(s, r)
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return r
}

// startTraced starts one Outrigger named name (its service.name) with an
// http listener on listen sending to service, and waits until it is ready.
func startTraced(t *testing.T, name, admin, listen, service, services, tracing string) *process {
	t.Helper()
	dir := t.TempDir()
	config := fmt.Sprintf(`node: {name: %s, namespace: e2e}
admin: {listen: %s}
drain: {timeout: 5s}
discovery: [{name: local, file: {path: services.yaml}}]
outbound:
  - {name: %s, listen: %s, protocol: http, service: %s}
tracing: %s
`, name, admin, name, listen, service, tracing)
	for file, content := range map[string]string{"outrigger.yaml": config, "services.yaml": services} {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := start(t, "outrigger", "run", "-c", filepath.Join(dir, "outrigger.yaml"), "--log-level", "debug")
	deadline := time.Now().Add(waitLimit)
	for {
		code, _ := getJSON(t, "http://"+admin+"/ready", nil)
		if code == http.StatusOK {
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("outrigger %s exited before it was ready:\n%s", name, p.output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("outrigger %s not ready within %v", name, waitLimit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startChain starts echo, B and A with the given tracing blocks.
func startChain(t *testing.T, tracingA, tracingB string) (a, b *process) {
	t.Helper()
	startEcho(t, "echo-1", traceEcho, "-mode", "http")
	b = startTraced(t, "b", traceAdminB, traceB, "echo.e2e", `services:
  - name: echo.e2e
    endpoints:
      - {id: echo-1, address: 127.0.0.1, port: 9721}
`, tracingB)
	a = startTraced(t, "a", traceAdminA, traceA, "b.e2e", `services:
  - name: b.e2e
    endpoints:
      - {id: dead, address: 127.0.0.1, port: 9722}
      - {id: outrigger-b, address: 127.0.0.1, port: 9723}
`, tracingA)
	return a, b
}

// stop drains p with SIGTERM and waits for it to exit: its last step
// flushes the spans it still holds.
func stop(t *testing.T, p *process) {
	t.Helper()
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Fatalf("outrigger exited %d:\n%s", code, p.output())
	}
}

// sendTraced sends n GETs through A, each on a new connection, the last
// one with the client's traceparent (parent span clientSpan).
func sendTraced(t *testing.T, n int, traceID, clientSpan string) {
	t.Helper()
	client := &http.Client{Timeout: waitLimit, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := range n {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s/req/%d", traceA, i), nil)
		if i == n-1 && traceID != "" {
			req.Header.Set("traceparent", "00-"+traceID+"-"+clientSpan+"-01")
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
	}
}

func spanAttr(s *tracepb.Span, key string) string {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			if v, ok := kv.Value.Value.(*commonpb.AnyValue_IntValue); ok {
				return fmt.Sprint(v.IntValue)
			}
			return kv.GetValue().GetStringValue()
		}
	}
	return ""
}

func id(b []byte) string { return hex.EncodeToString(b) }

// describe is one span for failure messages: service kind name
// (attempt) span<-parent.
func describe(s receivedSpan) string {
	return fmt.Sprintf("%s %s %s attempt=%s %s<-%s status=%v", s.service, s.Kind, s.Name,
		spanAttr(s.Span, "outrigger.attempt"), id(s.SpanId)[:6], id(s.ParentSpanId), s.Status.GetCode())
}

// TestTracingAcrossTwoProxies: every request's spans form one trace,
// A server → A client (one per attempt) → B server → B client, with the
// parent links between them; a failed connect is a client span of its own
// with an error, followed by the attempt that worked; a client's
// traceparent is the parent of A's server span.
func TestTracingAcrossTwoProxies(t *testing.T) {
	r := startOTLPReceiver(t)
	tracing := "{endpoint: \"http://" + traceReceiver + "\", protocol: grpc, sampler_ratio: 1, service_name: %s}"
	a, b := startChain(t, fmt.Sprintf(tracing, "outrigger-a"), fmt.Sprintf(tracing, "outrigger-b"))
	const (
		n          = 6
		clientTID  = "5b8efff798038103d269b633813fc60c"
		clientSpan = "eee19b7ec3c1b174"
	)
	sendTraced(t, n, clientTID, clientSpan)
	stop(t, a)
	stop(t, b)

	traces := map[string][]receivedSpan{}
	for _, s := range r.all() {
		traces[id(s.TraceId)] = append(traces[id(s.TraceId)], s)
	}
	if len(traces) != n {
		for tid, spans := range traces {
			for _, s := range spans {
				t.Logf("%s %s", tid, describe(s))
			}
		}
		t.Fatalf("%d traces, want %d (one per request)", len(traces), n)
	}
	retried := 0
	for tid, spans := range traces {
		var aServer, bServer, bClient []receivedSpan
		var aClients []receivedSpan
		for _, s := range spans {
			switch {
			case s.service == "outrigger-a" && s.Kind == tracepb.Span_SPAN_KIND_SERVER:
				aServer = append(aServer, s)
			case s.service == "outrigger-a" && s.Kind == tracepb.Span_SPAN_KIND_CLIENT:
				aClients = append(aClients, s)
			case s.service == "outrigger-b" && s.Kind == tracepb.Span_SPAN_KIND_SERVER:
				bServer = append(bServer, s)
			case s.service == "outrigger-b" && s.Kind == tracepb.Span_SPAN_KIND_CLIENT:
				bClient = append(bClient, s)
			}
		}
		var lines []string
		for _, s := range spans {
			lines = append(lines, describe(s))
		}
		tree := strings.Join(lines, "\n  ")
		if len(aServer) != 1 || len(bServer) != 1 || len(bClient) != 1 || len(aClients) < 1 || len(aClients) > 2 ||
			len(spans) != 3+len(aClients) {
			t.Errorf("trace %s: want 1 A server, 1-2 A clients, 1 B server, 1 B client:\n  %s", tid, tree)
			continue
		}
		sort.Slice(aClients, func(i, j int) bool {
			return spanAttr(aClients[i].Span, "outrigger.attempt") < spanAttr(aClients[j].Span, "outrigger.attempt")
		})
		last := aClients[len(aClients)-1]
		for i, c := range aClients {
			if id(c.ParentSpanId) != id(aServer[0].SpanId) {
				t.Errorf("trace %s: A client span %d is not a child of A's server span:\n  %s", tid, i, tree)
			}
			if got := spanAttr(c.Span, "outrigger.attempt"); got != fmt.Sprint(i+1) {
				t.Errorf("trace %s: A client span %d has attempt %s:\n  %s", tid, i, got, tree)
			}
		}
		if len(aClients) == 2 {
			retried++
			first := aClients[0]
			if spanAttr(first.Span, "outrigger.endpoint") != "local/dead" || spanAttr(first.Span, "error.type") != "connect_failure" ||
				first.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR {
				t.Errorf("trace %s: the first attempt is not a failed connect to local/dead:\n  %s", tid, tree)
			}
		}
		if spanAttr(last.Span, "outrigger.endpoint") != "local/outrigger-b" || spanAttr(last.Span, "http.response.status_code") != "200" {
			t.Errorf("trace %s: the last A attempt did not reach B with 200:\n  %s", tid, tree)
		}
		if id(bServer[0].ParentSpanId) != id(last.SpanId) {
			t.Errorf("trace %s: B's server span is not a child of A's last client span:\n  %s", tid, tree)
		}
		if id(bClient[0].ParentSpanId) != id(bServer[0].SpanId) {
			t.Errorf("trace %s: B's client span is not a child of B's server span:\n  %s", tid, tree)
		}
		if spanAttr(bClient[0].Span, "outrigger.endpoint") != "local/echo-1" {
			t.Errorf("trace %s: B's client span is not to echo-1:\n  %s", tid, tree)
		}
		if tid == clientTID {
			if id(aServer[0].ParentSpanId) != clientSpan {
				t.Errorf("trace %s: A's server span has parent %s, want the client's %s", tid, id(aServer[0].ParentSpanId), clientSpan)
			}
		} else if len(aServer[0].ParentSpanId) != 0 {
			t.Errorf("trace %s: A's server span has a parent without a client traceparent:\n  %s", tid, tree)
		}
		if t.Failed() {
			continue
		}
		t.Logf("trace %s:\n  %s", tid, tree)
	}
	if _, ok := traces[clientTID]; !ok {
		t.Errorf("no trace %s: the client's traceparent was not continued", clientTID)
	}
	if retried == 0 {
		t.Errorf("no trace with a retried connect in %d requests; the dead endpoint was never picked", n)
	}
}

// TestTracingSampledOff: at sampler ratio 0 neither proxy exports a span,
// and the requests still go through.
func TestTracingSampledOff(t *testing.T) {
	r := startOTLPReceiver(t)
	tracing := "{endpoint: \"http://" + traceReceiver + "\", protocol: grpc, sampler_ratio: 0}"
	a, b := startChain(t, tracing, tracing)
	sendTraced(t, 10, "", "")
	stop(t, a)
	stop(t, b)
	if spans := r.all(); len(spans) != 0 {
		t.Errorf("%d spans exported at ratio 0, want none; first: %s", len(spans), describe(spans[0]))
	}
}
