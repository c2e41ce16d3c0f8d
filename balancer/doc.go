// Package balancer chooses the endpoint each connection or request of one
// upstream service goes to.
//
// Place in the data flow: discovery/catalog publishes an immutable
// discovery.Snapshot per service through a Watcher; a Balancer (one per
// upstream service) turns each snapshot into an immutable Picker; the proxy
// calls Balancer.Pick for every connection or request and calls the returned
// Done when it ends.
//
// Ownership: the Balancer owns the live per-endpoint state (in-flight and
// pick counters, and with Config.Breaker, Config.Outlier and Config.Health
// the endpoint's circuit breaker, outlier counters and ejection, and health),
// keyed by endpoint ID. That state outlives pickers: an endpoint that stays
// across snapshots keeps its EndpointState, so least-connection counts,
// breakers and ejections are not reset by a discovery change. An endpoint
// that leaves the snapshot has its state dropped from future pickers; Done
// calls of connections still open to it land on the old state harmlessly.
// Snapshots, endpoints and pickers are never mutated after publication;
// PickResult.Endpoint points into the snapshot and must not be modified.
//
// Choosing: only usable endpoints are eligible: ready in discovery, not
// failing active health checks, circuit breaker not open, and not ejected
// by outlier detection (at most Outlier.MaxEjectionShare of the ready
// endpoints are kept out, the earliest ejected first; the rest balance as
// usual). An endpoint whose breaker's open time has passed is back in the
// picker half-open, and its breaker admits only its probes: a pick it
// refuses goes to another endpoint. With no usable endpoint Pick fails fast.
// Usable endpoints are grouped into tiers
// by (source priority, locality rank relative to Config.Locality) and picks
// come from the best tier that has an endpoint with a closed breaker (or,
// when none has, the best tier of half-open ones), so traffic prefers the
// local zone, then the local cluster, and fails over by priority when the
// preferred endpoints are not ready or their breakers are not closed.
// Half-open endpoints of nearer tiers join the chosen tier to take their
// probes, so a recovering endpoint is probed without its tier refusing
// every other pick. Inside the tier a Policy decides: weighted round
// robin over a precomputed schedule, or least connections (weight-aware,
// power of two random choices over large tiers).
//
// Resilience signals: Done classifies the pick's outcome (DoneInfo.Outcome,
// or derived from DoneInfo.Err) and feeds the endpoint's breaker and
// outlier counters; a breaker changing state, a run of failures asking for
// an ejection, or a health check changing its verdict signal Run without
// blocking (a channel of capacity one, coalesced), and Run rebuilds the
// picker, publishing it only when eligibility changed. Run also wakes at the
// next breaker or ejection expiry, and owns the health checkers (one
// goroutine per ready endpoint, stopped when Run returns).
//
// Concurrency: Run is the one control goroutine; it alone reads snapshots,
// reconciles state, decides ejections and builds pickers, and it publishes
// each picker with an atomic pointer store. Pick, Status, Explain, Ready and Service may be called from
// any goroutine at any time. Pick takes no lock, never blocks and does not
// allocate (with a caller-owned PickInfo, which may live on the caller's
// stack when Pick is called on the concrete *Balancer); with no eligible
// endpoint it returns ErrNoEndpoints at once. With breakers on, a pick still
// reads each breaker from an atomic; only admitting a half-open probe
// takes that breaker's lock. Done may be called from any goroutine, must be
// called exactly once per successful Pick, and does not allocate, except
// that with breakers on it may record the outcome under the breaker's lock
// at the cost of one allocation (gobreaker's callback): always in
// failure-ratio mode, and in consecutive-failures mode for failures and the
// first success after them (see resilience.Breaker).
package balancer
