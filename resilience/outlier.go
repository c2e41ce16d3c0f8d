package resilience

import (
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"
)

// Defaults of OutlierConfig.
const (
	DefaultBaseEjectionTime = 30 * time.Second
	DefaultMaxEjectionShare = 0.5
)

// OutlierConfig is passive outlier detection for the endpoints of one
// upstream (Envoy's outlier_detection, consecutive modes). It is off unless
// one of the Consecutive thresholds is set.
type OutlierConfig struct {
	// Consecutive5xx ejects an endpoint after this many 5xx outcomes in a
	// row: 5xx responses (gRPC statuses mapped as Envoy maps them) and, as
	// in Envoy's default mode, local-origin and unclassified failures.
	Consecutive5xx uint32
	// ConsecutiveGatewayErrors ejects after this many 502, 503 or 504
	// responses (or local-origin failures) in a row.
	ConsecutiveGatewayErrors uint32
	// ConsecutiveLocalOriginFailures ejects after this many connect
	// failures, refused streams, resets or timeouts in a row.
	ConsecutiveLocalOriginFailures uint32
	// BaseEjectionTime is the first ejection's length; the n-th ejection in
	// a row lasts BaseEjectionTime × n, at most MaxEjectionTime. Defaults
	// 30s and 10 × BaseEjectionTime.
	BaseEjectionTime time.Duration
	MaxEjectionTime  time.Duration
	// MaxEjectionShare is the largest share of the upstream's endpoints
	// that may be ejected at once, in [0, 1]; default 0.5. Beyond it the
	// balancer keeps the rest in rotation rather than fail.
	MaxEjectionShare float64
}

// Enabled reports whether c turns outlier detection on.
func (c OutlierConfig) Enabled() bool {
	return c.Consecutive5xx > 0 || c.ConsecutiveGatewayErrors > 0 || c.ConsecutiveLocalOriginFailures > 0
}

// Validate reports every problem of c, joined.
func (c OutlierConfig) Validate() error {
	var errs []error
	if c.BaseEjectionTime < 0 {
		errs = append(errs, fmt.Errorf("outlier_detection: base_ejection_time: %v is negative", c.BaseEjectionTime))
	}
	if c.MaxEjectionTime < 0 {
		errs = append(errs, fmt.Errorf("outlier_detection: max_ejection_time: %v is negative", c.MaxEjectionTime))
	} else if c.MaxEjectionTime > 0 && c.MaxEjectionTime < c.WithDefaults().BaseEjectionTime {
		errs = append(errs, fmt.Errorf("outlier_detection: max_ejection_time: %v is less than base_ejection_time %v",
			c.MaxEjectionTime, c.WithDefaults().BaseEjectionTime))
	}
	if c.MaxEjectionShare < 0 || c.MaxEjectionShare > 1 {
		errs = append(errs, fmt.Errorf("outlier_detection: max_ejection_share: %v is outside [0, 1]", c.MaxEjectionShare))
	}
	return errors.Join(errs...)
}

// WithDefaults returns c with every zero field at its default.
func (c OutlierConfig) WithDefaults() OutlierConfig {
	if c.BaseEjectionTime == 0 {
		c.BaseEjectionTime = DefaultBaseEjectionTime
	}
	if c.MaxEjectionTime == 0 {
		c.MaxEjectionTime = 10 * c.BaseEjectionTime
	}
	if c.MaxEjectionShare == 0 {
		c.MaxEjectionShare = DefaultMaxEjectionShare
	}
	return c
}

// EjectionTime is the length of an endpoint's times-th ejection in a row
// (times ≥ 1): BaseEjectionTime × times, at most MaxEjectionTime.
func (c OutlierConfig) EjectionTime(times int) time.Duration {
	c = c.WithDefaults()
	if times < 1 {
		times = 1
	}
	if time.Duration(times) > c.MaxEjectionTime/c.BaseEjectionTime {
		return c.MaxEjectionTime
	}
	return min(c.BaseEjectionTime*time.Duration(times), c.MaxEjectionTime)
}

// MaxEjected is how many of n endpoints may be ejected at once:
// ⌊MaxEjectionShare × n⌋, so a single endpoint is never ejected at the
// default share.
func (c OutlierConfig) MaxEjected(n int) int {
	return int(c.WithDefaults().MaxEjectionShare*float64(n) + 1e-9)
}

// Outlier counts one endpoint's consecutive failures. Observe is lock-free
// and allocation-free, called from Done on request goroutines; the decision
// to eject (how long, within the share) belongs to the owner of the
// endpoint's state, which Observe's answer signals.
type Outlier struct {
	// Set at construction.
	cfg OutlierConfig

	// Atomic.
	c5xx, gateway, local atomic.Uint32
}

// NewOutlier returns the counters for one endpoint under cfg.
func NewOutlier(cfg OutlierConfig) *Outlier { return &Outlier{cfg: cfg} }

// EjectReason says which run of failures asks for an ejection.
type EjectReason uint8

// Reasons Observe gives.
const (
	NoEjection EjectReason = iota
	Eject5xx
	EjectGatewayError
	EjectLocalOrigin
)

// String returns the reason's name, as in the config.
func (r EjectReason) String() string {
	switch r {
	case NoEjection:
		return "none"
	case Eject5xx:
		return "consecutive-5xx"
	case EjectGatewayError:
		return "consecutive-gateway-errors"
	case EjectLocalOrigin:
		return "consecutive-local-origin-failures"
	}
	return "eject-reason(" + strconv.Itoa(int(r)) + ")"
}

// Observe counts o and returns the reason to eject when o made a counter
// reach its threshold (NoEjection otherwise). Exactly one of concurrent callers
// sees a given threshold crossing; counters keep running past it until
// Reset.
func (d *Outlier) Observe(o Outcome) EjectReason {
	if o.Neutral() {
		return NoEjection
	}
	st := o.httpEquivalent()
	local := o.LocalOrigin()
	reason := NoEjection
	count := func(c *atomic.Uint32, failed bool, threshold uint32, r EjectReason) {
		if threshold == 0 {
			return
		}
		if !failed {
			if c.Load() != 0 {
				c.Store(0)
			}
			return
		}
		if c.Add(1) == threshold && reason == NoEjection {
			reason = r
		}
	}
	count(&d.c5xx, st >= 500 || local || o.Kind == KindFailure, d.cfg.Consecutive5xx, Eject5xx)
	count(&d.gateway, st >= 502 && st <= 504 || local, d.cfg.ConsecutiveGatewayErrors, EjectGatewayError)
	if o.Kind != KindFailure { // an unclassified error is neither
		count(&d.local, local, d.cfg.ConsecutiveLocalOriginFailures, EjectLocalOrigin)
	}
	return reason
}

// Reset zeroes the counters (after an ejection, so the next one needs a
// full run of failures again).
func (d *Outlier) Reset() {
	d.c5xx.Store(0)
	d.gateway.Store(0)
	d.local.Store(0)
}
