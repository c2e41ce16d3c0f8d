// Package discovery is the vocabulary every discovery backend speaks, and the
// supervisor that runs the backends.
//
// Place in the data flow: sources (discovery/file, discovery/kubernetes,
// discovery/consul, discovery/dns) watch the systems that know where services
// run and report each service's complete endpoint list as an Update to a Sink.
// The one Sink in production is discovery/catalog, which merges all sources
// per service and hands out immutable Snapshots to the balancer.
//
// Ownership: an Update's endpoint slice belongs to the Sink once Apply is
// called; a Snapshot and everything reachable from it is immutable once
// published, and may be shared by any number of goroutines.
//
// Concurrency: each Source runs in its own goroutine under a Supervisor,
// which restarts a failed Source with jittered exponential backoff. A Sink
// must accept concurrent calls from several sources.
package discovery
