package catalog

import (
	"errors"
	"fmt"

	"github.com/hashicorp/go-memdb"
)

// UnregisterSource forgets a source: its registration and its view of every
// service, in one write txn. Services it contributed endpoints to get a new
// snapshot without them, and services it had not answered for may become
// answered. The caller stops the source first; an Apply or Synced from it
// afterwards fails as from any unregistered source. The name may be
// registered again (cmd/outrigger does, for a source whose config changed
// on reload).
func (c *Catalog) UnregisterSource(name string) error {
	if err := c.unregister(name); err != nil {
		return fmt.Errorf("catalog: unregister source %q: %w", name, err)
	}
	return nil
}

func (c *Catalog) unregister(name string) error {
	txn := c.db.Txn(true)
	defer txn.Abort()
	src, views, err := registeredViews(txn, name)
	if err != nil {
		return err
	}
	for _, v := range views {
		if err := txn.Delete(tableView, v); err != nil {
			return err
		}
	}
	if err := txn.Delete(tableSource, src); err != nil {
		return err
	}
	// Every service: the registry changed, which can flip Answered.
	if err := c.rebuildAll(txn); err != nil {
		return err
	}
	txn.Commit()
	return nil
}

// ResetSource starts a new run of a registered source (cmd/outrigger does
// this for a source whose config changed on reload) without a gap: the
// source's views stay in the catalog, marked stale, and keep serving until
// the new run replaces them — service by service as it reports, and all at
// once when it syncs, which drops the stale views it did not report. So a
// changed source never publishes an empty picker in between. The source's
// registration becomes priority and not synced. The caller stops the old
// run first, so nothing of it applies after the reset.
func (c *Catalog) ResetSource(name string, priority int) error {
	if err := c.reset(name, priority); err != nil {
		return fmt.Errorf("catalog: reset source %q: %w", name, err)
	}
	return nil
}

func (c *Catalog) reset(name string, priority int) error {
	txn := c.db.Txn(true)
	defer txn.Abort()
	_, views, err := registeredViews(txn, name)
	if err != nil {
		return err
	}
	for _, v := range views {
		// Rows are never mutated once inserted: insert a copy. A
		// tombstone of the old run is dropped (the new run answers
		// afresh); a live view stays, stale.
		if v.deleted {
			err = txn.Delete(tableView, v)
		} else {
			cp := *v
			cp.stale = true
			err = txn.Insert(tableView, &cp)
		}
		if err != nil {
			return err
		}
	}
	if err := txn.Insert(tableSource, &sourceRow{name: name, priority: priority}); err != nil {
		return err
	}
	if err := c.rebuildAll(txn); err != nil {
		return err
	}
	txn.Commit()
	return nil
}

// registeredViews returns source name's registration and its views of
// every service; an error when it is not registered.
func registeredViews(txn *memdb.Txn, name string) (*sourceRow, []*viewRow, error) {
	src, err := lookupSource(txn, name)
	if err != nil {
		return nil, nil, err
	}
	if src == nil {
		return nil, nil, errors.New("source is not registered")
	}
	var views []*viewRow
	it, err := txn.Get(tableView, indexID)
	if err != nil {
		return nil, nil, err
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if v := raw.(*viewRow); v.source == name {
			views = append(views, v)
		}
	}
	return src, views, nil
}
