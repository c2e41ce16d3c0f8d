package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

func TestTracingConfigErrors(t *testing.T) {
	cfg := goodConfig + `tracing:
  endpoint: "collector 4317"
  protocol: thrift
  sampler_ratio: 1.5
  propagators: [tracecontext, b3multi, jaeger]
`
	_, err := ParseConfig("o.yaml", []byte(cfg))
	if err == nil {
		t.Fatal("no error")
	}
	got := strings.Split(err.Error(), "\n")
	want := []string{
		`o.yaml:20: tracing.endpoint: "collector 4317" is neither a URL like http://collector:4317 nor host:port`,
		`o.yaml:21: tracing.protocol: unknown protocol "thrift" (want grpc or http/protobuf)`,
		`o.yaml:22: tracing.sampler_ratio: 1.5 is not between 0 and 1`,
		`o.yaml:23: tracing.propagators[1]: "b3multi" is not supported: use "b3" (the single b3 header; both are read)`,
		`o.yaml:23: tracing.propagators[2]: unknown propagator "jaeger" (want tracecontext, baggage or b3)`,
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("errors (-got +want):\n%s", diff)
	}
}

func TestTracingConfigGood(t *testing.T) {
	cfg, err := ParseConfig("o.yaml", []byte(goodConfig+`tracing: {endpoint: "http://otel:4318", protocol: http/protobuf, sampler_ratio: 0, service_name: web, propagators: [tracecontext, baggage, b3]}
`))
	if err != nil {
		t.Fatal(err)
	}
	zero := 0.0
	want := &TracingConfig{Endpoint: "http://otel:4318", Protocol: "http/protobuf", SamplerRatio: &zero,
		ServiceName: "web", Propagators: []string{"tracecontext", "baggage", "b3"}}
	if diff := cmp.Diff(cfg.Tracing, want); diff != "" {
		t.Errorf("(-got +want):\n%s", diff)
	}
}

// envMap is an env over a map.
func envMap(m map[string]string) env { return func(k string) string { return m[k] } }

func TestSetupTracingOff(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  *TracingConfig
		env  map[string]string
	}{
		{"nothing", nil, nil},
		{"block without endpoint", &TracingConfig{Protocol: "grpc", ServiceName: "x"}, nil},
		{"sdk disabled", &TracingConfig{Endpoint: "127.0.0.1:4317"}, map[string]string{"OTEL_SDK_DISABLED": "true"}},
		{"exporter none", nil, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_TRACES_EXPORTER": "none"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := setupTracing(context.Background(), tc.cfg, NodeConfig{}, envMap(tc.env), slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			if s.TracerProvider() != nil || s.propagator != nil {
				t.Errorf("tracing set up: %+v", s)
			}
		})
	}
}

func TestDefaultOTLPProtocol(t *testing.T) {
	for endpoint, want := range map[string]string{
		"http://collector:4317":  "grpc",
		"collector:4317":         "grpc",
		"https://collector:4318": "http/protobuf",
		"http://collector":       "http/protobuf",
	} {
		if got := defaultOTLPProtocol(endpoint); got != want {
			t.Errorf("defaultOTLPProtocol(%q) = %q, want %q", endpoint, got, want)
		}
	}
}

// otlpReceiver is the OTLP trace service of a collector, on loopback
// over gRPC or HTTP; it keeps what it is sent.
type otlpReceiver struct {
	collectortrace.UnimplementedTraceServiceServer
	mu  sync.Mutex
	got []*tracepb.ResourceSpans
}

func (r *otlpReceiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, req.ResourceSpans...)
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func (r *otlpReceiver) resourceSpans() []*tracepb.ResourceSpans {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// startGRPCReceiver serves r over gRPC and returns its address.
func startGRPCReceiver(t testing.TB, r *otlpReceiver) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(s, r)
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return ln.Addr().String()
}

// startHTTPReceiver serves r as OTLP/HTTP (protobuf) and returns its URL.
func startHTTPReceiver(t *testing.T, r *otlpReceiver) string {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/v1/traces" {
			http.NotFound(w, req)
			return
		}
		b, _ := io.ReadAll(req.Body)
		var m collectortrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(b, &m); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		r.Export(req.Context(), &m)
		out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(out)
	}))
	t.Cleanup(s.Close)
	return s.URL
}

