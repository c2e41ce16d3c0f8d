// Package catalog is the one in-memory store of every discovery source's
// endpoints, and the place where they are merged per service.
//
// # Place in the data flow
//
// Sources (discovery/file, discovery/kubernetes, ...) report each service's
// complete endpoint list to the Catalog through discovery.Sink, under the
// discovery.Supervisor. The catalog merges all sources' views of a service
// into an immutable, versioned discovery.Snapshot, and Watch hands the
// snapshots of one service to its consumer (the balancer's control goroutine
// for that upstream). Nothing on the request path calls the catalog.
//
// # What it owns
//
// A go-memdb database with three tables: the registered sources (name,
// priority, synced), one view per (service, source) — the source's last
// endpoint list for the service, already stamped for publication — and one
// row per service holding its published snapshot. Every row is immutable
// once inserted; a change inserts a new row. The catalog remembers every
// service key that a source has reported or a caller has watched (the
// service row stays, with Known false, after every source deleted it), so
// its size is bounded by the services seen, not by time.
//
// # Merge rules
//
// The snapshot of a service holds:
//
//   - the endpoints of every source's view of the service, each a copy with
//     Source and Priority set from the source's registration and ID
//     qualified as "source/id";
//   - one endpoint per address across sources: if two sources report the
//     same Addr, the one with the lower Priority stays (on a tie, the source
//     whose name sorts first); endpoints of one source sharing an address
//     all stay, that is the source's business;
//   - sorted by (Priority, Source, ID).
//
// Known is true when at least one source reports the service, even with zero
// endpoints; a Deleted update removes only that source's view, so the
// service stays known while another source reports it. Answered is true when
// at least one source is registered and every registered source has either
// reported the service (a delete counts) or called Synced. Version comes from a catalog-wide counter and so strictly
// increases on every change of the service, including an Answered flip
// caused by a source syncing or registering.
//
// An Apply that leaves the source's view unchanged commits nothing and wakes
// nobody; one that changes the view but not the merged snapshot (an address
// another source wins) is stored without a new version.
//
// # Concurrency
//
// Every method is safe for concurrent use. Writes (Apply, Synced,
// RegisterSource, and the first Watch of a service) are one memdb write txn
// each, serialized by memdb's writer lock; reads (Snapshot, Services) are
// lock-free memdb read txns. Each Watch runs one goroutine that waits on the
// watch channel of its own service's row, which memdb closes only when that
// row is replaced, so a write to one service wakes only that service's
// watchers. The goroutine re-reads the row and replaces any undelivered
// snapshot in the capacity-1 channel, so a slow reader never blocks a
// writer. It exits, closing the channel, when the Watch's ctx ends.
//
// Published snapshots, and the endpoints in them, are shared by all readers
// and must not be modified. Endpoint.Metadata maps are shared with the
// source that built them; by the discovery.Endpoint contract nobody mutates
// them after Apply.
package catalog
