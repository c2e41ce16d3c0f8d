package main

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/outrigger-mesh/outrigger/balancer"
	"github.com/outrigger-mesh/outrigger/resilience"
)

// UpstreamConfig is the per-service resilience of one upstream service, the
// value of its key under the top-level upstreams map. It lives there, not
// on listeners, because one balancer (and so one set of per-endpoint
// breakers, ejections and health checks) serves a service for every
// listener and route that sends to it: a setting per service cannot
// conflict. A block left out turns its feature off.
type UpstreamConfig struct {
	CircuitBreaker   *CircuitBreakerConfig   `yaml:"circuit_breaker" json:"circuit_breaker,omitempty"`
	OutlierDetection *OutlierDetectionConfig `yaml:"outlier_detection" json:"outlier_detection,omitempty"`
	HealthCheck      *HealthCheckConfig      `yaml:"health_check" json:"health_check,omitempty"`

	// Limits over every listener (limitscfg.go); 0: no limit.
	MaxRequests    int          `yaml:"max_requests" json:"max_requests,omitempty"`
	MaxConnections int          `yaml:"max_connections" json:"max_connections,omitempty"`
	Retry          *RetryConfig `yaml:"retry" json:"retry,omitempty"` // see retrycfg.go
}

// CircuitBreakerConfig is resilience.BreakerConfig as written in the file.
// Counts are pointers so that an explicit 0 is told from a field left out.
type CircuitBreakerConfig struct {
	ConsecutiveFailures *int     `yaml:"consecutive_failures" json:"consecutive_failures,omitempty"`
	FailureRatio        *float64 `yaml:"failure_ratio" json:"failure_ratio,omitempty"`
	Window              Duration `yaml:"window" json:"window,omitzero"`
	MinRequests         *int     `yaml:"min_requests" json:"min_requests,omitempty"`
	Open                Duration `yaml:"open" json:"open"`
	MaxOpen             Duration `yaml:"max_open" json:"max_open"`
	HalfOpenRequests    *int     `yaml:"half_open_requests" json:"half_open_requests"`
}

// OutlierDetectionConfig is resilience.OutlierConfig as written in the file.
type OutlierDetectionConfig struct {
	Consecutive5xx                 *int     `yaml:"consecutive_5xx" json:"consecutive_5xx,omitempty"`
	ConsecutiveGatewayErrors       *int     `yaml:"consecutive_gateway_errors" json:"consecutive_gateway_errors,omitempty"`
	ConsecutiveLocalOriginFailures *int     `yaml:"consecutive_local_origin_failures" json:"consecutive_local_origin_failures,omitempty"`
	BaseEjectionTime               Duration `yaml:"base_ejection_time" json:"base_ejection_time"`
	MaxEjectionTime                Duration `yaml:"max_ejection_time" json:"max_ejection_time"`
	MaxEjectionPercent             *int     `yaml:"max_ejection_percent" json:"max_ejection_percent"`
}

// HealthCheckConfig is resilience.HealthConfig as written in the file.
type HealthCheckConfig struct {
	Type               string           `yaml:"type" json:"type"`
	Interval           Duration         `yaml:"interval" json:"interval"`
	Timeout            Duration         `yaml:"timeout" json:"timeout"`
	Jitter             *float64         `yaml:"jitter" json:"jitter"`
	HealthyThreshold   *int             `yaml:"healthy_threshold" json:"healthy_threshold"`
	UnhealthyThreshold *int             `yaml:"unhealthy_threshold" json:"unhealthy_threshold"`
	HTTP               *HTTPHealthCheck `yaml:"http" json:"http,omitempty"`
	GRPC               *GRPCHealthCheck `yaml:"grpc" json:"grpc,omitempty"`
}

// HTTPHealthCheck is the request of an http health check.
type HTTPHealthCheck struct {
	Path string `yaml:"path" json:"path"`
	Host string `yaml:"host" json:"host,omitempty"`
	// ExpectedStatuses are codes ("200") and ranges ("200-399"); together
	// they must cover one contiguous range (the checker takes one range).
	ExpectedStatuses []string `yaml:"expected_statuses" json:"expected_statuses"`
}

// GRPCHealthCheck is the question of a grpc health check.
type GRPCHealthCheck struct {
	Service string `yaml:"service" json:"service"`
}

