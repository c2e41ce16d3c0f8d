package balancer

import (
	"math/rand/v2"
)

// fullScanMax is the largest tier least_conn scans in full; larger tiers use
// power of two random choices, which keeps Pick O(1) and, unlike a full
// scan, does not send a burst of new connections to the single least loaded
// endpoint of a big tier.
const fullScanMax = 8

// leastConn sends each pick to the endpoint with the fewest in-flight picks
// relative to its weight (in_flight/weight, compared by cross-multiplication).
// Ties are broken at random in proportion to weight, so an idle tier shares
// work by weight.
type leastConn struct{}

func (leastConn) Name() string { return PolicyLeastConn }

func (leastConn) Build(tier []Candidate) Picker {
	p := &leastConnPicker{cands: tier}
	if len(tier) > fullScanMax && !equalWeights(tier) {
		p.alias = newAliasTable(tier)
	}
	return p
}

type leastConnPicker struct {
	cands []Candidate
	// alias draws a candidate in proportion to weight for the two random
	// choices; nil when weights are equal (a uniform draw) or the tier is
	// scanned in full.
	alias *aliasTable
}

func (p *leastConnPicker) Pick(info *PickInfo) (PickResult, error) {
	n := len(p.cands)
	switch {
	case n == 0:
		return PickResult{}, ErrNoEndpoints
	case n <= fullScanMax:
		i := p.scanAll(info, false)
		if r, ok := p.cands[i].takeClosed(); ok {
			return r, nil
		}
		return p.pickSlow(i, info)
	}
	i := p.twoChoices(info, false)
	if r, ok := p.cands[i].takeClosed(); ok {
		return r, nil
	}
	return p.pickSlow(i, info)
}

// pickSlow is Pick when c[i]'s breaker is not closed: c[i] itself if it
// admits (a half-open probe), else the policy's choice again among the
// candidates that can admit. A refused endpoint stays least loaded (its
// picks are refused), so without this every pick it wins would go to one
// neighbour and pile load there.
func (p *leastConnPicker) pickSlow(i int, info *PickInfo) (PickResult, error) {
	if r, ok := p.cands[i].Take(); ok {
		return r, nil
	}
	for range redraws {
		var j int
		if len(p.cands) <= fullScanMax {
			j = p.scanAll(info, true)
		} else {
			j = p.twoChoices(info, true)
		}
		if j < 0 {
			break // none admits
		}
		if r, ok := p.cands[j].Take(); ok {
			return r, nil
		}
	}
	return takeSlow(p.cands, i, info)
}

// scanAll is scan, among all candidates when every one was tried; -1 only
// when admit is set and none is admittable.
func (p *leastConnPicker) scanAll(info *PickInfo, admit bool) int {
	i := p.scan(info, admit)
	if i < 0 && info != nil && info.NTried > 0 {
		i = p.scan(nil, admit)
	}
	return i
}

// twoChoices is power of two random choices: the less loaded of two
// random draws (in proportion to weight). With admit, draws that cannot
// admit are discarded, a few times over; -1 when none could.
func (p *leastConnPicker) twoChoices(info *PickInfo, admit bool) int {
	n := len(p.cands)
	for range redraws {
		var i, j int
		if p.alias != nil {
			i, j = p.alias.draw(), p.alias.draw()
		} else {
			i = rand.IntN(n)
			j = rand.IntN(n - 1)
			if j >= i {
				j++
			}
		}
		i, j = avoidTried(p.cands, i, info), avoidTried(p.cands, j, info)
		if admit {
			switch ai, aj := p.cands[i].admittable(), p.cands[j].admittable(); {
			case !ai && !aj:
				continue
			case !ai:
				return j
			case !aj:
				return i
			}
		}
		// On a tie keep i: both draws are random, so that is a random
		// choice.
		if less(p.cands[j], p.cands[i]) {
			i = j
		}
		return i
	}
	return -1
}

// scan returns the least loaded candidate not tried in info (and with
// admit, admittable), or -1 when there is none. Ties are resolved by
// weighted reservoir sampling.
func (p *leastConnPicker) scan(info *PickInfo, admit bool) int {
	best, tieWeight := -1, int64(0)
	var bestLoad, bestWeight int64
	for i, c := range p.cands {
		if info != nil && info.NTried > 0 && info.WasTried(c.Endpoint.Addr) {
			continue
		}
		if admit && !c.admittable() {
			continue
		}
		load, w := c.State.inFlight.Load(), c.weight()
		if best >= 0 {
			l, r := load*bestWeight, bestLoad*w
			if l > r {
				continue
			}
			if l == r {
				tieWeight += w
				if rand.Int64N(tieWeight) >= w {
					continue
				}
			} else {
				tieWeight = w
			}
		} else {
			tieWeight = w
		}
		best, bestLoad, bestWeight = i, load, w
	}
	return best
}

// less reports whether a is strictly less loaded than b relative to weight.
func less(a, b Candidate) bool {
	return a.State.inFlight.Load()*b.weight() < b.State.inFlight.Load()*a.weight()
}

func equalWeights(c []Candidate) bool {
	for i := 1; i < len(c); i++ {
		if c[i].weight() != c[0].weight() {
			return false
		}
	}
	return true
}

// aliasTable draws index i with probability w_i/W in O(1) (Vose's alias
// method, in exact integer arithmetic): pick a column k uniformly, keep it
// with probability keep[k]/W, else take alias[k].
type aliasTable struct {
	keep  []int64
	alias []int
	total int64 // W, the sum of weights
}

func newAliasTable(c []Candidate) *aliasTable {
	n := len(c)
	t := &aliasTable{keep: make([]int64, n), alias: make([]int, n)}
	// Scale each weight by n so that a full column holds exactly W.
	scaled := make([]int64, n)
	var small, large []int
	for i := range c {
		t.total += c[i].weight()
	}
	for i := range c {
		scaled[i] = c[i].weight() * int64(n)
		if scaled[i] < t.total {
			small = append(small, i)
		} else {
			large = append(large, i)
		}
	}
	for len(small) > 0 && len(large) > 0 {
		s, l := small[len(small)-1], large[len(large)-1]
		small, large = small[:len(small)-1], large[:len(large)-1]
		t.keep[s], t.alias[s] = scaled[s], l
		scaled[l] -= t.total - scaled[s]
		if scaled[l] < t.total {
			small = append(small, l)
		} else {
			large = append(large, l)
		}
	}
	// With integer arithmetic every leftover column is exactly full.
	for _, i := range append(small, large...) {
		t.keep[i], t.alias[i] = t.total, i
	}
	return t
}

func (t *aliasTable) draw() int {
	k := rand.IntN(len(t.keep))
	if rand.Int64N(t.total) < t.keep[k] {
		return k
	}
	return t.alias[k]
}
