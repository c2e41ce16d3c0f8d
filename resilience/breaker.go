package resilience

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// Defaults of BreakerConfig.
const (
	DefaultBreakerWindow      = 10 * time.Second
	DefaultBreakerMinRequests = 20
	DefaultBreakerOpenTime    = 5 * time.Second
	DefaultBreakerProbes      = 1
	// MaxBreakerProbes bounds HalfOpenProbes: each probe has a slot with a
	// prebuilt Done, so that Done needs no allocation.
	MaxBreakerProbes = 8
	// breakerBuckets is how many buckets the failure-ratio window rolls
	// over (gobreaker's BucketPeriod = Window/breakerBuckets).
	breakerBuckets = 10
)

// BreakerConfig is a circuit breaker setting, per endpoint or per route. It
// is off unless ConsecutiveFailures or FailureRatio is set.
type BreakerConfig struct {
	// ConsecutiveFailures trips the breaker after this many failures in a
	// row (see Outcome.Failed); 0: not this way.
	ConsecutiveFailures uint32
	// FailureRatio trips the breaker when failures make up at least this
	// share, in (0, 1], of at least MinRequests outcomes in the last Window
	// (a window rolled in ten buckets); 0: not this way.
	FailureRatio float64
	Window       time.Duration // default 10s
	MinRequests  uint32        // default 20
	// OpenTime is how long the breaker stays open after its first trip; a
	// breaker that trips again from half-open stays open OpenTime × trips,
	// at most MaxOpenTime. Defaults 5s and 10 × OpenTime.
	OpenTime    time.Duration
	MaxOpenTime time.Duration
	// HalfOpenProbes is how many requests a half-open breaker admits; all
	// of them must succeed to close it, one failure opens it again.
	// Default 1, at most MaxBreakerProbes.
	HalfOpenProbes uint32
}

// Enabled reports whether c turns a breaker on.
func (c BreakerConfig) Enabled() bool { return c.ConsecutiveFailures > 0 || c.FailureRatio > 0 }

// Validate reports every problem of c, joined.
func (c BreakerConfig) Validate() error {
	var errs []error
	if c.FailureRatio < 0 || c.FailureRatio > 1 {
		errs = append(errs, fmt.Errorf("circuit_breaker: failure_ratio: %v is outside (0, 1]", c.FailureRatio))
	}
	if c.Window < 0 {
		errs = append(errs, fmt.Errorf("circuit_breaker: window: %v is negative", c.Window))
	} else if c.Window > 0 && c.Window < breakerBuckets*time.Millisecond {
		errs = append(errs, fmt.Errorf("circuit_breaker: window: %v is shorter than 10ms", c.Window))
	}
	if c.OpenTime < 0 {
		errs = append(errs, fmt.Errorf("circuit_breaker: open: %v is negative", c.OpenTime))
	}
	if c.MaxOpenTime < 0 {
		errs = append(errs, fmt.Errorf("circuit_breaker: max_open: %v is negative", c.MaxOpenTime))
	} else if c.MaxOpenTime > 0 && c.MaxOpenTime < c.openTime() {
		errs = append(errs, fmt.Errorf("circuit_breaker: max_open: %v is less than open %v", c.MaxOpenTime, c.openTime()))
	}
	if c.HalfOpenProbes > MaxBreakerProbes {
		errs = append(errs, fmt.Errorf("circuit_breaker: half_open_probes: %d is more than %d", c.HalfOpenProbes, MaxBreakerProbes))
	}
	return errors.Join(errs...)
}

func (c BreakerConfig) openTime() time.Duration {
	if c.OpenTime == 0 {
		return DefaultBreakerOpenTime
	}
	return c.OpenTime
}

// withDefaults returns c with every zero field at its default.
func (c BreakerConfig) withDefaults() BreakerConfig {
	c.OpenTime = c.openTime()
	if c.MaxOpenTime == 0 {
		c.MaxOpenTime = 10 * c.OpenTime
	}
	if c.Window == 0 {
		c.Window = DefaultBreakerWindow
	}
	if c.MinRequests == 0 {
		c.MinRequests = DefaultBreakerMinRequests
	}
	if c.HalfOpenProbes == 0 {
		c.HalfOpenProbes = DefaultBreakerProbes
	}
	return c
}

