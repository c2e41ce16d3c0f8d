package main

import (
	"fmt"
	"reflect"

	"github.com/outrigger-mesh/outrigger/proxy"
	"github.com/outrigger-mesh/outrigger/resilience"
)

// RetryConfig is a retry block as written in the file: under
// upstreams.<service>.retry it is the service's retry policy and budget
// for every HTTP and gRPC listener sending to it; on a route it replaces
// the service's policy for that route's requests (the budget stays the
// service's, so a route's retry has no budget block). TCP listeners have
// connect_attempts instead.
type RetryConfig struct {
	// Attempts counts the first attempt: 1 turns retries off; 2 when the
	// block leaves it out.
	Attempts      int           `yaml:"attempts" json:"attempts"`
	PerTryTimeout Duration      `yaml:"per_try_timeout" json:"per_try_timeout,omitzero"`
	Timeout       Duration      `yaml:"timeout" json:"timeout,omitzero"`
	Backoff       *RetryBackoff `yaml:"backoff" json:"backoff,omitempty"`
	On            []string      `yaml:"on" json:"on,omitempty"`
	// MaxReplayBody is the largest request body kept to be sent again, in
	// bytes; 0 keeps none.
	MaxReplayBody *int64       `yaml:"max_replay_body" json:"max_replay_body,omitempty"`
	Budget        *RetryBudget `yaml:"budget" json:"budget,omitempty"`
}

// RetryBackoff shapes the exponential backoff with full jitter.
type RetryBackoff struct {
	Base Duration `yaml:"base" json:"base"`
	Max  Duration `yaml:"max" json:"max"`
}

// RetryBudget bounds the load retries add to a service.
type RetryBudget struct {
	// Percent of the service's requests in flight that may be retries.
	Percent *float64 `yaml:"percent" json:"percent"`
	// MinPerSecond retries are allowed whatever the load; 0: none.
	MinPerSecond *float64 `yaml:"min_per_second" json:"min_per_second"`
}

// Limits and defaults of retry blocks chosen here (the rest are the
// resilience package's; docs/configuration.md lists all).
const (
	defaultRetryAttempts = 2
	maxRetryAttempts     = 10
)

// setDefaults fills every default of a retry block, so that /config shows
// the values in effect; withBudget for an upstreams entry.
func (r *RetryConfig) setDefaults(withBudget bool) {
	r.Attempts = cmpOr(r.Attempts, defaultRetryAttempts)
	if r.Backoff == nil {
		r.Backoff = &RetryBackoff{}
	}
	r.Backoff.Base = cmpOr(r.Backoff.Base, Dur(resilience.DefaultBackoffBase))
	if r.Backoff.Base.invalid == "" {
		r.Backoff.Max = cmpOr(r.Backoff.Max, Dur(max(resilience.DefaultBackoffMax, r.Backoff.Base.d)))
	}
	if len(r.On) == 0 {
		r.On = append([]string(nil), resilience.DefaultRetryOn...)
	}
	if r.MaxReplayBody == nil {
		r.MaxReplayBody = ptr(int64(resilience.DefaultMaxReplayBody))
	}
	if !withBudget {
		return
	}
	if r.Budget == nil {
		r.Budget = &RetryBudget{}
	}
	if r.Budget.Percent == nil {
		r.Budget.Percent = ptr(resilience.DefaultBudgetRatio * 100)
	}
	if r.Budget.MinPerSecond == nil {
		r.Budget.MinPerSecond = ptr(float64(resilience.DefaultBudgetMinPerSecond))
	}
}

// setRetryDefaults fills the defaults of every retry block of c.
func (c *Config) setRetryDefaults() {
	for _, u := range c.Upstreams {
		if u != nil && u.Retry != nil {
			u.Retry.setDefaults(true)
		}
	}
	for i := range c.Outbound {
		for j := range c.Outbound[i].Routes {
			if r := c.Outbound[i].Routes[j].Retry; r != nil {
				r.setDefaults(false)
			}
		}
	}
}

