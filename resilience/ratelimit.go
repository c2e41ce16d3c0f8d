package resilience

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of RateLimitConfig.
const (
	DefaultMaxClients = 10000
	// clientPublishEvery bounds how long a new client's bucket waits in
	// the locked pending table before it is published to the lock-free
	// one.
	clientPublishEvery = time.Second
)

// RateLimitConfig is a local token-bucket rate limit, of a route or of each
// client of a route. The zero value (Rate 0) means off.
type RateLimitConfig struct {
	// Rate is the sustained rate in requests per second; 0: no limit.
	Rate float64
	// Burst is the bucket's size: requests allowed at once after a quiet
	// spell. Default ⌈Rate⌉ (at least 1).
	Burst int
	// MaxClients bounds the per-client table (default 10000). A client
	// whose bucket is full again is dropped from the table at no cost (a
	// new bucket is full too); past MaxClients clients with tokens
	// missing, the least recently seen are dropped and start again with a
	// full bucket.
	MaxClients int
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
	return errors.Join(errs...)
}

func (c RateLimitConfig) withDefaults() RateLimitConfig {
	if c.Burst == 0 {
		c.Burst = max(1, int(math.Ceil(c.Rate)))
	}
	if c.MaxClients == 0 {
		c.MaxClients = DefaultMaxClients
	}
	return c
}

// bucket is one token bucket kept as GCRA (the generic cell rate
// algorithm, RFC 2697's cousin used by ATM and most rate limiters): the
// bucket's whole state is its theoretical arrival time, one atomic, so
// Allow is a load and a compare-and-swap, lock-free and allocation-free.
// It is the same limit as x/time/rate's Limiter with the same rate and
// burst: a request at now is allowed when max(tat, now) + interval is at
// most burst intervals ahead of now, and then tat moves there.
type bucket struct {
	tat  atomic.Int64 // theoretical arrival time, ns on the limiter's clock (gcra.now); 0: full bucket
	seen atomic.Int64 // last Allow, ns on the same clock (client tables only)
}

// gcra is the shape every bucket of one limiter shares, and its clock:
// monotonic nanoseconds since the limiter was made, so that a step of the
// wall clock (NTP, a VM resumed) neither refuses every request until the
// clock catches up nor refills every bucket at once.
type gcra struct {
	interval int64 // ns per token
	window   int64 // burst × interval
	epoch    time.Time
}

// now is the limiter's clock.
func (g gcra) now() int64 { return int64(time.Since(g.epoch)) }

func newGCRA(cfg RateLimitConfig) gcra {
	cfg = cfg.withDefaults()
	iv := float64(time.Second) / cfg.Rate
	if iv > math.MaxInt64/float64(cfg.Burst+1) {
		iv = math.MaxInt64 / float64(cfg.Burst+1) // a rate too small to refill in any lifetime
	}
	interval := max(1, int64(iv))
	return gcra{interval: interval, window: interval * int64(cfg.Burst), epoch: time.Now()}
}

// allow takes a token of b at now (g.now).
func (g gcra) allow(b *bucket, now int64) (bool, int) {
	for {
		tat := b.tat.Load()
		next := max(tat, now) + g.interval
		if over := next - now - g.window; over > 0 {
			// Retry-After in whole seconds, rounded up, at least 1 (RFC
			// 9110 §10.2.3 has no fractions).
			secs := (over + int64(time.Second) - 1) / int64(time.Second)
			return false, int(min(max(secs, 1), math.MaxInt32))
		}
		if b.tat.CompareAndSwap(tat, next) {
			return true, 0
		}
	}
}

// full reports whether b has all its tokens at now: dropping it loses
// nothing.
func (g gcra) full(b *bucket, now int64) bool { return b.tat.Load() <= now }

// Limiter is one token bucket (a route's). Safe for concurrent use;
// lock-free and allocation-free.
type Limiter struct {
	g gcra
	b bucket
}

// NewLimiter returns the limiter of an enabled, valid cfg.
func NewLimiter(cfg RateLimitConfig) *Limiter {
	return &Limiter{g: newGCRA(cfg)}
}

