package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"

	"go.opentelemetry.io/contrib/propagators/b3"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Tracing: the OpenTelemetry SDK, its OTLP exporter and the propagator,
// set up from the tracing block of the config file and the standard
// OTEL_* variables; the file wins over the environment. Packages below cmd
// get only a trace.TracerProvider and a propagator (proxy.Options).
//
// Tracing is on when an endpoint is known: tracing.endpoint, or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT. Off,
// nothing is installed and the proxy does no tracing work at all.
// OTEL_SDK_DISABLED=true and OTEL_TRACES_EXPORTER=none turn it off too.

// TracingConfig is where spans go and how many are kept.
type TracingConfig struct {
	// Endpoint is the OTLP receiver: a URL like http://collector:4317
	// (https for TLS), or host:port for plaintext. For http/protobuf,
	// /v1/traces is added when the URL has no path.
	Endpoint string `yaml:"endpoint" json:"endpoint,omitempty"`
	// Protocol is grpc or http/protobuf. Unset: OTEL_EXPORTER_OTLP_
	// (TRACES_)PROTOCOL, else grpc when the endpoint's port is 4317 and
	// http/protobuf otherwise.
	Protocol string `yaml:"protocol" json:"protocol,omitempty"`
	// SamplerRatio is the share of new traces sampled, 0 to 1; a request
	// that carries a sampling decision keeps it (parent-based). Unset:
	// OTEL_TRACES_SAMPLER(_ARG), else 1.
	SamplerRatio *float64 `yaml:"sampler_ratio" json:"sampler_ratio,omitempty"`
	// ServiceName is the resource's service.name. Unset: OTEL_SERVICE_NAME
	// or service.name in OTEL_RESOURCE_ATTRIBUTES, else "outrigger".
	ServiceName string `yaml:"service_name" json:"service_name,omitempty"`
	// Propagators are the formats written upstream: tracecontext,
	// baggage, b3 (single header). Unset: OTEL_PROPAGATORS, else
	// tracecontext and baggage. W3C and B3 (single and multi) are read
	// from requests whatever this says.
	Propagators []string `yaml:"propagators" json:"propagators,omitempty"`
}

// Protocol names.
const (
	protoGRPC = "grpc"
	protoHTTP = "http/protobuf"
)

// validate checks the tracing block; p is its field path.
func (t *TracingConfig) validate(add func(string, string, ...any), p string) {
	if t.Endpoint != "" {
		if _, err := endpointURL(t.Endpoint); err != nil {
			add(p+".endpoint", "%v", err)
		}
	}
	switch t.Protocol {
	case "", protoGRPC, protoHTTP:
	default:
		add(p+".protocol", "unknown protocol %q (want grpc or http/protobuf)", t.Protocol)
	}
	if r := t.SamplerRatio; r != nil && (*r < 0 || *r > 1) {
		add(p+".sampler_ratio", "%v is not between 0 and 1", *r)
	}
	for i, name := range t.Propagators {
		if _, err := injector(name); err != nil {
			add(fmt.Sprintf("%s.propagators[%d]", p, i), "%v", err)
		}
	}
}

// endpointURL parses an endpoint: a URL with scheme http or https, or
// host:port (plaintext).
func endpointURL(s string) (*url.URL, error) {
	if !strings.Contains(s, "://") {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return nil, fmt.Errorf("%q is neither a URL like http://collector:4317 nor host:port", s)
		}
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%q: %v", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%q: scheme %q is not http or https", s, u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%q has no host", s)
	}
	return u, nil
}

// injector is the propagator that writes one format named as in
// OTEL_PROPAGATORS.
func injector(name string) (propagation.TextMapPropagator, error) {
	switch name {
	case "tracecontext":
		return propagation.TraceContext{}, nil
	case "baggage":
		return propagation.Baggage{}, nil
	case "b3":
		return b3.New(b3.WithInjectEncoding(b3.B3SingleHeader)), nil
	case "none":
		return nil, nil
	case "b3multi":
		return nil, errors.New(`"b3multi" is not supported: use "b3" (the single b3 header; both are read)`)
	}
	return nil, fmt.Errorf("unknown propagator %q (want tracecontext, baggage or b3)", name)
}

// tracingSetup is the process's tracing; zero when off.
type tracingSetup struct {
	provider   *tracerProvider // nil when off
	propagator propagation.TextMapPropagator
}

// TracerProvider is what the proxy gets: nil when tracing is off (a nil
// *tracerProvider in the interface would not be nil).
func (s tracingSetup) TracerProvider() trace.TracerProvider {
	if s.provider == nil {
		return nil
	}
	return s.provider
}

// shutdown flushes the spans still queued and stops the exporter; the
// drain's last step.
func (s tracingSetup) shutdown(ctx context.Context) error {
	if s.provider == nil {
		return nil
	}
	return s.provider.Shutdown(ctx)
}