// Defaults of the upstreams settings that cmd/outrigger chooses itself
// (the rest are the resilience package's); docs/configuration.md lists all.
const (
	// defaultBreakerFailures turns a circuit_breaker block that names no
	// trip condition on (Envoy's consecutive_5xx default, for symmetry).
	defaultBreakerFailures = 5
	// defaultOutlier5xx is Envoy's consecutive_5xx default, used when an
	// outlier_detection block names no run of failures.
	defaultOutlier5xx = 5
)

var healthTypes = []string{resilience.HealthTCP, resilience.HealthHTTP, resilience.HealthGRPC}

// upstreamPath is the field path of service's entry, quoted when the key
// holds dots, as service keys do ("upstreams.'orders.shop'", go-yaml's
// path syntax).
func upstreamPath(service string) string { return joinKey("upstreams", service) }

// setDefaults fills every default, the resilience package's included, so
// that /config shows the values in effect. Fields that depend on others
// (max_open on open) are filled from the values given; validation runs
// afterwards and checks them together.
func (u *UpstreamConfig) setDefaults() {
	if b := u.CircuitBreaker; b != nil {
		if b.ConsecutiveFailures == nil && b.FailureRatio == nil {
			b.ConsecutiveFailures = ptr(defaultBreakerFailures)
		}
		if b.FailureRatio != nil {
			b.Window = cmpOr(b.Window, Dur(resilience.DefaultBreakerWindow))
			if b.MinRequests == nil {
				b.MinRequests = ptr(resilience.DefaultBreakerMinRequests)
			}
		}
		b.Open = cmpOr(b.Open, Dur(resilience.DefaultBreakerOpenTime))
		if b.Open.invalid == "" {
			b.MaxOpen = cmpOr(b.MaxOpen, Dur(10*b.Open.d))
		}
		if b.HalfOpenRequests == nil {
			b.HalfOpenRequests = ptr(resilience.DefaultBreakerProbes)
		}
	}
	if o := u.OutlierDetection; o != nil {
		if o.Consecutive5xx == nil && o.ConsecutiveGatewayErrors == nil && o.ConsecutiveLocalOriginFailures == nil {
			o.Consecutive5xx = ptr(defaultOutlier5xx)
		}
		o.BaseEjectionTime = cmpOr(o.BaseEjectionTime, Dur(resilience.DefaultBaseEjectionTime))
		if o.BaseEjectionTime.invalid == "" {
			o.MaxEjectionTime = cmpOr(o.MaxEjectionTime, Dur(10*o.BaseEjectionTime.d))
		}
		if o.MaxEjectionPercent == nil {
			o.MaxEjectionPercent = ptr(int(resilience.DefaultMaxEjectionShare * 100))
		}
	}
	if h := u.HealthCheck; h != nil {
		h.Interval = cmpOr(h.Interval, Dur(resilience.DefaultHealthInterval))
		h.Timeout = cmpOr(h.Timeout, Dur(resilience.DefaultHealthTimeout))
		if h.Jitter == nil {
			h.Jitter = ptr(resilience.DefaultHealthJitter)
		}
		if h.HealthyThreshold == nil {
			h.HealthyThreshold = ptr(resilience.DefaultHealthyCount)
		}
		if h.UnhealthyThreshold == nil {
			h.UnhealthyThreshold = ptr(resilience.DefaultUnhealthyCount)
		}
		if h.Type == resilience.HealthHTTP {
			if h.HTTP == nil {
				h.HTTP = &HTTPHealthCheck{}
			}
			h.HTTP.Path = cmpOr(h.HTTP.Path, resilience.DefaultHealthPath)
			if len(h.HTTP.ExpectedStatuses) == 0 {
				h.HTTP.ExpectedStatuses = []string{fmt.Sprintf("%d-%d", resilience.DefaultHealthStatusMin, resilience.DefaultHealthStatusMax)}
			}
		}
		if h.Type == resilience.HealthGRPC && h.GRPC == nil {
			h.GRPC = &GRPCHealthCheck{}
		}
	}
}

func ptr[T any](v T) *T { return &v }

