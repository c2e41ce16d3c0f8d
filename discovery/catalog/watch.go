package catalog

import (
	"context"
	"fmt"

	"github.com/outrigger-mesh/outrigger/discovery"
)

// Watch returns a channel of capacity 1 that holds the current snapshot of
// service at once, and afterwards the latest snapshot whenever the service's
// merged view changes. Delivery coalesces: a reader that falls behind gets
// only the newest snapshot, and never holds up writers. Versions received
// strictly increase.
//
// The channel is closed when ctx ends (a snapshot already in it may still be
// received first); by the time it is closed, the watch's goroutine has
// exited.
func (c *Catalog) Watch(ctx context.Context, service string) <-chan *discovery.Snapshot {
	ch := make(chan *discovery.Snapshot, 1)
	snap, wake := c.watchRow(service)
	ch <- snap
	go c.watch(ctx, service, ch, snap.Version, wake)
	return ch
}

// watch is the one goroutine of a Watch call and the only sender on ch.
func (c *Catalog) watch(ctx context.Context, service string, ch chan *discovery.Snapshot, last uint64, wake <-chan struct{}) {
	defer close(ch)
	for {
		select {
		case <-ctx.Done():
			return
		case <-wake:
		}
		c.wakeups.Add(1)
		var snap *discovery.Snapshot
		snap, wake = c.watchRow(service)
		if snap.Version == last {
			continue
		}
		last = snap.Version
		select {
		case ch <- snap:
		default:
			// The reader has not taken the previous snapshot: replace it.
			// This goroutine is the only sender, so after the drain the
			// send cannot block.
			select {
			case <-ch:
			default:
			}
			ch <- snap
		}
	}
}

// watchRow returns the published snapshot of service and the watch channel
// of its row, creating the row first if the service has none: watching a
// missing row would wake on writes to its neighbours in the index.
func (c *Catalog) watchRow(service string) (*discovery.Snapshot, <-chan struct{}) {
	for {
		txn := c.db.Txn(false)
		wake, raw, err := txn.FirstWatch(tableService, indexID, service)
		if err != nil {
			panic(fmt.Sprintf("catalog: %v", err)) // only a schema bug gets here
		}
		if raw != nil {
			return raw.(*serviceRow).snap, wake
		}
		if err := c.ensureRow(service); err != nil {
			panic(fmt.Sprintf("catalog: %v", err))
		}
	}
}

func (c *Catalog) ensureRow(service string) error {
	txn := c.db.Txn(true)
	defer txn.Abort()
	raw, err := txn.First(tableService, indexID, service)
	if err != nil || raw != nil {
		return err
	}
	if err := c.rebuild(txn, service); err != nil {
		return err
	}
	txn.Commit()
	return nil
}