// env is how tracing reads the environment; tests replace it.
type env func(string) string

// setupTracing builds the tracer provider and propagator for cfg (nil: no
// tracing block) and the environment. It starts no connection: the
// exporter dials on its first export.
func setupTracing(ctx context.Context, cfg *TracingConfig, node NodeConfig, getenv env, log *slog.Logger) (tracingSetup, error) {
	if cfg == nil {
		cfg = &TracingConfig{}
	}
	endpoint := cfg.Endpoint
	envEndpoint := cmp.Or(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), getenv("OTEL_EXPORTER_OTLP_ENDPOINT"))
	switch {
	case strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true"):
		return tracingSetup{}, nil
	case endpoint == "" && envEndpoint == "":
		return tracingSetup{}, nil
	case endpoint == "" && strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")) == "none":
		return tracingSetup{}, nil
	}
	protocol := cmp.Or(cfg.Protocol, getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), getenv("OTEL_EXPORTER_OTLP_PROTOCOL"))
	if protocol == "" {
		protocol = defaultOTLPProtocol(cmp.Or(endpoint, envEndpoint))
	}
	client, err := newOTLPClient(protocol, endpoint)
	if err != nil {
		return tracingSetup{}, err
	}
	exp, err := newOTLPExporter(ctx, client)
	if err != nil {
		return tracingSetup{}, err
	}
	res, err := tracingResource(ctx, cfg, node)
	if err != nil {
		return tracingSetup{}, err
	}
	var sampler sdktrace.Sampler
	var sampling string
	if cfg.SamplerRatio != nil {
		sampler = sdktrace.ParentBased(sdktrace.TraceIDRatioBased(*cfg.SamplerRatio))
		sampling = "parent-based ratio " + strconv.FormatFloat(*cfg.SamplerRatio, 'g', -1, 64)
	} else {
		sampler, sampling = samplerFromEnv(getenv, log)
	}
	prop, names, err := tracingPropagator(cfg.Propagators, getenv, log)
	if err != nil {
		return tracingSetup{}, err
	}
	// The SDK reports export failures through the global error handler;
	// they go to our log, at warn.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("tracing", "err", err)
	}))
	// Spans are batched by our queue, not the SDK's batch span processor
	// (spanqueue.go says why); it reads the same OTEL_BSP_* settings.
	queue := newSpanQueue(exp, spanQueueOptionsFromEnv(getenv, log), log)
	log.Info("tracing on", "endpoint", cmp.Or(endpoint, envEndpoint), "protocol", protocol,
		"sampling", sampling, "propagators", strings.Join(names, ","))
	return tracingSetup{provider: newTracerProvider(sampler, res, queue), propagator: prop}, nil
}

// samplerFromEnv is the sampler OTEL_TRACES_SAMPLER and
// OTEL_TRACES_SAMPLER_ARG name, read as the SDK reads them: unset,
// parent-based always on; an unknown name or a bad argument is logged
// and the default (or a ratio of 1) used instead.
func samplerFromEnv(getenv env, log *slog.Logger) (sdktrace.Sampler, string) {
	name := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER")))
	arg := strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER_ARG"))
	ratio := func() sdktrace.Sampler {
		if arg == "" {
			return sdktrace.TraceIDRatioBased(1)
		}
		v, err := strconv.ParseFloat(arg, 64)
		if err != nil || v < 0 || v > 1 {
			log.Warn("OTEL_TRACES_SAMPLER_ARG: not a ratio from 0 to 1; sampling all", "value", arg)
			return sdktrace.TraceIDRatioBased(1)
		}
		return sdktrace.TraceIDRatioBased(v)
	}
	switch name {
	case "":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), "parent-based, all new traces"
	case "always_on":
		return sdktrace.AlwaysSample(), name
	case "always_off":
		return sdktrace.NeverSample(), name
	case "traceidratio":
		s := ratio()
		return s, s.Description()
	case "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), name
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), name
	case "parentbased_traceidratio":
		s := sdktrace.ParentBased(ratio())
		return s, s.Description()
	}
	log.Warn("OTEL_TRACES_SAMPLER: unsupported sampler; sampling parent-based, all new traces", "value", name,
		"supported", "always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio")
	return sdktrace.ParentBased(sdktrace.AlwaysSample()), "parent-based, all new traces"
}

// defaultOTLPProtocol is the protocol of an endpoint none was given for: the
// spec's default, http/protobuf, unless the endpoint is on the OTLP/gRPC
// port 4317 (where http/protobuf would fail on every export).
func defaultOTLPProtocol(endpoint string) string {
	u, err := endpointURL(endpoint)
	if err == nil && u.Port() == "4317" {
		return protoGRPC
	}
	return protoHTTP
}

