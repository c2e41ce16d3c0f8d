package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// SupervisorOptions carries a Supervisor's dependencies and restart timing.
type SupervisorOptions struct {
	// Logger receives one line per failure streak of a source and one when
	// it recovers; nil means slog.Default().
	Logger *slog.Logger
	// MinBackoff is the base delay before the first restart in a failure
	// streak (default 500ms); the base doubles with each further failure up
	// to MaxBackoff (default 30s). Each actual delay is the base ±20%, so
	// sidecars that lost the same backend do not retry in step.
	MinBackoff, MaxBackoff time.Duration
}

// Backoff defaults and shape. With a ±20% jitter and a factor of 2, the
// delays of successive restarts never overlap: each is longer than the last
// until the cap.
const (
	defaultMinBackoff = 500 * time.Millisecond
	defaultMaxBackoff = 30 * time.Second
	backoffJitter     = 0.2
	backoffFactor     = 2
)

// SourceStatus is the health of one supervised source, for the admin API.
type SourceStatus struct {
	Name string `json:"name"`
	// Healthy is false from a failure of the source until it delivers again
	// (a successful Apply, or Synced), which may be several restarts later.
	Healthy bool `json:"healthy"`
	// ConsecutiveFailures counts the failures since the source last
	// delivered; 0 when healthy.
	ConsecutiveFailures int `json:"consecutive_failures"`
	// LastError is the text of the source's latest failure, kept after it
	// recovers; "" if it never failed.
	LastError string `json:"last_error,omitempty"`
	// Changed is when Healthy or ConsecutiveFailures last changed (at first,
	// when supervision started).
	Changed time.Time `json:"changed"`
}

// Supervisor runs Sources, restarting each one that fails, and keeps their
// health for Status. It never removes a failed source's endpoints from the
// Sink: the Sink keeps a source's last good view until the source reports
// again.
type Supervisor struct {
	// Set at construction.
	sink     Sink
	log      *slog.Logger
	min, max time.Duration

	mu      sync.Mutex
	running map[string]*sourceState // sources of Run calls in progress, by name
}

// sourceState is the health of one source. The source's supervising
// goroutine records failures; the source's own goroutines record deliveries
// through supervisedSink.
type sourceState struct {
	name string // set at construction

	failing atomic.Bool // fast path for deliveries: ConsecutiveFailures > 0

	mu     sync.Mutex
	status SourceStatus
}

// NewSupervisor returns a Supervisor that hands every source sink, wrapped
// so that it sees each source deliver.
func NewSupervisor(sink Sink, opts SupervisorOptions) *Supervisor {
	s := &Supervisor{
		sink:    sink,
		log:     opts.Logger,
		min:     opts.MinBackoff,
		max:     opts.MaxBackoff,
		running: make(map[string]*sourceState),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.min <= 0 {
		s.min = defaultMinBackoff
	}
	if s.max <= 0 {
		s.max = defaultMaxBackoff
	}
	s.max = max(s.max, s.min)
	return s
}

// errStoppedEarly stands for a source whose Run returned nil before its ctx
// ended: it stopped watching, which is a failure like any other.
var errStoppedEarly = errors.New("source returned before shutdown")

// Run runs every source in its own goroutine until ctx ends, restarting a
// source whose Run returned an error (or returned nil before ctx ended) after
// a jittered exponential backoff. It returns nil after ctx ends and every
// source goroutine has returned. Duplicate or empty source names, also
// against the sources of another Run in progress, are an error returned at
// once, before any source starts.
func (s *Supervisor) Run(ctx context.Context, sources ...Source) error {
	states, err := s.register(sources)
	if err != nil {
		return err
	}
	defer s.unregister(states)

	var wg sync.WaitGroup
	for i, src := range sources {
		wg.Go(func() { s.supervise(ctx, src, states[i]) })
	}
	<-ctx.Done()
	wg.Wait()
	return nil
}

func (s *Supervisor) register(sources []Source) ([]*sourceState, error) {
	now := time.Now()
	seen := make(map[string]bool, len(sources))
	states := make([]*sourceState, len(sources))
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, src := range sources {
		name := src.Name()
		switch {
		case name == "":
			return nil, fmt.Errorf("discovery: source %d has no name", i)
		case seen[name] || s.running[name] != nil:
			return nil, fmt.Errorf("discovery: duplicate source name %q", name)
		}
		seen[name] = true
		states[i] = &sourceState{name: name, status: SourceStatus{Name: name, Healthy: true, Changed: now}}
	}
	for _, st := range states {
		s.running[st.name] = st
	}
	return states, nil
}

func (s *Supervisor) unregister(states []*sourceState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range states {
		delete(s.running, st.name)
	}
}

// Status reports every source of the Run calls in progress, sorted by name.
func (s *Supervisor) Status() []SourceStatus {
	s.mu.Lock()
	out := make([]SourceStatus, 0, len(s.running))
	for _, st := range s.running {
		st.mu.Lock()
		out = append(out, st.status)
		st.mu.Unlock()
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b SourceStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// supervise owns one source: it runs it until ctx ends and restarts it after
// each failure. It is the only goroutine that logs failures, and it logs one
// warning per failure streak, not one per retry.
func (s *Supervisor) supervise(ctx context.Context, src Source, st *sourceState) {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     s.min,
		RandomizationFactor: backoffJitter,
		Multiplier:          backoffFactor,
		MaxInterval:         s.max,
	}
	sink := &supervisedSink{sink: s.sink, log: s.log, st: st}
	for ctx.Err() == nil {
		err := src.Run(ctx, sink)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errStoppedEarly
		}
		failures := st.fail(err)
		if failures == 1 {
			// A new streak: the source delivered since the last failure
			// (or never failed), so the delays start over.
			b.Reset()
		}
		delay := b.NextBackOff()
		if failures == 1 {
			s.log.Warn("discovery: source failed; restarting with backoff until it delivers again",
				"source", st.name, "error", err, "delay", delay)
		} else {
			s.log.Debug("discovery: source failed again",
				"source", st.name, "failures", failures, "error", err, "delay", delay)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// fail records a failure and returns the length of the current streak.
func (st *sourceState) fail(err error) int {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.status.Healthy = false
	st.status.ConsecutiveFailures++
	st.status.LastError = err.Error()
	st.status.Changed = time.Now()
	st.failing.Store(true)
	return st.status.ConsecutiveFailures
}

// delivered records that the source reached the sink, and returns the
// length of the failure streak it ended (0 if there was none).
func (st *sourceState) delivered() int {
	if !st.failing.Load() {
		return 0
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	n := st.status.ConsecutiveFailures
	if n == 0 {
		return 0 // another of the source's goroutines got here first
	}
	st.status.Healthy = true
	st.status.ConsecutiveFailures = 0
	st.status.Changed = time.Now()
	st.failing.Store(false)
	return n
}

// supervisedSink is the Sink a supervised source sees. It passes every call
// through, and on the first successful delivery after failures marks the
// source recovered; the next failure then starts a new streak.
type supervisedSink struct {
	sink Sink
	log  *slog.Logger
	st   *sourceState
}

func (w *supervisedSink) Apply(u Update) error {
	err := w.sink.Apply(u)
	if err == nil {
		w.recovered()
	}
	return err
}

func (w *supervisedSink) Synced(source string) {
	w.sink.Synced(source)
	w.recovered()
}

func (w *supervisedSink) recovered() {
	if n := w.st.delivered(); n > 0 {
		w.log.Info(fmt.Sprintf("discovery: source recovered after %d failures", n),
			"source", w.st.name, "failures", n)
	}
}
