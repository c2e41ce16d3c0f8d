package balancer

import (
	"context"
	"slices"
	"time"

	"github.com/outrigger-mesh/outrigger/discovery"
	"github.com/outrigger-mesh/outrigger/resilience"
)

// The balancer's side of resilience: which endpoints the picker may use.
// Everything here runs on the control goroutine (Run, or a test standing in
// for it), which owns ejection bookkeeping; request goroutines only flip
// atomics in EndpointState and signal.

// newState returns the live state of a new endpoint, with a breaker and
// outlier counters when they are configured.
func (b *Balancer) newState(id string) *EndpointState {
	s := newEndpointState()
	s.wake = b.signal
	if b.cfg.breakerOn() {
		s.breaker = resilience.NewBreaker(b.cfg.Service+"/"+id, *b.cfg.Breaker, func(to resilience.BreakerState) {
			// Runs under gobreaker's lock: count and signal only.
			if to == resilience.BreakerOpen {
				b.breakerOpensTotal.Add(1)
			}
			b.signal()
		})
	}
	if b.cfg.outlierOn() {
		s.outlier = resilience.NewOutlier(*b.cfg.Outlier)
	}
	return s
}

// usable decides, at now, which endpoints of g may be in the picker: ready
// in discovery, healthy, breaker not open, and not ejected (honoring at
// most the outlier share); halfOpen marks the usable ones whose breaker is
// half-open. It carries out pending ejections and expiries, logs state
// changes, and sets b.deadline to the next expiry.
func (b *Balancer) usable(g *generation, now time.Time) (usable, halfOpen []bool) {
	eps := g.snap.Endpoints
	usable = make([]bool, len(eps))
	halfOpen = make([]bool, len(eps))
	b.deadline = time.Time{}
	ready := 0
	for i := range eps {
		if eps[i].State == discovery.StateReady {
			ready++
		}
	}
	honored := b.ejections(g, now, ready)
	for i := range eps {
		st := g.states[i]
		bs := resilience.BreakerClosed
		if st.breaker != nil {
			bs = st.breaker.State()
			if bs == resilience.BreakerOpen {
				b.soonest(st.breaker.OpenUntil().Add(time.Nanosecond))
			}
		}
		usable[i] = eps[i].State == discovery.StateReady && !st.unhealthy.Load() &&
			bs != resilience.BreakerOpen && !honored[i]
		halfOpen[i] = usable[i] && bs == resilience.BreakerHalfOpen
		b.logChange(&eps[i], st, endpointView{breaker: bs, unhealthy: st.unhealthy.Load(), ejected: st.ejected.Load()})
	}
	return usable, halfOpen
}

// ejections ends ejections that expired, starts those Done asked for
// within the share, and returns which endpoints of g are ejected from the
// picker: at most MaxEjected(ready) of them, the earliest ejected first
// (the share can be exceeded by ejections made while the upstream had more
// endpoints).
func (b *Balancer) ejections(g *generation, now time.Time, ready int) []bool {
	honored := make([]bool, len(g.states))
	if !b.cfg.outlierOn() {
		return honored
	}
	cfg := *b.cfg.Outlier
	maxEjected := cfg.MaxEjected(ready)
	var ejected []int
	for i, st := range g.states {
		if st.ejected.Load() && now.UnixNano() > st.ejectedUntil.Load() {
			st.ejected.Store(false)
			st.uneject = now
		}
		if st.ejected.Load() {
			ejected = append(ejected, i)
		}
	}
	for i, st := range g.states {
		r := resilience.EjectReason(st.ejectWanted.Swap(0))
		if r == resilience.NoEjection {
			continue
		}
		st.outlier.Reset()
		if st.ejected.Load() {
			continue
		}
		ep := &g.snap.Endpoints[i]
		if len(ejected) >= maxEjected {
			b.log.Warn("endpoint not ejected: max ejection share reached", "endpoint", ep.ID, "address", ep.Addr,
				"reason", r.String(), "ejected", len(ejected), "max", maxEjected)
			continue
		}
		// Ejections in a row grow; an endpoint that stayed in for a
		// whole MaxEjectionTime starts over.
		times := st.ejections.Load() + 1
		if !st.uneject.IsZero() && now.Sub(st.uneject) > cfg.WithDefaults().MaxEjectionTime {
			times = 1
		}
		d := cfg.EjectionTime(int(times))
		st.ejections.Store(times)
		st.ejectedUntil.Store(now.Add(d).UnixNano())
		st.ejectReason.Store(uint32(r))
		st.ejected.Store(true)
		st.ejectedAt = now
		b.ejectionsTotal.Add(1)
		ejected = append(ejected, i)
		b.log.Warn("endpoint ejected", "endpoint", ep.ID, "address", ep.Addr, "reason", r.String(),
			"for", d, "ejections", times)
	}
	slices.SortStableFunc(ejected, func(x, y int) int { return g.states[x].ejectedAt.Compare(g.states[y].ejectedAt) })
	for k, i := range ejected {
		b.soonest(time.Unix(0, g.states[i].ejectedUntil.Load()+1))
		honored[i] = k < maxEjected
	}
	return honored
}

