package balancer

import (
	"container/heap"
	"math/rand/v2"
	"sync/atomic"
)

// maxSchedule bounds the length of a weighted round-robin schedule. Weights
// are first divided by their greatest common divisor, so equal weights give
// a schedule as long as the tier; only unusual mixes of large co-prime
// weights are scaled down to fit (each keeps at least one slot).
const maxSchedule = 1 << 14

// roundRobin is weighted round robin over a schedule precomputed at build
// time, so Pick is one atomic add and an index.
type roundRobin struct{}

func (roundRobin) Name() string { return PolicyRoundRobin }

func (roundRobin) Build(tier []Candidate) Picker {
	p := &roundRobinPicker{cands: tier, sched: schedule(tier)}
	// A random start keeps rebuilt pickers (every snapshot, every proxy)
	// from all sending their first connection to the same endpoint.
	if len(p.sched) > 0 {
		p.next.Store(rand.Uint64N(uint64(len(p.sched))))
	}
	return p
}

type roundRobinPicker struct {
	cands []Candidate
	sched []uint32 // indices into cands; each i appears weight(i)/gcd times
	next  atomic.Uint64
}

func (p *roundRobinPicker) Pick(info *PickInfo) (PickResult, error) {
	if len(p.sched) == 0 {
		return PickResult{}, ErrNoEndpoints
	}
	n := p.next.Add(1) - 1
	i := avoidTried(p.cands, int(p.sched[n%uint64(len(p.sched))]), info)
	if r, ok := p.cands[i].takeClosed(); ok {
		return r, nil
	}
	return p.pickSlow(i, info)
}

// pickSlow is Pick when c[i]'s breaker is not closed: c[i] itself if it
// admits (a half-open probe), else a random slot of the schedule — a draw
// in proportion to weight — among the candidates that can admit, so a
// refused endpoint's share spreads over the others by weight instead of
// going to its neighbour in the rotation.
func (p *roundRobinPicker) pickSlow(i int, info *PickInfo) (PickResult, error) {
	if r, ok := p.cands[i].Take(); ok {
		return r, nil
	}
	for range redraws {
		j := avoidTried(p.cands, int(p.sched[rand.IntN(len(p.sched))]), info)
		if j == i || !p.cands[j].admittable() {
			continue
		}
		if r, ok := p.cands[j].Take(); ok {
			return r, nil
		}
	}
	return takeSlow(p.cands, i, info)
}

// schedule interleaves the candidates in proportion to their weights by
// earliest deadline first: candidate i's k-th slot has deadline k/w_i, and
// slots are emitted in deadline order, ties by index. Over one schedule each
// candidate appears exactly w_i times (after gcd reduction), evenly spread;
// equal weights give the plain rotation 0, 1, ..., n-1.
func schedule(cands []Candidate) []uint32 {
	if len(cands) == 0 {
		return nil
	}
	h := &edf{w: make([]int64, len(cands)), k: make([]int64, len(cands))}
	var g, total int64
	for i, c := range cands {
		h.w[i] = c.weight()
		g = gcd(g, h.w[i])
	}
	for i := range h.w {
		h.w[i] /= g
		total += h.w[i]
	}
	if total > maxSchedule {
		scaled := int64(0)
		for i := range h.w {
			h.w[i] = max(1, h.w[i]*maxSchedule/total)
			scaled += h.w[i]
		}
		total = scaled
	}
	h.idx = make([]int, len(cands))
	for i := range h.idx {
		h.idx[i] = i
	}
	heap.Init(h)
	sched := make([]uint32, 0, total)
	for int64(len(sched)) < total {
		i := h.idx[0]
		sched = append(sched, uint32(i))
		h.k[i]++
		heap.Fix(h, 0)
	}
	return sched
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// edf is a min-heap of candidate indices by next deadline (k_i+1)/w_i,
// compared by cross-multiplication to stay in integers.
type edf struct {
	idx  []int
	w, k []int64
}

func (h *edf) Len() int { return len(h.idx) }
func (h *edf) Less(a, b int) bool {
	i, j := h.idx[a], h.idx[b]
	l, r := (h.k[i]+1)*h.w[j], (h.k[j]+1)*h.w[i]
	return l < r || l == r && i < j
}
func (h *edf) Swap(a, b int) { h.idx[a], h.idx[b] = h.idx[b], h.idx[a] }
func (h *edf) Push(any)      { panic("edf: fixed size") }
func (h *edf) Pop() any      { panic("edf: fixed size") }