// Allow takes a token for one request. When none is left it answers false
// and the Retry-After value in whole seconds: the wait until a token is
// back, rounded up, at least 1.
func (l *Limiter) Allow() (ok bool, retryAfter int) {
	return l.g.allow(&l.b, l.g.now())
}

// Peek reports what Allow would answer now, taking nothing.
func (l *Limiter) Peek() (ok bool, retryAfter int) {
	now := l.g.now()
	next := max(l.b.tat.Load(), now) + l.g.interval
	if over := next - now - l.g.window; over > 0 {
		secs := (over + int64(time.Second) - 1) / int64(time.Second)
		return false, int(min(max(secs, 1), math.MaxInt32))
	}
	return true, 0
}

// ClientLimiter keeps one token bucket per client key (a source address
// now, a SPIFFE ID later) in a bounded table. Safe for concurrent use.
//
// A known client's Allow is lock-free and allocation-free: the table is an
// immutable map behind an atomic pointer, and each bucket is an atomic. A
// client not in it takes the mutex once per request until its bucket is
// published: it waits in a pending map, published (the map copied, O(n))
// when pending holds a quarter of the table's size or clientPublishEvery
// has passed since the last publish, so the copy is amortized O(1) per new
// client. Each publish drops the buckets that are full again (a client
// idle for burst/rate), which changes no client's limit, and beyond
// MaxClients the least recently seen.
type ClientLimiter[K comparable] struct {
	// Set at construction.
	g          gcra
	maxClients int

	table atomic.Pointer[map[K]*bucket]

	mu        sync.Mutex
	pending   map[K]*bucket
	published time.Time
}

// NewClientLimiter returns the per-client limiter of an enabled, valid cfg.
func NewClientLimiter[K comparable](cfg RateLimitConfig) *ClientLimiter[K] {
	cfg = cfg.withDefaults()
	c := &ClientLimiter[K]{g: newGCRA(cfg), maxClients: cfg.MaxClients, pending: map[K]*bucket{}, published: time.Now()}
	m := map[K]*bucket{}
	c.table.Store(&m)
	return c
}

// Allow takes a token from key's bucket; see Limiter.Allow.
func (c *ClientLimiter[K]) Allow(key K) (ok bool, retryAfter int) {
	now := time.Now()
	ns := int64(now.Sub(c.g.epoch))
	b := (*c.table.Load())[key]
	if b == nil {
		b = c.slow(key, now)
	}
	if b.seen.Load() != ns {
		b.seen.Store(ns)
	}
	return c.g.allow(b, ns)
}

// slow finds or makes key's bucket in the pending table, publishing it
// when it is time.
func (c *ClientLimiter[K]) slow(key K, now time.Time) *bucket {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur := *c.table.Load()
	if b := cur[key]; b != nil { // published meanwhile
		return b
	}
	b := c.pending[key]
	if b == nil {
		b = new(bucket)
		// Seen now, before a publish below ranks the buckets by it: a
		// new bucket must not look like the least recently seen.
		b.seen.Store(int64(now.Sub(c.g.epoch)))
		c.pending[key] = b
	}
	if len(c.pending) > len(cur)/4 || now.Sub(c.published) >= clientPublishEvery {
		c.publish(cur, now)
	}
	return b
}

// publish builds the next table: cur's buckets that are not full, plus
// pending, at most maxClients (the most recently seen). c.mu is held.
func (c *ClientLimiter[K]) publish(cur map[K]*bucket, now time.Time) {
	ns := int64(now.Sub(c.g.epoch))
	next := make(map[K]*bucket, len(cur)+len(c.pending))
	for k, b := range cur {
		if !c.g.full(b, ns) {
			next[k] = b
		}
	}
	maps.Copy(next, c.pending)
	if over := len(next) - c.maxClients; over > 0 {
		keys := slices.SortedFunc(maps.Keys(next), func(a, b K) int {
			sa, sb := next[a].seen.Load(), next[b].seen.Load()
			switch {
			case sa < sb:
				return -1
			case sa > sb:
				return 1
			}
			return 0
		})
		for _, k := range keys[:over] {
			delete(next, k)
		}
	}
	c.table.Store(&next)
	clear(c.pending)
	c.published = now
}

// Len is how many clients have a bucket now, published or pending.
func (c *ClientLimiter[K]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(*c.table.Load()) + len(c.pending)
}
