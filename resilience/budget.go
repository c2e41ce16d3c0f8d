package resilience

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// Defaults of BudgetConfig.
const (
	DefaultBudgetRatio        = 0.2
	DefaultBudgetMinPerSecond = 10
)

// BudgetConfig bounds how much load retries may add to an upstream, like
// Envoy's retry_budget and Linkerd's retry budget: retries in flight may be
// at most Ratio of the requests in flight, plus MinPerSecond retries per
// second whatever the load (so that a lightly used upstream still gets
// retries). The zero value means the defaults.
type BudgetConfig struct {
	// Ratio is the largest share of in-flight requests that may be
	// retries, in [0, 1]. 0 means the default, 0.2, not "no share": the
	// zero BudgetConfig is the default budget, like every zero Config in
	// this package, and a budget that never lets retries grow with load
	// would turn retries off for busy upstreams, which is the retry
	// policy's job (attempts: 1), not the budget's. For a budget that
	// leans on the floor alone, set a small ratio such as 0.01.
	Ratio float64
	// MinPerSecond is the floor: retries allowed per second beyond the
	// ratio (burst of one second's worth); default 10. Negative: none.
	MinPerSecond float64
}

// Validate reports every problem of c, joined.
func (c BudgetConfig) Validate() error {
	var errs []error
	if c.Ratio < 0 || c.Ratio > 1 {
		errs = append(errs, fmt.Errorf("retry_budget: ratio: %v is outside [0, 1]", c.Ratio))
	}
	if c.MinPerSecond > 1e6 {
		errs = append(errs, fmt.Errorf("retry_budget: min_per_second: %v is more than 1000000", c.MinPerSecond))
	}
	return errors.Join(errs...)
}

// Budget is the retry budget of one upstream. Every method is lock-free and
// allocation-free, safe from any goroutine.
//
// Per request: Begin when it starts and End when it ends. Per retry (after
// RetryPolicy.Decide said yes): TryRetry, and if it answered true,
// RetryDone when that retry attempt ends; if it answered false, do not
// retry.
type Budget struct {
	// Set at construction.
	ratio    float64
	interval int64 // nanoseconds per floor token; 0: no floor
	burst    int64 // nanoseconds of tokens the floor can hold (one second)

	// Atomic.
	active   atomic.Int64
	retrying atomic.Int64
	tat      atomic.Int64 // floor bucket's theoretical arrival time (GCRA), ns since epoch
	epoch    time.Time    // the floor's monotonic clock starts here (see gcra)
}

// NewBudget validates cfg, applies its defaults and returns a Budget.
func NewBudget(cfg BudgetConfig) (*Budget, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b := &Budget{ratio: cfg.Ratio, burst: int64(time.Second), epoch: time.Now()}
	if cfg.Ratio == 0 {
		b.ratio = DefaultBudgetRatio
	}
	perSec := cfg.MinPerSecond
	if perSec == 0 {
		perSec = DefaultBudgetMinPerSecond
	}
	if perSec > 0 {
		b.interval = max(1, int64(float64(time.Second)/perSec))
	}
	return b, nil
}

// Begin records a request starting.
func (b *Budget) Begin() { b.active.Add(1) }

// End records a request ending (after its last attempt).
func (b *Budget) End() { b.active.Add(-1) }

// Active is the number of requests in flight.
func (b *Budget) Active() int64 { return b.active.Load() }

// Retrying is the number of retries in flight.
func (b *Budget) Retrying() int64 { return b.retrying.Load() }

// TryRetry reports whether one more retry fits the budget; when it does,
// the retry is counted until RetryDone.
func (b *Budget) TryRetry() bool {
	r := b.retrying.Add(1)
	if float64(r) <= b.ratio*float64(b.active.Load()) {
		return true
	}
	if b.takeFloor() {
		return true
	}
	b.retrying.Add(-1)
	return false
}

// RetryDone records the end of a retry TryRetry allowed.
func (b *Budget) RetryDone() { b.retrying.Add(-1) }

// takeFloor takes one token of the per-second floor. The bucket is a GCRA
// (generic cell rate algorithm): one atomic timestamp, advanced by interval
// per token and never more than burst ahead of now, so it needs no lock.
func (b *Budget) takeFloor() bool {
	if b.interval == 0 {
		return false
	}
	now := int64(time.Since(b.epoch))
	for {
		tat := b.tat.Load()
		next := max(tat, now) + b.interval
		if next-now > b.burst {
			return false
		}
		if b.tat.CompareAndSwap(tat, next) {
			return true
		}
	}
}