// soonest moves b.deadline to t when t is earlier.
func (b *Balancer) soonest(t time.Time) {
	if b.deadline.IsZero() || t.Before(b.deadline) {
		b.deadline = t
	}
}

// logChange logs what changed in an endpoint's resilience state since the
// last time, once per change (never per request).
func (b *Balancer) logChange(ep *discovery.Endpoint, st *EndpointState, v endpointView) {
	old := st.logged
	st.logged = v
	if v.breaker != old.breaker {
		lvl := b.log.Info
		if v.breaker == resilience.BreakerOpen {
			lvl = b.log.Warn
		}
		lvl("endpoint circuit breaker "+v.breaker.String(), "endpoint", ep.ID, "address", ep.Addr,
			"trips", st.breaker.Trips())
	}
	if v.unhealthy != old.unhealthy {
		if v.unhealthy {
			b.log.Warn("endpoint failed health checks", "endpoint", ep.ID, "address", ep.Addr)
		} else {
			b.log.Info("endpoint passed health checks", "endpoint", ep.ID, "address", ep.Addr)
		}
	}
	if old.ejected && !v.ejected {
		b.log.Info("endpoint ejection ended", "endpoint", ep.ID, "address", ep.Addr)
	}
}

// forgetHealth drops every health verdict when Run stops its checkers: a
// verdict belongs to the checker that reached it, and with none running
// it would otherwise stick (the next Run's checkers start healthy and
// report only changes). The published picker is left as it is while Run
// is stopped; the next Run rebuilds it.
func (b *Balancer) forgetHealth() {
	for _, st := range b.states {
		st.healthKnown = false
		st.unhealthy.Store(false)
	}
}

// syncHealth points the health monitor at the snapshot's ready endpoints.
// Endpoints that are not ready have no checker; when one comes back it
// starts healthy again, as does an endpoint whose address changed (the
// monitor reports every checker it starts as healthy).
func (b *Balancer) syncHealth(ctx context.Context) {
	if b.health == nil || b.snap == nil {
		return
	}
	var targets []resilience.HealthTarget
	for i := range b.snap.Endpoints {
		ep := &b.snap.Endpoints[i]
		st := b.states[ep.ID]
		if ep.State != discovery.StateReady {
			if st.healthKnown {
				st.healthKnown = false
				st.unhealthy.Store(false)
			}
			continue
		}
		st.healthKnown = true
		targets = append(targets, resilience.HealthTarget{ID: ep.ID, Addr: ep.Addr, OnChange: func(healthy bool) {
			st.unhealthy.Store(!healthy)
			b.signal()
		}})
	}
	if err := b.health.Sync(ctx, targets); err != nil {
		b.log.Warn("health checks not started", "err", err)
	}
}
