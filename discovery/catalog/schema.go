package catalog

import (
	"fmt"

	"github.com/hashicorp/go-memdb"

	"github.com/outrigger-mesh/outrigger/discovery"
)

// Table and index names of the memdb schema.
const (
	tableSource  = "source"
	tableView    = "view"
	tableService = "service"

	indexID       = "id"
	indexIDPrefix = "id_prefix"
)

// Rows are inserted once and never modified afterwards: a change is a new row
// replacing the old one (go-memdb hands the same pointers to every reader).

// sourceRow is one registered source.
type sourceRow struct {
	name     string
	priority int
	synced   bool // the source has called Synced at least once
}

// viewRow is one source's view of one service.
type viewRow struct {
	service string
	source  string
	// deleted marks a tombstone: the source deleted the service before it
	// synced. It carries no endpoints and only records that the source has
	// answered for the service (see Snapshot.Answered). Tombstones are
	// dropped when their source syncs.
	deleted bool
	// stale marks a view from an earlier run of its source, kept by
	// ResetSource until the new run reports the service (which replaces
	// it) or syncs (which drops what it did not report).
	stale bool
	// endpoints are sorted by ID and already stamped for publication: ID
	// qualified as "source/id", Source and Priority set from the registration.
	endpoints []discovery.Endpoint
}

// serviceRow holds the published snapshot of one service. A service row is
// never deleted, even when no source knows the service any more: watchers
// hold the row's own watch channel, which a write to another service never
// closes (a watch on a missing row would wake on every write nearby).
type serviceRow struct {
	snap *discovery.Snapshot
}

// Keys are NUL-terminated strings, so that a prefix scan for "a.b" does not
// match "a.bc" and radix order is string order. Service keys and source names
// are validated to contain no NUL.

type sourceIndex struct{}

func (sourceIndex) FromObject(raw any) (bool, []byte, error) {
	r, ok := raw.(*sourceRow)
	if !ok {
		return false, nil, fmt.Errorf("source index: unexpected row %T", raw)
	}
	return true, key(r.name), nil
}

func (sourceIndex) FromArgs(args ...any) ([]byte, error) {
	name, err := oneString(args)
	if err != nil {
		return nil, fmt.Errorf("source index: %w", err)
	}
	return key(name), nil
}

// viewIndex keys a view by (service, source); its prefix form takes the
// service alone and finds every source's view of it, ordered by source name.
type viewIndex struct{}

func (viewIndex) FromObject(raw any) (bool, []byte, error) {
	r, ok := raw.(*viewRow)
	if !ok {
		return false, nil, fmt.Errorf("view index: unexpected row %T", raw)
	}
	return true, key(r.service, r.source), nil
}

func (viewIndex) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 2 {
		return nil, fmt.Errorf("view index: want service and source, got %d arguments", len(args))
	}
	service, ok1 := args[0].(string)
	source, ok2 := args[1].(string)
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("view index: want two strings, got %T and %T", args[0], args[1])
	}
	return key(service, source), nil
}

func (viewIndex) PrefixFromArgs(args ...any) ([]byte, error) {
	service, err := oneString(args)
	if err != nil {
		return nil, fmt.Errorf("view index: %w", err)
	}
	return key(service), nil
}

type serviceIndex struct{}

func (serviceIndex) FromObject(raw any) (bool, []byte, error) {
	r, ok := raw.(*serviceRow)
	if !ok {
		return false, nil, fmt.Errorf("service index: unexpected row %T", raw)
	}
	return true, key(r.snap.Service), nil
}

func (serviceIndex) FromArgs(args ...any) ([]byte, error) {
	service, err := oneString(args)
	if err != nil {
		return nil, fmt.Errorf("service index: %w", err)
	}
	return key(service), nil
}

func oneString(args []any) (string, error) {
	if len(args) != 1 {
		return "", fmt.Errorf("want one argument, got %d", len(args))
	}
	s, ok := args[0].(string)
	if !ok {
		return "", fmt.Errorf("want a string, got %T", args[0])
	}
	return s, nil
}

func key(parts ...string) []byte {
	n := 0
	for _, p := range parts {
		n += len(p) + 1
	}
	b := make([]byte, 0, n)
	for _, p := range parts {
		b = append(b, p...)
		b = append(b, 0)
	}
	return b
}

func schema() *memdb.DBSchema {
	table := func(name string, indexer memdb.Indexer) *memdb.TableSchema {
		return &memdb.TableSchema{
			Name: name,
			Indexes: map[string]*memdb.IndexSchema{
				indexID: {Name: indexID, Unique: true, Indexer: indexer},
			},
		}
	}
	return &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
		tableSource:  table(tableSource, sourceIndex{}),
		tableView:    table(tableView, viewIndex{}),
		tableService: table(tableService, serviceIndex{}),
	}}
}