// resourceAttr returns a string attribute of rs's resource.
func resourceAttr(rs *tracepb.ResourceSpans, key string) string {
	for _, kv := range rs.GetResource().GetAttributes() {
		if kv.Key == key {
			return kv.GetValue().GetStringValue()
		}
	}
	return ""
}

func spanCount(rss []*tracepb.ResourceSpans) int {
	n := 0
	for _, rs := range rss {
		for _, ss := range rs.ScopeSpans {
			n += len(ss.Spans)
		}
	}
	return n
}

// TestSetupTracingExports runs the real exporter against a real receiver:
// the file's settings win over the environment's, the environment alone
// configures everything, and ratio 0 sends nothing.
func TestSetupTracingExports(t *testing.T) {
	ratio := func(r float64) *float64 { return &r }
	for _, tc := range []struct {
		name      string
		http      bool // the receiver speaks OTLP/HTTP, else gRPC
		cfg       func(addr string) *TracingConfig
		env       func(addr string) map[string]string
		wantSpans int
		wantName  string
	}{
		{
			name: "file wins over env",
			cfg: func(addr string) *TracingConfig {
				return &TracingConfig{Endpoint: addr, Protocol: "grpc", ServiceName: "from-file", SamplerRatio: ratio(1)}
			},
			env: func(string) map[string]string {
				return map[string]string{
					"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
					"OTEL_SERVICE_NAME": "from-env", "OTEL_TRACES_SAMPLER": "always_off",
					"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=test",
				}
			},
			wantSpans: 1, wantName: "from-file",
		},
		{
			name: "env only, grpc",
			cfg:  func(string) *TracingConfig { return nil },
			env: func(addr string) map[string]string {
				return map[string]string{
					"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + addr, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
					"OTEL_SERVICE_NAME": "from-env", "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=test",
				}
			},
			wantSpans: 1, wantName: "from-env",
		},
		{
			name: "env only, http",
			http: true,
			cfg:  func(string) *TracingConfig { return nil },
			env: func(url string) map[string]string {
				return map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": url, "OTEL_RESOURCE_ATTRIBUTES": "service.name=attrs,deployment.environment.name=test"}
			},
			wantSpans: 1, wantName: "attrs",
		},
		{
			name: "file, http, no protocol",
			http: true,
			cfg:  func(url string) *TracingConfig { return &TracingConfig{Endpoint: url} },
			env: func(string) map[string]string {
				return map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=test"}
			},
			wantSpans: 1, wantName: "outrigger",
		},
		{
			// The HTTP client would read OTEL_EXPORTER_OTLP_PROTOCOL itself
			// and send JSON, which carries none of our encoded spans.
			name: "file http/protobuf over env http/json",
			http: true,
			cfg:  func(url string) *TracingConfig { return &TracingConfig{Endpoint: url, Protocol: "http/protobuf"} },
			env: func(string) map[string]string {
				return map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json",
					"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=test"}
			},
			wantSpans: 1, wantName: "outrigger",
		},
		{
			name: "env sampler ratio 0",
			cfg:  func(string) *TracingConfig { return nil },
			env: func(addr string) map[string]string {
				return map[string]string{
					"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + addr, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
					"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0",
				}
			},
			wantSpans: 0,
		},
		{
			name: "file sampler ratio 0",
			cfg: func(addr string) *TracingConfig {
				return &TracingConfig{Endpoint: addr, Protocol: "grpc", SamplerRatio: ratio(0)}
			},
			env:       func(string) map[string]string { return nil },
			wantSpans: 0,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &otlpReceiver{}
			var addr string
			if tc.http {
				addr = startHTTPReceiver(t, r)
			} else {
				addr = startGRPCReceiver(t, r)
			}
			// The exporters read their variables themselves: set them
			// for real.
			for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
				"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_SERVICE_NAME",
				"OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_SDK_DISABLED",
				"OTEL_TRACES_EXPORTER", "OTEL_PROPAGATORS"} {
				t.Setenv(k, "")
			}
			for k, v := range tc.env(addr) {
				t.Setenv(k, v)
			}
			s, err := setupTracing(context.Background(), tc.cfg(addr), NodeConfig{Name: "web-1", Namespace: "shop"},
				os.Getenv, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			if s.TracerProvider() == nil {
				t.Fatal("tracing is off")
			}
			for range 3 {
				_, span := s.TracerProvider().Tracer("test").Start(context.Background(), "op")
				span.End()
			}
			if err := s.shutdown(context.Background()); err != nil {
				t.Fatalf("shutdown: %v", err)
			}
			got := r.resourceSpans()
			if n := spanCount(got); n != 3*tc.wantSpans {
				t.Fatalf("receiver got %d spans, want %d", n, 3*tc.wantSpans)
			}
			if tc.wantSpans == 0 {
				return
			}
			wantRes := map[string]string{
				"service.name": tc.wantName, "service.instance.id": "web-1", "service.namespace": "shop",
				"deployment.environment.name": "test",
			}
			gotRes := map[string]string{}
			for k := range wantRes {
				gotRes[k] = resourceAttr(got[0], k)
			}
			if diff := cmp.Diff(gotRes, wantRes); diff != "" {
				t.Errorf("resource (-got +want):\n%s", diff)
			}
		})
	}
}

