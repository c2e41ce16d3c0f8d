package catalog

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/outrigger-mesh/outrigger/discovery"
)

// This file holds the pure part of the catalog: checking an update, turning
// it into a stored view, and merging views into a snapshot. Nothing here
// touches memdb.

// checkEndpoints validates an update's endpoints and returns them sorted by
// ID. It never writes to eps: when eps is not sorted already it sorts a copy.
func checkEndpoints(eps []discovery.Endpoint) ([]discovery.Endpoint, error) {
	var errs []error
	for i := range eps {
		if err := eps[i].Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if !slices.IsSortedFunc(eps, byID) {
		eps = slices.Clone(eps)
		slices.SortFunc(eps, byID)
	}
	for i := 1; i < len(eps); i++ {
		if eps[i].ID == eps[i-1].ID && (i == 1 || eps[i-2].ID != eps[i].ID) {
			errs = append(errs, fmt.Errorf("duplicate endpoint id %q", eps[i].ID))
		}
	}
	return eps, errors.Join(errs...)
}

func byID(a, b discovery.Endpoint) int { return strings.Compare(a.ID, b.ID) }

// stamp copies eps (sorted by ID) for storage, qualifying each ID as
// "source/id" and setting Source and Priority from the registration.
// Qualifying keeps the order, since every ID gets the same prefix.
func stamp(eps []discovery.Endpoint, src *sourceRow) []discovery.Endpoint {
	if len(eps) == 0 {
		return nil
	}
	out := make([]discovery.Endpoint, len(eps))
	for i, e := range eps {
		e.ID = src.name + "/" + e.ID
		e.Source = src.name
		e.Priority = src.priority
		out[i] = e
	}
	return out
}

// sameView reports whether stamping eps would give exactly stored, without
// allocating: the unchanged-update path is the common one for sources that
// resync periodically.
func sameView(stored, eps []discovery.Endpoint, src *sourceRow) bool {
	if len(stored) != len(eps) {
		return false
	}
	for i := range eps {
		s, e := &stored[i], eps[i]
		if len(s.ID) != len(src.name)+1+len(e.ID) ||
			!strings.HasPrefix(s.ID, src.name) || s.ID[len(src.name)] != '/' ||
			!strings.HasSuffix(s.ID, e.ID) {
			return false
		}
		e.ID, e.Source, e.Priority = s.ID, src.name, src.priority
		if !e.Equal(s) {
			return false
		}
	}
	return true
}

// merge builds the snapshot of service from every source's view of it
// (views ordered by source name, as the view index returns them). Version is
// left for the caller to set. The rules are the package doc's.
func merge(service string, views []*viewRow, answered bool) *discovery.Snapshot {
	snap := &discovery.Snapshot{Service: service, Answered: answered}
	n, withEndpoints := 0, 0
	for _, v := range views {
		if !v.deleted {
			snap.Known = true
		}
		if len(v.endpoints) > 0 {
			n += len(v.endpoints)
			withEndpoints++
		}
	}
	if n == 0 {
		return snap
	}
	// Views come sorted by source name and each view's endpoints by ID, so a
	// stable sort of the views by priority yields (Priority, Source, ID).
	views = slices.Clone(views)
	slices.SortStableFunc(views, func(a, b *viewRow) int {
		return cmp.Compare(priorityOf(a), priorityOf(b))
	})
	eps := make([]discovery.Endpoint, 0, n)
	for _, v := range views {
		eps = append(eps, v.endpoints...)
	}
	if withEndpoints > 1 {
		eps = dedupeAddrs(eps)
	}
	snap.Endpoints = eps
	return snap
}

// priorityOf is the priority of a view's source; a view without endpoints
// sorts anywhere, since it contributes nothing.
func priorityOf(v *viewRow) int {
	if len(v.endpoints) == 0 {
		return 0
	}
	return v.endpoints[0].Priority
}

// dedupeAddrs drops an endpoint whose address an earlier endpoint of another
// source already has. eps is in (Priority, Source, ID) order, so the first
// source to claim an address is the preferred one. Endpoints of one source
// that share an address are the source's business and all stay.
func dedupeAddrs(eps []discovery.Endpoint) []discovery.Endpoint {
	owner := make(map[netip.AddrPort]string, len(eps))
	out := eps[:0]
	for _, e := range eps {
		if src, ok := owner[e.Addr]; ok && src != e.Source {
			continue
		}
		owner[e.Addr] = e.Source
		out = append(out, e)
	}
	return out
}

// sameSnapshot reports whether a and b publish the same content, ignoring
// Version.
func sameSnapshot(a, b *discovery.Snapshot) bool {
	if a.Known != b.Known || a.Answered != b.Answered || len(a.Endpoints) != len(b.Endpoints) {
		return false
	}
	for i := range a.Endpoints {
		if !a.Endpoints[i].Equal(&b.Endpoints[i]) {
			return false
		}
	}
	return true
}