// validateRetries checks every retry block of c.
func (c *Config) validateRetries(add func(string, string, ...any), checkDur func(string, Duration)) {
	for svc, u := range c.Upstreams {
		if u != nil && u.Retry != nil {
			u.Retry.validate(add, checkDur, upstreamPath(svc)+".retry", true)
		}
	}
	for i, o := range c.Outbound {
		for j, rt := range o.Routes {
			if rt.Retry == nil {
				continue
			}
			p := fmt.Sprintf("outbound[%d].routes[%d].retry", i, j)
			if !o.isHTTP() {
				add(p, "applies only to protocol: http, grpc or auto")
			}
			rt.Retry.validate(add, checkDur, p, false)
		}
	}
}

// validate checks one retry block at path p; withBudget for an upstreams
// entry, where a budget belongs.
func (r *RetryConfig) validate(add func(string, string, ...any), checkDur func(string, Duration), p string, withBudget bool) {
	if r.Attempts < 1 || r.Attempts > maxRetryAttempts {
		add(p+".attempts", "%d is out of range 1..%d (1: no retries)", r.Attempts, maxRetryAttempts)
	}
	checkDur(p+".per_try_timeout", r.PerTryTimeout)
	checkDur(p+".timeout", r.Timeout)
	if b := r.Backoff; b != nil {
		checkDur(p+".backoff.base", b.Base)
		checkDur(p+".backoff.max", b.Max)
		if b.Base.invalid == "" && b.Max.invalid == "" && b.Max.d > 0 && b.Max.d < b.Base.d {
			add(p+".backoff.max", "%v is less than base (%v)", b.Max.d, b.Base.d)
		}
	}
	if r.Timeout.invalid == "" && r.PerTryTimeout.invalid == "" && r.Timeout.d > 0 && r.PerTryTimeout.d > r.Timeout.d {
		add(p+".per_try_timeout", "%v is longer than timeout (%v), which bounds all attempts", r.PerTryTimeout.d, r.Timeout.d)
	}
	for k, cond := range r.On {
		if err := (resilience.RetryConfig{On: []string{cond}}).Validate(); err != nil {
			add(fmt.Sprintf("%s.on[%d]", p, k), "%s", trimRetryPrefix(err))
		}
	}
	if v := r.MaxReplayBody; v != nil && *v < 0 {
		add(p+".max_replay_body", "%d is negative (0 keeps no body)", *v)
	}
	if r.Budget == nil {
		return
	}
	if !withBudget {
		add(p+".budget", "a retry budget is per upstream service: set it under upstreams.<service>.retry.budget")
		return
	}
	if v := r.Budget.Percent; v != nil && (*v <= 0 || *v > 100) {
		add(p+".budget.percent", "%v is out of range (0, 100] (to stop retries, set attempts: 1)", *v)
	}
	if v := r.Budget.MinPerSecond; v != nil && (*v < 0 || *v > 1e6) {
		add(p+".budget.min_per_second", "%v is out of range 0..1000000", *v)
	}
}

// trimRetryPrefix drops the resilience package's "retry: on: " prefix:
// the field path says it.
func trimRetryPrefix(err error) string {
	s := err.Error()
	const pre = "retry: on: "
	if len(s) > len(pre) && s[:len(pre)] == pre {
		return s[len(pre):]
	}
	return s
}

// policy converts a validated (and defaulted) block to the resilience
// policy.
func (r *RetryConfig) policy() (*resilience.RetryPolicy, error) {
	cfg := resilience.RetryConfig{
		Attempts:      r.Attempts,
		PerTryTimeout: r.PerTryTimeout.d,
		Timeout:       r.Timeout.d,
		On:            r.On,
	}
	if r.Backoff != nil {
		cfg.BackoffBase, cfg.BackoffMax = r.Backoff.Base.d, r.Backoff.Max.d
	}
	if r.MaxReplayBody != nil {
		cfg.MaxReplayBody = *r.MaxReplayBody
		if cfg.MaxReplayBody == 0 {
			cfg.MaxReplayBody = -1 // resilience: negative keeps none, 0 is the default
		}
	}
	return resilience.NewRetryPolicy(cfg)
}

