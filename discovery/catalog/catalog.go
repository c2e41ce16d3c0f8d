package catalog

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-memdb"

	"github.com/outrigger-mesh/outrigger/discovery"
)

// Options carries the catalog's dependencies.
type Options struct {
	// Logger receives the few things the catalog cannot return as errors;
	// nil means slog.Default().
	Logger *slog.Logger
}

// Catalog is the in-memory store of every source's endpoints. It implements
// discovery.Sink. All methods are safe for concurrent use.
type Catalog struct {
	// Set at construction.
	db  *memdb.MemDB
	log *slog.Logger

	// version is the catalog-wide counter behind Snapshot.Version. It is
	// only touched inside a write txn, so memdb's writer lock guards it.
	version uint64

	// wakeups counts watch goroutine wake-ups, for tests that check that a
	// write wakes only the watchers of the service it changed.
	wakeups atomic.Uint64
}

var _ discovery.Sink = (*Catalog)(nil)

// New returns an empty catalog with no sources registered.
func New(opts Options) *Catalog {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		panic(fmt.Sprintf("catalog: invalid memdb schema: %v", err)) // a bug, caught by any test
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Catalog{db: db, log: log}
}

// RegisterSource declares a source and its priority (lower is preferred)
// before it applies anything. The name must be unique, non-empty, and free
// of '/' (it prefixes endpoint IDs) and control characters.
//
// Registering a source after others have reported makes the services it has
// not answered for unanswered again (Snapshot.Answered), until it reports
// them or syncs.
func (c *Catalog) RegisterSource(name string, priority int) error {
	if name == "" || strings.ContainsFunc(name, func(r rune) bool { return r == '/' || r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("catalog: invalid source name %q: want non-empty, without '/' or control characters", name)
	}
	txn := c.db.Txn(true)
	defer txn.Abort()
	old, err := txn.First(tableSource, indexID, name)
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	if old != nil {
		return fmt.Errorf("catalog: source %q registered twice", name)
	}
	if err := txn.Insert(tableSource, &sourceRow{name: name, priority: priority}); err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	if err := c.rebuildAll(txn); err != nil {
		return err
	}
	txn.Commit()
	return nil
}

// Apply records a source's complete view of one service (discovery.Sink).
//
// It validates the update first: the source must be registered, the service
// key valid (discovery.ValidateService), and every endpoint valid with an ID
// unique within the update; the endpoints of a Deleted update are ignored.
// Then it writes the update in one memdb write txn. If the source's view of
// the service is unchanged it commits nothing and wakes nobody; if the view
// changed but the merged snapshot did not (say, a duplicate address that
// another source wins), it stores the view without waking watchers.
//
// Apply never writes to u.Endpoints and keeps no reference to it.
func (c *Catalog) Apply(u discovery.Update) error {
	if err := c.apply(u); err != nil {
		return fmt.Errorf("catalog: source %q, service %q: %w", u.Source, u.Service, err)
	}
	return nil
}

func (c *Catalog) apply(u discovery.Update) error {
	if err := discovery.ValidateService(u.Service); err != nil {
		return err
	}
	var eps []discovery.Endpoint
	if !u.Deleted {
		var err error
		if eps, err = checkEndpoints(u.Endpoints); err != nil {
			return err
		}
	}

	txn := c.db.Txn(true)
	defer txn.Abort()
	src, err := lookupSource(txn, u.Source)
	if err != nil {
		return err
	}
	if src == nil {
		return errors.New("source is not registered")
	}
	raw, err := txn.First(tableView, indexID, u.Service, u.Source)
	if err != nil {
		return err
	}
	old, _ := raw.(*viewRow)

	switch {
	case u.Deleted && (old == nil || old.deleted) && (src.synced || old != nil):
		// Nothing to forget, and nothing new to record.
		return nil
	case u.Deleted && src.synced:
		err = txn.Delete(tableView, old)
	case u.Deleted:
		// Before its sync, a source's delete still answers for the service.
		err = txn.Insert(tableView, &viewRow{service: u.Service, source: u.Source, deleted: true})
	case old != nil && !old.deleted && !old.stale && sameView(old.endpoints, eps, src):
		return nil
	default:
		err = txn.Insert(tableView, &viewRow{service: u.Service, source: u.Source, endpoints: stamp(eps, src)})
	}
	if err != nil {
		return err
	}
	if err := c.rebuild(txn, u.Service); err != nil {
		return err
	}
	txn.Commit()
	return nil
}

// Synced records that source has reported everything it knew at start
// (discovery.Sink). Services it has not reported are answered for from now
// on; their snapshots change if that completes their answer. Calling it
// again is harmless. Synced from an unregistered source is logged and
// ignored.
func (c *Catalog) Synced(source string) {
	if err := c.synced(source); err != nil {
		c.log.Warn("catalog: ignoring sync", "source", source, "error", err)
	}
}

func (c *Catalog) synced(source string) error {
	txn := c.db.Txn(true)
	defer txn.Abort()
	src, err := lookupSource(txn, source)
	if err != nil {
		return err
	}
	if src == nil {
		return errors.New("source is not registered")
	}
	if src.synced {
		return nil
	}
	if err := txn.Insert(tableSource, &sourceRow{name: src.name, priority: src.priority, synced: true}); err != nil {
		return err
	}
	// The source's tombstones said "answered" only until it synced, and
	// its stale views (see ResetSource) it has not reported again are
	// gone from what it knows.
	var tombstones []*viewRow
	it, err := txn.Get(tableView, indexID)
	if err != nil {
		return err
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if v := raw.(*viewRow); (v.deleted || v.stale) && v.source == source {
			tombstones = append(tombstones, v)
		}
	}
	for _, v := range tombstones {
		if err := txn.Delete(tableView, v); err != nil {
			return err
		}
	}
	if err := c.rebuildAll(txn); err != nil {
		return err
	}
	txn.Commit()
	return nil
}

// Snapshot returns the current merged snapshot of service; never nil. A
// service no source has reported has Known false and Version 0 (or the
// version it had when it was last changed).
func (c *Catalog) Snapshot(service string) *discovery.Snapshot {
	txn := c.db.Txn(false)
	raw, err := txn.First(tableService, indexID, service)
	if err == nil && raw != nil {
		return raw.(*serviceRow).snap
	}
	snap, err := build(txn, service)
	if err != nil {
		panic(fmt.Sprintf("catalog: %v", err)) // only a schema bug gets here
	}
	return snap
}

// Services returns the sorted keys of the services at least one source
// reports (Snapshot.Known).
func (c *Catalog) Services() []string {
	txn := c.db.Txn(false)
	it, err := txn.Get(tableService, indexID)
	if err != nil {
		panic(fmt.Sprintf("catalog: %v", err))
	}
	var out []string
	// Radix order of NUL-terminated keys is string order.
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if snap := raw.(*serviceRow).snap; snap.Known {
			out = append(out, snap.Service)
		}
	}
	return out
}