// BreakerState is a breaker's state as the hot path sees it.
type BreakerState int32

const (
	BreakerClosed BreakerState = iota
	BreakerOpen
	BreakerHalfOpen
)

// String returns "closed", "open" or "half-open".
func (s BreakerState) String() string {
	switch s {
	case BreakerClosed:
		return "closed"
	case BreakerOpen:
		return "open"
	case BreakerHalfOpen:
		return "half-open"
	}
	return fmt.Sprintf("breaker-state(%d)", int32(s))
}

// MarshalText renders the state by name in JSON.
func (s BreakerState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Ticket pairs an admission by Breaker.Admit with its Breaker.Done. It is a
// small value the caller keeps with the request; the zero Ticket is the
// closed-state admission. A probe's ticket names its slot (low bits) and
// the admission (a sequence number above them), so a second Done of a
// finished probe is recognized and ignored instead of finishing whichever
// probe holds the slot now.
type Ticket uint64

// ticketSlotBits hold a probe ticket's slot number (1..MaxBreakerProbes).
const ticketSlotBits = 4

// slot is the index into Breaker.probes of a probe ticket.
func (t Ticket) slot() int { return int(t&(1<<ticketSlotBits-1)) - 1 }

// Outcomes reported to gobreaker: nil is a success.
var (
	errBreakerFailure = errors.New("failure")
	errBreakerNeutral = errors.New("neutral") // gobreaker IsExcluded
)

// Breaker is a circuit breaker for one endpoint or one route: gobreaker's
// TwoStepCircuitBreaker (the outcome of a request arrives after the request
// was admitted), with the state mirrored into atomics so that the hot path
// reads it without the breaker's lock, and an open time that grows with
// repeated trips.
//
// Concurrency: every method is safe from any goroutine. Admit takes no lock
// and does not allocate while the breaker is closed (one atomic load) or
// open (an atomic load and the clock); only admitting a half-open probe
// locks the breaker (and allocates gobreaker's callback). Done records the
// outcome in gobreaker, under its lock and at the cost of one allocation
// (gobreaker's callback), except in the common case of a success while
// closed in consecutive-failures mode with no failure pending, which is
// one atomic swap. In failure-ratio mode every outcome is recorded.
//
// gobreaker traps (DESIGN "Known traps") and how they are handled: its
// OnStateChange runs under its lock, so the callback only stores atomics
// and calls OnChange, and never calls State or Counts; half-open answers
// ErrTooManyRequests to callers beyond the probes, which Admit reports as
// not admitted (the balancer then picks another endpoint); it does not limit
// in-flight requests, which is the job of a concurrency limit.
type Breaker struct {
	// Set at construction.
	cb       *gobreaker.TwoStepCircuitBreaker[struct{}]
	base     time.Duration
	maxOpen  time.Duration
	onChange func(BreakerState)
	ratio    bool // trips on a failure ratio: every outcome counts

	// dirty says a failure was recorded since the last recorded success,
	// and failing counts failures being recorded (not yet marked dirty).
	// In consecutive-failures mode a success only resets the run of
	// failures, so while neither is set a success need not be recorded:
	// the common all-is-well Done is an atomic load and swap.
	dirty   atomic.Bool
	failing atomic.Int32

	// Atomic: mirrored from gobreaker's state-change callback.
	state     atomic.Int32 // BreakerState
	openUntil atomic.Int64 // Unix ns; the breaker admits nothing before it
	trips     atomic.Uint32
	// probes are the half-open slots; a busy slot holds the gobreaker
	// callback of the probe it admitted.
	probes   []probeSlot
	probeSeq atomic.Uint64 // numbers probe tickets
}

type probeSlot struct {
	// owner is the ticket of the probe holding the slot, 0 when free; its
	// Done sets finishing while it takes done, so that a concurrent
	// second Done, or a new probe, cannot interleave.
	owner atomic.Uint64
	done  atomic.Pointer[func(error)]
}

// finishing marks a probe slot whose Done is taking its callback.
const finishing = 1 << 63

// Test hooks, nil outside tests: they stand for a goroutine stalled at
// that point of Done.
var (
	testHookBeforeRecord func() // a closed-state outcome, before gobreaker's Allow
	testHookAfterFailure func() // a failure recorded, not yet marked dirty
)

// NewBreaker returns a closed breaker. name appears in gobreaker's
// callback only. onChange, if not nil, is called on every state change with
// the new state, from whichever goroutine caused it and while gobreaker
// holds the breaker's lock: it must not block and must not call back into
// the breaker (signal a control goroutine instead). cfg must be valid and
// enabled.
func NewBreaker(name string, cfg BreakerConfig, onChange func(BreakerState)) *Breaker {
	cfg = cfg.withDefaults()
	b := &Breaker{
		base:     cfg.OpenTime,
		maxOpen:  cfg.MaxOpenTime,
		onChange: onChange,
		ratio:    cfg.FailureRatio > 0,
		probes:   make([]probeSlot, cfg.HalfOpenProbes),
	}
	st := gobreaker.Settings{
		Name:        name,
		MaxRequests: cfg.HalfOpenProbes,
		// gobreaker's own open time is the base: it has passed whenever
		// ours (base × trips) has, so gobreaker is half-open by the time
		// Admit asks it.
		Timeout: cfg.OpenTime,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			if cfg.ConsecutiveFailures > 0 && c.ConsecutiveFailures >= cfg.ConsecutiveFailures {
				return true
			}
			n := c.TotalSuccesses + c.TotalFailures
			return cfg.FailureRatio > 0 && n >= cfg.MinRequests && float64(c.TotalFailures) >= cfg.FailureRatio*float64(n)
		},
		IsExcluded:    func(err error) bool { return err == errBreakerNeutral },
		OnStateChange: b.changed,
	}
	if cfg.FailureRatio > 0 {
		st.Interval = cfg.Window
		st.BucketPeriod = cfg.Window / breakerBuckets
	}
	b.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](st)
	return b
}