// mapCarrier is a TextMapCarrier over a map of lower-case keys.
type mapCarrier map[string]string

func (m mapCarrier) Get(k string) string { return m[strings.ToLower(k)] }
func (m mapCarrier) Set(k, v string)     { m[strings.ToLower(k)] = v }
func (m mapCarrier) Keys() []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

var _ propagation.TextMapCarrier = mapCarrier{}

func TestTracingPropagator(t *testing.T) {
	const (
		tid   = "4bf92f3577b34da6a3ce929d0e0e4736"
		sid   = "00f067aa0ba902b7"
		b3tid = "80f198ee56343ba864fe8b2a57d3eff7"
		b3sid = "e457b5a2e4d86bd1"
	)
	log := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		name       string
		names      []string
		envProp    string
		in         mapCarrier
		wantParent string // trace/span extracted
		wantFields []string
	}{
		{"w3c", nil, "", mapCarrier{"traceparent": "00-" + tid + "-" + sid + "-01"}, tid + "/" + sid,
			[]string{"baggage", "traceparent", "tracestate"}},
		{"b3 single read, not written", nil, "", mapCarrier{"b3": b3tid + "-" + b3sid + "-1"}, b3tid + "/" + b3sid,
			[]string{"baggage", "traceparent", "tracestate"}},
		{"b3 multi read", nil, "", mapCarrier{"x-b3-traceid": b3tid, "x-b3-spanid": b3sid, "x-b3-sampled": "1"}, b3tid + "/" + b3sid,
			[]string{"baggage", "traceparent", "tracestate"}},
		{"w3c wins over b3", []string{"b3", "tracecontext"}, "",
			mapCarrier{"traceparent": "00-" + tid + "-" + sid + "-01", "b3": b3tid + "-" + b3sid + "-1"}, tid + "/" + sid,
			[]string{"b3", "traceparent", "tracestate"}},
		{"from OTEL_PROPAGATORS, unknown skipped", nil, "tracecontext, b3, jaeger",
			mapCarrier{"traceparent": "00-" + tid + "-" + sid + "-01"}, tid + "/" + sid,
			[]string{"b3", "traceparent", "tracestate"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _, err := tracingPropagator(tc.names, envMap(map[string]string{"OTEL_PROPAGATORS": tc.envProp}), log)
			if err != nil {
				t.Fatal(err)
			}
			sc := trace.SpanContextFromContext(p.Extract(context.Background(), tc.in))
			if got := sc.TraceID().String() + "/" + sc.SpanID().String(); got != tc.wantParent {
				t.Errorf("extracted %s, want %s", got, tc.wantParent)
			}
			fields := p.Fields()
			slices.Sort(fields)
			if diff := cmp.Diff(fields, tc.wantFields); diff != "" {
				t.Errorf("fields (-got +want):\n%s", diff)
			}
		})
	}
}
