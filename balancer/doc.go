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
// pick counters), keyed by endpoint ID. That state outlives pickers: an
// endpoint that stays across snapshots keeps its EndpointState, so
// least-connection counts are not reset by a discovery change. An endpoint
// that leaves the snapshot has its state dropped from future pickers; Done
// calls of connections still open to it land on the old state harmlessly.
// Snapshots, endpoints and pickers are never mutated after publication;
// PickResult.Endpoint points into the snapshot and must not be modified.
//
// Choosing: only ready endpoints are eligible. They are grouped into tiers
// by (source priority, locality rank relative to Config.Locality) and picks
// come from the best non-empty tier only, so traffic prefers the local zone,
// then the local cluster, and fails over by priority when the preferred
// endpoints are not ready. Inside the tier a Policy decides: weighted round
// robin over a precomputed schedule, or least connections (weight-aware,
// power of two random choices over large tiers).
//
// Concurrency: Run is the one control goroutine; it alone reads snapshots,
// reconciles state and builds pickers, and it publishes each picker with an
// atomic pointer store. Pick, Status, Ready and Service may be called from
// any goroutine at any time. Pick takes no lock, never blocks and does not
// allocate (with a caller-owned PickInfo, which may live on the caller's
// stack when Pick is called on the concrete *Balancer); with no eligible
// endpoint it returns ErrNoEndpoints at once. Done may be called from any
// goroutine, must be called exactly once per successful Pick, and does not
// allocate.
package balancer