// budget converts the budget of an upstreams retry block (nil: defaults).
func (r *RetryConfig) budget() (*resilience.Budget, error) {
	var cfg resilience.BudgetConfig
	if r != nil && r.Budget != nil {
		if v := r.Budget.Percent; v != nil {
			cfg.Ratio = *v / 100
		}
		if v := r.Budget.MinPerSecond; v != nil {
			cfg.MinPerSecond = *v
			if cfg.MinPerSecond == 0 {
				cfg.MinPerSecond = -1 // resilience: negative is none, 0 the default
			}
		}
	}
	return resilience.NewBudget(cfg)
}

// retryRun is one service's running retry setting and the block it came
// from; a reload keeps it (and its budget's counts) while the block is
// unchanged.
type retryRun struct {
	cfg   *RetryConfig
	retry *proxy.Retry
}

// retryRuns returns the retry setting of every service of next that has a
// retry block or a route with one, reusing old's where the block did not
// change.
func retryRuns(old map[string]*retryRun, next *Config) (map[string]*retryRun, error) {
	need := map[string]bool{}
	for svc, u := range next.Upstreams {
		if u != nil && u.Retry != nil {
			need[svc] = true
		}
	}
	for _, o := range next.Outbound {
		for _, rt := range o.Routes {
			if rt.Retry != nil {
				for _, b := range rt.Backends {
					need[b.Service] = true
				}
			}
		}
	}
	runs := map[string]*retryRun{}
	for svc := range need {
		var rc *RetryConfig
		if u := next.Upstreams[svc]; u != nil {
			rc = u.Retry
		}
		if r := old[svc]; r != nil && reflect.DeepEqual(r.cfg, rc) {
			runs[svc] = r
			continue
		}
		r := &retryRun{cfg: rc, retry: &proxy.Retry{}}
		var err error
		if rc != nil {
			if r.retry.Policy, err = rc.policy(); err != nil {
				return nil, fmt.Errorf("%s: %w", upstreamPath(svc)+".retry", err)
			}
		}
		if r.retry.Budget, err = rc.budget(); err != nil {
			return nil, fmt.Errorf("%s: %w", upstreamPath(svc)+".retry", err)
		}
		runs[svc] = r
	}
	return runs, nil
}

// routeRetries returns the per-route policies of an http listener (index:
// the route's position), nil when no route has a retry block.
func routeRetries(o OutboundConfig) ([]*resilience.RetryPolicy, error) {
	var out []*resilience.RetryPolicy
	for j, rt := range o.Routes {
		if rt.Retry == nil {
			continue
		}
		if out == nil {
			out = make([]*resilience.RetryPolicy, len(o.Routes))
		}
		p, err := rt.Retry.policy()
		if err != nil {
			return nil, fmt.Errorf("routes[%d].retry: %w", j, err)
		}
		out[j] = p
	}
	return out, nil
}

// withRetry wraps up with svc's retry setting and the listener's route
// policies when either exists.
func withRetry(up proxy.Upstream, run *retryRun, routes []*resilience.RetryPolicy) proxy.Upstream {
	if run == nil {
		return up
	}
	return proxy.WithRetry(up, run.retry, routes)
}

// retriesChanged reports whether svc's upstreams retry block differs
// between two configs.
func retriesChanged(old, next *Config, svc string) bool {
	get := func(c *Config) *RetryConfig {
		if u := c.Upstreams[svc]; u != nil {
			return u.Retry
		}
		return nil
	}
	return !reflect.DeepEqual(get(old), get(next))
}
