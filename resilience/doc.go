// Package resilience holds the mechanisms that keep requests succeeding
// while endpoints fail: the retry policy and retry budget, circuit breakers
// (github.com/sony/gobreaker/v2, two-step form), passive outlier detection,
// active health checks, and local rate limits.
//
// Place in the data flow: the balancer keeps one Breaker, one Outlier and
// one health checker per endpoint (in its per-endpoint live state, keyed by
// endpoint ID) and leaves out of its picker the endpoints they condemn;
// Done on every pick feeds them the attempt's Outcome. The proxy's HTTP
// engine keeps per upstream a RetryPolicy and a Budget and per route a
// Breaker and Limiters: per request it asks Limiter.Allow, Breaker.Admit
// and Budget.Begin; per failed attempt RetryPolicy.Decide, then
// Budget.TryRetry, then RetryPolicy.Wait before the next Pick.
//
// Ownership: this package owns no endpoint list and does no discovery. A
// Breaker, Outlier or Budget is created and owned by whoever holds its key
// (the balancer for endpoints, the engine for routes and upstreams); a
// HealthMonitor owns its checker goroutines and their connections, and is
// driven by one owner goroutine (Sync, Close). Configs are plain structs
// with Validate and documented defaults; a zero Config turns its feature
// off.
//
// Concurrency: everything on the request path is safe from any goroutine
// and, unless its doc says otherwise, lock-free and allocation-free:
// RetryPolicy is immutable; Budget and Outlier are atomics; Breaker mirrors
// gobreaker's state into atomics from gobreaker's state-change callback (it
// runs under gobreaker's lock, so the callback only stores atomics and
// signals), so Admit reads a closed or open breaker without locking, and
// only half-open probes and Done take gobreaker's lock. Limiter and
// ClientLimiter keep each token bucket in one atomic (GCRA, tested to
// decide exactly as x/time/rate); a client new to a ClientLimiter takes
// its mutex until its bucket is published. Health checkers run one goroutine per endpoint and report
// changes through a callback that must not block. Time is read with
// time.Now and timers, so tests drive it with testing/synctest.
package resilience