// validate checks one upstreams entry; p is its field path.
func (u *UpstreamConfig) validate(add func(string, string, ...any), checkDur func(string, Duration), p string) {
	positive := checkDur // 0 (or left out) means the default
	count := func(path string, v *int, what string) {
		switch {
		case v == nil:
		case *v < 1:
			add(path, "%d: must be 1 or more%s", *v, what)
		case *v > math.MaxInt32:
			add(path, "%d is too large (at most %d)", *v, math.MaxInt32)
		}
	}
	if b := u.CircuitBreaker; b != nil {
		bp := p + ".circuit_breaker"
		count(bp+".consecutive_failures", b.ConsecutiveFailures, " (leave it out to trip on failure_ratio only)")
		count(bp+".min_requests", b.MinRequests, "")
		if b.FailureRatio != nil && (*b.FailureRatio <= 0 || *b.FailureRatio > 1) {
			add(bp+".failure_ratio", "%v is outside (0, 1]: write the share of failures that trips the breaker, like 0.5", *b.FailureRatio)
		}
		if b.FailureRatio == nil {
			if b.Window != (Duration{}) {
				add(bp+".window", "applies only with failure_ratio")
			}
			if b.MinRequests != nil {
				add(bp+".min_requests", "applies only with failure_ratio")
			}
		}
		positive(bp+".window", b.Window)
		if b.Window.invalid == "" && b.Window.d > 0 && b.Window.d < 10*time.Millisecond {
			add(bp+".window", "%v is shorter than 10ms", b.Window.d)
		}
		positive(bp+".open", b.Open)
		positive(bp+".max_open", b.MaxOpen)
		if open := cmpOr(b.Open.d, resilience.DefaultBreakerOpenTime); b.MaxOpen.d > 0 && b.MaxOpen.d < open {
			add(bp+".max_open", "%v is less than open (%v)", b.MaxOpen.d, open)
		}
		if v := b.HalfOpenRequests; v != nil && (*v < 1 || *v > resilience.MaxBreakerProbes) {
			add(bp+".half_open_requests", "%d is out of range 1..%d", *v, resilience.MaxBreakerProbes)
		}
	}
	if o := u.OutlierDetection; o != nil {
		op := p + ".outlier_detection"
		count(op+".consecutive_5xx", o.Consecutive5xx, "")
		count(op+".consecutive_gateway_errors", o.ConsecutiveGatewayErrors, "")
		count(op+".consecutive_local_origin_failures", o.ConsecutiveLocalOriginFailures, "")
		positive(op+".base_ejection_time", o.BaseEjectionTime)
		positive(op+".max_ejection_time", o.MaxEjectionTime)
		if base := cmpOr(o.BaseEjectionTime.d, resilience.DefaultBaseEjectionTime); o.MaxEjectionTime.d > 0 && o.MaxEjectionTime.d < base {
			add(op+".max_ejection_time", "%v is less than base_ejection_time (%v)", o.MaxEjectionTime.d, base)
		}
		if v := o.MaxEjectionPercent; v != nil && (*v < 1 || *v > 100) {
			add(op+".max_ejection_percent", "%d is out of range 1..100 (to eject nothing, remove outlier_detection)", *v)
		}
	}
	if h := u.HealthCheck; h != nil {
		hp := p + ".health_check"
		switch {
		case h.Type == "":
			add(hp+".type", "required: %s", strings.Join(healthTypes, ", "))
		case !slices.Contains(healthTypes, h.Type):
			add(hp+".type", "unknown health check type %q (want %s)", h.Type, strings.Join(healthTypes, ", "))
		}
		positive(hp+".interval", h.Interval)
		positive(hp+".timeout", h.Timeout)
		if h.Jitter != nil && (*h.Jitter < 0 || *h.Jitter >= 1) {
			add(hp+".jitter", "%v is outside [0, 1): write a share of the interval, like 0.1", *h.Jitter)
		}
		count(hp+".healthy_threshold", h.HealthyThreshold, "")
		count(hp+".unhealthy_threshold", h.UnhealthyThreshold, "")
		if h.HTTP != nil {
			if h.Type != resilience.HealthHTTP {
				add(hp+".http", "applies only to type: http")
			}
			if h.HTTP.Path != "" && !strings.HasPrefix(h.HTTP.Path, "/") {
				add(hp+".http.path", "%q does not start with /", h.HTTP.Path)
			}
			if _, _, err := statusRange(h.HTTP.ExpectedStatuses); err != nil {
				add(hp+".http.expected_statuses", "%v", err)
			}
		}
		if h.GRPC != nil && h.Type != resilience.HealthGRPC {
			add(hp+".grpc", "applies only to type: grpc")
		}
	}
}

