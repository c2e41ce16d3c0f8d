package resilience

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Defaults of RateLimitConfig.
const (
	DefaultMaxClients      = 10000
	DefaultClientIdleAfter = time.Minute
)

// RateLimitConfig is a local token-bucket rate limit, of a route or of each
// client of a route. The zero value (Rate 0) means off.
type RateLimitConfig struct {
	// Rate is the sustained rate in requests per second; 0: no limit.
	Rate float64
	// Burst is the bucket's size: requests allowed at once after a quiet
	// spell. Default ⌈Rate⌉ (at least 1).
	Burst int
	// MaxClients bounds the per-client table (default 10000); clients past
	// it push out the least recently seen half. IdleAfter (default 1m) is
	// how long an unseen client keeps its bucket at least; after twice
	// that it is gone. A forgotten client starts again with a full bucket.
	MaxClients int
	IdleAfter  time.Duration
}

// Enabled reports whether c limits anything.
func (c RateLimitConfig) Enabled() bool { return c.Rate > 0 }

// Validate reports every problem of c, joined.
func (c RateLimitConfig) Validate() error {
	var errs []error
	if c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) {
		errs = append(errs, fmt.Errorf("rate_limit: rate: %v is not a finite non-negative number", c.Rate))
	}
	if c.Burst < 0 {
		errs = append(errs, fmt.Errorf("rate_limit: burst: %d is negative", c.Burst))
	}
	if c.MaxClients < 0 {
		errs = append(errs, fmt.Errorf("rate_limit: max_clients: %d is negative", c.MaxClients))
	}
	if c.IdleAfter < 0 {
		errs = append(errs, fmt.Errorf("rate_limit: idle_after: %v is negative", c.IdleAfter))
	}
	return errors.Join(errs...)
}

func (c RateLimitConfig) withDefaults() RateLimitConfig {
	if c.Burst == 0 {
		c.Burst = max(1, int(math.Ceil(c.Rate)))
	}
	if c.MaxClients == 0 {
		c.MaxClients = DefaultMaxClients
	}
	if c.IdleAfter == 0 {
		c.IdleAfter = DefaultClientIdleAfter
	}
	return c
}

// Limiter is one token bucket (a route's). Safe for concurrent use.
type Limiter struct{ l *rate.Limiter }

// NewLimiter returns the limiter of an enabled, valid cfg.
func NewLimiter(cfg RateLimitConfig) *Limiter {
	cfg = cfg.withDefaults()
	return &Limiter{l: rate.NewLimiter(rate.Limit(cfg.Rate), cfg.Burst)}
}

// Allow takes a token for one request. When none is left it answers false
// and the Retry-After value in whole seconds: the wait until a token is
// back, rounded up, at least 1 (RFC 9110 §10.2.3 has no fractions).
func (l *Limiter) Allow() (ok bool, retryAfter int) {
	return allow(l.l, time.Now())
}

func allow(l *rate.Limiter, now time.Time) (bool, int) {
	if l.AllowN(now, 1) {
		return true, 0
	}
	missing := 1 - l.TokensAt(now)
	secs := math.Ceil(missing / float64(l.Limit()))
	if math.IsNaN(secs) || secs < 1 {
		secs = 1
	}
	return false, int(min(secs, math.MaxInt32))
}

// ClientLimiter keeps one token bucket per client key (a source address
// now, a SPIFFE ID later) in a bounded table. Safe for concurrent use; one
// mutex guards the table.
//
// The table is two generations of maps: new and returning clients go into
// the current one; when a new client finds it holding MaxClients/2
// entries, or IdleAfter has passed since the last turn, the current map
// becomes the previous one and the old previous one is dropped. A client
// seen within a generation survives the next turn; memory stays within
// MaxClients buckets, and each operation is O(1).
type ClientLimiter[K comparable] struct {
	// Set at construction.
	cfg RateLimitConfig

	mu     sync.Mutex
	cur    map[K]*rate.Limiter
	prev   map[K]*rate.Limiter
	turned time.Time
}

// NewClientLimiter returns the per-client limiter of an enabled, valid cfg.
func NewClientLimiter[K comparable](cfg RateLimitConfig) *ClientLimiter[K] {
	cfg = cfg.withDefaults()
	return &ClientLimiter[K]{cfg: cfg, cur: map[K]*rate.Limiter{}, prev: map[K]*rate.Limiter{}, turned: time.Now()}
}

// Allow takes a token from key's bucket; see Limiter.Allow.
func (c *ClientLimiter[K]) Allow(key K) (ok bool, retryAfter int) {
	now := time.Now()
	c.mu.Lock()
	if now.Sub(c.turned) >= c.cfg.IdleAfter {
		c.turn(now)
	}
	l := c.cur[key]
	if l == nil {
		if len(c.cur) >= max(1, c.cfg.MaxClients/2) {
			c.turn(now)
		}
		if l = c.prev[key]; l != nil {
			delete(c.prev, key)
		} else {
			l = rate.NewLimiter(rate.Limit(c.cfg.Rate), c.cfg.Burst)
		}
		c.cur[key] = l
	}
	c.mu.Unlock()
	return allow(l, now)
}

// turn drops the previous generation and starts a new current one.
func (c *ClientLimiter[K]) turn(now time.Time) {
	c.prev, c.cur, c.turned = c.cur, make(map[K]*rate.Limiter, len(c.cur)), now
}

// Len is how many clients have a bucket now.
func (c *ClientLimiter[K]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.cur) + len(c.prev)
}