// newOTLPClient makes the official OTLP client that otlpExporter sends
// through. With endpoint "" the client reads
// OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT itself; headers, timeout,
// compression and certificates always come from its OTEL_EXPORTER_OTLP_*
// variables.
func newOTLPClient(protocol, endpoint string) (otlptrace.Client, error) {
	var u *url.URL
	if endpoint != "" {
		var err error
		if u, err = endpointURL(endpoint); err != nil {
			return nil, fmt.Errorf("tracing: %w", err)
		}
	}
	switch protocol {
	case protoGRPC:
		var opts []otlptracegrpc.Option
		if u != nil {
			// The URL form sets TLS from the scheme both ways: an
			// https endpoint in the file is not sent in plaintext
			// because the environment asked for insecure.
			opts = append(opts, otlptracegrpc.WithEndpointURL(u.String()))
		}
		return otlptracegrpc.NewClient(opts...), nil
	case protoHTTP:
		// Protobuf even when OTEL_EXPORTER_OTLP_PROTOCOL, which the client
		// reads itself, says http/json: the client writes our encoded
		// spans (see otlpExporter) only as protobuf, and the file's
		// protocol wins.
		opts := []otlptracehttp.Option{otlptracehttp.WithEncoding(otlptracehttp.EncodingProtobuf)}
		if u != nil {
			if u.Path == "" || u.Path == "/" {
				u.Path = "/v1/traces"
			}
			opts = append(opts, otlptracehttp.WithEndpointURL(u.String()))
		}
		return otlptracehttp.NewClient(opts...), nil
	}
	return nil, fmt.Errorf("tracing: unknown OTLP protocol %q (want grpc or http/protobuf)", protocol)
}

// tracingResource describes this process: service.name (file, else
// OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES, else "outrigger"),
// service.version, and the node's name and namespace.
func tracingResource(ctx context.Context, cfg *TracingConfig, node NodeConfig) (*resource.Resource, error) {
	detectors := []resource.Option{
		resource.WithAttributes(semconv.ServiceName("outrigger"), semconv.ServiceVersion(buildVersion())),
	}
	if node.Name != "" {
		detectors = append(detectors, resource.WithAttributes(semconv.ServiceInstanceID(node.Name)))
	}
	if node.Namespace != "" {
		detectors = append(detectors, resource.WithAttributes(semconv.ServiceNamespace(node.Namespace)))
	}
	detectors = append(detectors, resource.WithTelemetrySDK(), resource.WithFromEnv())
	if cfg.ServiceName != "" {
		detectors = append(detectors, resource.WithAttributes(semconv.ServiceName(cfg.ServiceName)))
	}
	res, err := resource.New(ctx, detectors...)
	if err != nil && res == nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	// A partial resource (say, a malformed OTEL_RESOURCE_ATTRIBUTES
	// entry) still names the service.
	return res, nil
}

// tracingPropagator reads W3C trace context, baggage and B3 (single and
// multi header; W3C wins when both come) and writes the formats named in
// the file, else in OTEL_PROPAGATORS, else tracecontext and baggage.
func tracingPropagator(names []string, getenv env, log *slog.Logger) (propagation.TextMapPropagator, []string, error) {
	fromEnv := false
	if len(names) == 0 {
		if v := getenv("OTEL_PROPAGATORS"); v != "" {
			fromEnv = true
			for n := range strings.SplitSeq(v, ",") {
				if n = strings.TrimSpace(n); n != "" {
					names = append(names, n)
				}
			}
		}
	}
	if len(names) == 0 {
		names = []string{"tracecontext", "baggage"}
	}
	var inject []propagation.TextMapPropagator
	var used []string
	for _, n := range names {
		p, err := injector(n)
		if err != nil {
			if fromEnv {
				log.Warn("OTEL_PROPAGATORS: ignored", "err", err)
				continue
			}
			return nil, nil, fmt.Errorf("tracing: %w", err)
		}
		if p != nil {
			inject = append(inject, p)
			used = append(used, n)
		}
	}
	return &propagator{
		extract: propagation.NewCompositeTextMapPropagator(b3.New(), propagation.TraceContext{}, propagation.Baggage{}),
		inject:  propagation.NewCompositeTextMapPropagator(inject...),
	}, used, nil
}

// propagator reads every format it knows and writes the configured ones.
type propagator struct {
	extract, inject propagation.TextMapPropagator
}

func (p *propagator) Inject(ctx context.Context, c propagation.TextMapCarrier) {
	p.inject.Inject(ctx, c)
}

func (p *propagator) Extract(ctx context.Context, c propagation.TextMapCarrier) context.Context {
	return p.extract.Extract(ctx, c)
}

// Fields are the fields Inject writes.
func (p *propagator) Fields() []string { return p.inject.Fields() }