// changed is gobreaker's OnStateChange. It runs under the breaker's lock:
// atomics only.
func (b *Breaker) changed(_ string, _, to gobreaker.State) {
	var s BreakerState
	switch to {
	case gobreaker.StateOpen:
		s = BreakerOpen
		trips := b.trips.Add(1)
		d := b.maxOpen
		if time.Duration(trips) <= b.maxOpen/b.base { // no overflow
			d = min(b.base*time.Duration(trips), b.maxOpen)
		}
		b.openUntil.Store(time.Now().Add(d).UnixNano())
	case gobreaker.StateHalfOpen:
		s = BreakerHalfOpen
	default:
		s = BreakerClosed
		b.trips.Store(0)
	}
	b.state.Store(int32(s))
	if b.onChange != nil {
		b.onChange(s)
	}
}

// State is the breaker's state from its atomics, without its lock. An open
// breaker whose open time has passed reads as half-open: gobreaker moves it
// there at the next Admit.
func (b *Breaker) State() BreakerState {
	s := BreakerState(b.state.Load())
	if s == BreakerClosed {
		return s
	}
	if time.Now().UnixNano() <= b.openUntil.Load() {
		return BreakerOpen
	}
	return BreakerHalfOpen
}

// OpenUntil is when an open breaker will admit probes; zero when closed.
func (b *Breaker) OpenUntil() time.Time {
	if BreakerState(b.state.Load()) == BreakerClosed {
		return time.Time{}
	}
	return time.Unix(0, b.openUntil.Load())
}

// Trips is how many times the breaker opened since it was last closed.
func (b *Breaker) Trips() uint32 { return b.trips.Load() }

// Closed reports whether the breaker is closed, from one atomic load. A
// closed breaker admits every request with the zero Ticket, so a caller
// may skip Admit when Closed is true (it inlines where Admit does not).
func (b *Breaker) Closed() bool { return BreakerState(b.state.Load()) == BreakerClosed }