// statusRange turns expected_statuses into the one range they cover;
// 0, 0 for none (the default).
func statusRange(list []string) (lo, hi int, err error) {
	type span struct{ lo, hi int }
	var spans []span
	for _, s := range list {
		a, b, isRange := strings.Cut(strings.TrimSpace(s), "-")
		x, err1 := strconv.Atoi(strings.TrimSpace(a))
		y, err2 := x, error(nil)
		if isRange {
			y, err2 = strconv.Atoi(strings.TrimSpace(b))
		}
		switch {
		case err1 != nil || err2 != nil:
			return 0, 0, fmt.Errorf("%q is not a status code or a range like 200-399", s)
		case x < 100 || y > 599 || x > y:
			return 0, 0, fmt.Errorf("%q is not a status range within 100-599", s)
		}
		spans = append(spans, span{x, y})
	}
	if len(spans) == 0 {
		return 0, 0, nil
	}
	slices.SortFunc(spans, func(a, b span) int { return a.lo - b.lo })
	lo, hi = spans[0].lo, spans[0].hi
	for _, s := range spans[1:] {
		if s.lo > hi+1 {
			return 0, 0, fmt.Errorf("%s and %s leave a gap: list statuses that form one range, like 200-399 (separate ranges are not supported yet)",
				spanText(lo, hi), spanText(s.lo, s.hi))
		}
		hi = max(hi, s.hi)
	}
	return lo, hi, nil
}

func spanText(lo, hi int) string {
	if lo == hi {
		return strconv.Itoa(lo)
	}
	return strconv.Itoa(lo) + "-" + strconv.Itoa(hi)
}

// balancerConfig is the balancer.Config of service under policy with its
// upstreams entry u (nil: no resilience).
func balancerConfig(service, policy string, u *UpstreamConfig) balancer.Config {
	cfg := balancer.Config{Service: service, Policy: policy}
	if u == nil {
		return cfg
	}
	u32 := func(v *int) uint32 {
		if v == nil {
			return 0
		}
		return uint32(*v)
	}
	if b := u.CircuitBreaker; b != nil {
		cfg.Breaker = &resilience.BreakerConfig{
			ConsecutiveFailures: u32(b.ConsecutiveFailures),
			Window:              b.Window.d,
			MinRequests:         u32(b.MinRequests),
			OpenTime:            b.Open.d,
			MaxOpenTime:         b.MaxOpen.d,
			HalfOpenProbes:      u32(b.HalfOpenRequests),
		}
		if b.FailureRatio != nil {
			cfg.Breaker.FailureRatio = *b.FailureRatio
		}
	}
	if o := u.OutlierDetection; o != nil {
		cfg.Outlier = &resilience.OutlierConfig{
			Consecutive5xx:                 u32(o.Consecutive5xx),
			ConsecutiveGatewayErrors:       u32(o.ConsecutiveGatewayErrors),
			ConsecutiveLocalOriginFailures: u32(o.ConsecutiveLocalOriginFailures),
			BaseEjectionTime:               o.BaseEjectionTime.d,
			MaxEjectionTime:                o.MaxEjectionTime.d,
		}
		if o.MaxEjectionPercent != nil {
			cfg.Outlier.MaxEjectionShare = float64(*o.MaxEjectionPercent) / 100
		}
	}
	if h := u.HealthCheck; h != nil {
		hc := &resilience.HealthConfig{
			Protocol: h.Type,
			Interval: h.Interval.d,
			Timeout:  h.Timeout.d,
		}
		if h.Jitter != nil {
			hc.Jitter = *h.Jitter
			if hc.Jitter == 0 {
				hc.Jitter = -1 // resilience: negative is none, 0 the default
			}
		}
		if h.HealthyThreshold != nil {
			hc.HealthyThreshold = *h.HealthyThreshold
		}
		if h.UnhealthyThreshold != nil {
			hc.UnhealthyThreshold = *h.UnhealthyThreshold
		}
		if h.HTTP != nil {
			hc.Path, hc.Host = h.HTTP.Path, h.HTTP.Host
			hc.StatusMin, hc.StatusMax, _ = statusRange(h.HTTP.ExpectedStatuses) // validated
		}
		if h.GRPC != nil {
			hc.GRPCService = h.GRPC.Service
		}
		cfg.Health = hc
	}
	return cfg
}