func lookupSource(txn *memdb.Txn, name string) (*sourceRow, error) {
	raw, err := txn.First(tableSource, indexID, name)
	if err != nil {
		return nil, err
	}
	src, _ := raw.(*sourceRow)
	return src, nil
}

// build merges the stored views of service into a snapshot (Version 0).
func build(txn *memdb.Txn, service string) (*discovery.Snapshot, error) {
	it, err := txn.Get(tableView, indexIDPrefix, service)
	if err != nil {
		return nil, err
	}
	var views []*viewRow
	for raw := it.Next(); raw != nil; raw = it.Next() {
		views = append(views, raw.(*viewRow))
	}
	// Answered: every registered source has synced or has a view (live or
	// tombstone) of the service — and there is one: with no source
	// registered yet (a process starting its balancers before its
	// sources), nobody has answered.
	answered := true
	sit, err := txn.Get(tableSource, indexID)
	if err != nil {
		return nil, err
	}
	sources := 0
	for raw := sit.Next(); raw != nil && answered; raw = sit.Next() {
		src := raw.(*sourceRow)
		answered = src.synced || hasView(views, src.name)
		sources++
	}
	answered = answered && sources > 0
	return merge(service, views, answered), nil
}

func hasView(views []*viewRow, source string) bool {
	for _, v := range views {
		if v.source == source {
			return true
		}
	}
	return false
}

// rebuild recomputes the snapshot of service inside txn and, if its content
// changed (or the service has no row yet), publishes it with a new version.
// Writing the service row closes its watch channel at commit, which is what
// wakes the service's watchers, and only them.
func (c *Catalog) rebuild(txn *memdb.Txn, service string) error {
	next, err := build(txn, service)
	if err != nil {
		return err
	}
	raw, err := txn.First(tableService, indexID, service)
	if err != nil {
		return err
	}
	if raw != nil && sameSnapshot(raw.(*serviceRow).snap, next) {
		return nil
	}
	c.version++
	next.Version = c.version
	return txn.Insert(tableService, &serviceRow{snap: next})
}

// rebuildAll rebuilds every service with a row: a change in the source
// registry can flip any service's Answered.
func (c *Catalog) rebuildAll(txn *memdb.Txn) error {
	it, err := txn.Get(tableService, indexID)
	if err != nil {
		return err
	}
	var services []string
	for raw := it.Next(); raw != nil; raw = it.Next() {
		services = append(services, raw.(*serviceRow).snap.Service)
	}
	for _, s := range services {
		if err := c.rebuild(txn, s); err != nil {
			return err
		}
	}
	return nil
}