// Admittable reports whether Admit would admit a request now: the breaker
// is closed, or its open time has passed and a probe slot is free. It takes
// no lock and does not allocate (atomic loads and, unless closed, the
// clock). The answer may be stale by the time Admit runs; a balancer uses it
// to choose among endpoints, and still calls Admit.
func (b *Breaker) Admittable() bool {
	if BreakerState(b.state.Load()) == BreakerClosed {
		return true
	}
	if time.Now().UnixNano() <= b.openUntil.Load() {
		return false
	}
	for i := range b.probes {
		if b.probes[i].owner.Load() == 0 {
			return true
		}
	}
	return false
}

// Admit asks whether a request may go through. When ok, Done must be
// called exactly once with the returned ticket.
func (b *Breaker) Admit() (t Ticket, ok bool) {
	s := BreakerState(b.state.Load())
	if s == BreakerClosed {
		return 0, true
	}
	// Still open. This check holds also when the mirror says half-open:
	// gobreaker may move to half-open after its base time while ours,
	// grown by repeated trips, has not passed.
	if time.Now().UnixNano() <= b.openUntil.Load() {
		return 0, false
	}
	for i := range b.probes {
		p := &b.probes[i]
		t := Ticket(b.probeSeq.Add(1)<<ticketSlotBits | uint64(i+1))
		if !p.owner.CompareAndSwap(0, uint64(t)) {
			continue
		}
		done, err := b.cb.Allow()
		if err != nil { // ErrTooManyRequests: the probes are out
			p.owner.Store(0)
			return 0, false
		}
		p.done.Store(&done)
		return t, true
	}
	return 0, false
}

// Done reports the outcome of a request Admit admitted with t.
func (b *Breaker) Done(t Ticket, o Outcome) {
	err := breakerErr(o)
	if t > 0 {
		b.probeDone(t, err)
		return
	}
	if err == errBreakerNeutral {
		return
	}
	// Admitted while closed. If the breaker left the closed state since,
	// gobreaker would drop this outcome as an older generation's; drop it
	// here, so that it never counts as a half-open probe.
	if BreakerState(b.state.Load()) != BreakerClosed {
		return
	}
	// A failure counts in failing from before it is recorded until it is
	// marked dirty, and a success clears dirty before it is recorded; so a
	// success is skipped only when no failure is counted after the last
	// recorded success, nor being counted.
	if err == nil && !b.ratio && b.failing.Load() == 0 && !b.dirty.Swap(false) {
		return
	}
	if err != nil {
		b.failing.Add(1)
		defer b.failing.Add(-1)
	}
	if testHookBeforeRecord != nil {
		testHookBeforeRecord()
	}
	if done, err2 := b.cb.Allow(); err2 == nil {
		// A goroutine stalled since the check above may find the breaker
		// opened, its open time passed and Allow admitting it as a
		// half-open probe (the mirror is updated inside Allow): then this
		// old outcome gives the slot back as neutral.
		if BreakerState(b.state.Load()) != BreakerClosed {
			err = errBreakerNeutral
		}
		done(err)
	}
	if err != nil && err != errBreakerNeutral {
		if testHookAfterFailure != nil {
			testHookAfterFailure()
		}
		b.dirty.Store(true)
	}
}

// probeDone reports a probe's outcome, once: a Done whose ticket no longer
// owns its slot (a second Done of the same probe) is ignored.
func (b *Breaker) probeDone(t Ticket, err error) {
	i := t.slot()
	if i < 0 || i >= len(b.probes) {
		return
	}
	p := &b.probes[i]
	if !p.owner.CompareAndSwap(uint64(t), uint64(t)|finishing) {
		return
	}
	done := p.done.Swap(nil)
	p.owner.Store(0)
	if done != nil {
		(*done)(err)
	}
}

func breakerErr(o Outcome) error {
	switch {
	case o.Neutral():
		return errBreakerNeutral
	case o.Failed():
		return errBreakerFailure
	}
	return nil
}
