package main

import (
	"context"
	"errors"
	"log/slog"
	"math/bits"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// spanQueue is the tracer provider's span processor: it batches ended,
// sampled spans for the exporter, as the SDK's batch span processor does
// and with the same settings (OTEL_BSP_*), but without waking a goroutine
// per span.
//
// The SDK's processor sends every ended span over a channel to its export
// goroutine, so each span wakes that goroutine (and often an idle thread
// to run it): at 1000 requests a second, two spans each, those wakeups
// were a large part of what tracing at 100% sampling cost the proxy (bench
// B9). Here a span goes into a bounded lock-free queue (Vyukov's bounded
// MPMC design, one consumer) and only the span that completes a batch
// wakes the exporter; a partial batch waits for the schedule delay, as in
// the SDK's processor. A full queue drops the span and counts it (the
// SDK's default too: tracing never blocks a request).
//
// OnEnd is called on the request path by any goroutine; it takes no lock.
// One goroutine (run) takes spans and calls the exporter, so the exporter
// is never called concurrently.
type spanQueue struct {
	exp   sdktrace.SpanExporter
	log   *slog.Logger
	opts  spanQueueOptions
	slots []spanSlot
	mask  uint64
	tail  atomic.Uint64 // the next position a producer claims
	head  uint64        // the next position run takes; run's own

	kick    chan struct{}      // capacity 1: a batch is ready
	flush   chan chan struct{} // ForceFlush: export all, then close the channel
	stop    chan struct{}      // closed by Shutdown
	done    chan struct{}      // closed when run has exported the rest and returned
	stopped atomic.Bool
	once    sync.Once

	dropped atomic.Uint64 // spans refused by a full queue, ever

	// recycle: the exporter keeps no reference to the spans it exported
	// (ours), so released spans are recycled after their export
	recycle bool
}

// spanSlot is one cell of the ring. seq says whose turn the slot is:
// equal to a position p, the slot is free for the producer claiming p;
// p+1, it holds p's span for run to take.
type spanSlot struct {
	seq  atomic.Uint64
	span sdktrace.ReadOnlySpan
	_    [40]byte // a cache line per slot: producers on different CPUs do not share one
}

// spanQueueOptions are the batching settings, named as the SDK's
// environment variables name them.
type spanQueueOptions struct {
	MaxQueueSize       int           // OTEL_BSP_MAX_QUEUE_SIZE; rounded up to a power of two
	MaxExportBatchSize int           // OTEL_BSP_MAX_EXPORT_BATCH_SIZE
	ScheduleDelay      time.Duration // OTEL_BSP_SCHEDULE_DELAY: the longest a partial batch waits
	ExportTimeout      time.Duration // OTEL_BSP_EXPORT_TIMEOUT
}

// defaultSpanQueueOptions are the SDK's (and the specification's)
// defaults.
var defaultSpanQueueOptions = spanQueueOptions{
	MaxQueueSize:       2048,
	MaxExportBatchSize: 512,
	ScheduleDelay:      5 * time.Second,
	ExportTimeout:      30 * time.Second,
}

// Caps on the OTEL_BSP_* values: a bigger queue would allocate gigabytes
// at startup, a longer time overflow a time.Duration.
const (
	maxSpanQueueSize = 1 << 20 // 64 MiB of slots
	maxSpanQueueMS   = 24 * 60 * 60 * 1000
)

// spanQueueOptionsFromEnv reads the OTEL_BSP_* variables over the
// defaults. A value that is no positive integer is reported to log and
// ignored, as the SDK does; one over its cap is capped, and said so.
func spanQueueOptionsFromEnv(getenv env, log *slog.Logger) spanQueueOptions {
	o := defaultSpanQueueOptions
	num := func(name string, limit int, set func(int)) {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			return
		}
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			log.Warn("tracing: ignoring "+name+": want a positive whole number", "value", v)
			return
		}
		if n > limit {
			log.Warn("tracing: "+name+" is over its limit; using the limit", "value", v, "limit", limit)
			n = limit
		}
		set(n)
	}
	num("OTEL_BSP_MAX_QUEUE_SIZE", maxSpanQueueSize, func(n int) { o.MaxQueueSize = n })
	num("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", maxSpanQueueSize, func(n int) { o.MaxExportBatchSize = n })
	num("OTEL_BSP_SCHEDULE_DELAY", maxSpanQueueMS, func(n int) { o.ScheduleDelay = time.Duration(n) * time.Millisecond })
	num("OTEL_BSP_EXPORT_TIMEOUT", maxSpanQueueMS, func(n int) { o.ExportTimeout = time.Duration(n) * time.Millisecond })
	return o
}

// newSpanQueue starts a queue exporting to exp; Shutdown stops it.
func newSpanQueue(exp sdktrace.SpanExporter, o spanQueueOptions, log *slog.Logger) *spanQueue {
	size := uint64(1) << bits.Len64(uint64(max(o.MaxQueueSize, 2)-1))
	o.MaxQueueSize = int(size)
	o.MaxExportBatchSize = min(max(o.MaxExportBatchSize, 1), o.MaxQueueSize)
	q := &spanQueue{
		exp: exp, log: log, opts: o,
		slots: make([]spanSlot, size), mask: size - 1,
		kick: make(chan struct{}, 1), flush: make(chan chan struct{}),
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	_, q.recycle = exp.(*otlpExporter)
	for i := range q.slots {
		q.slots[i].seq.Store(uint64(i))
	}
	go q.run()
	return q
}

// OnStart does nothing: spans are queued when they end.
func (q *spanQueue) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// OnEnd queues a sampled span, or drops it when the queue is full or shut
// down. It never blocks.
func (q *spanQueue) OnEnd(s sdktrace.ReadOnlySpan) {
	if q.stopped.Load() || !s.SpanContext().IsSampled() {
		return
	}
	for {
		pos := q.tail.Load()
		sl := &q.slots[pos&q.mask]
		switch seq := sl.seq.Load(); {
		case seq == pos:
			if !q.tail.CompareAndSwap(pos, pos+1) {
				continue // another producer took pos
			}
			sl.span = s
			sl.seq.Store(pos + 1)
			if (pos+1)%uint64(q.opts.MaxExportBatchSize) == 0 {
				select {
				case q.kick <- struct{}{}:
				default: // a kick is pending already
				}
			}
			return
		case seq < pos:
			// The slot still holds the span of pos-size: the queue is full.
			q.dropped.Add(1)
			return
		}
		// seq > pos: pos was claimed since we loaded tail; load it again.
	}
}

// take appends up to n queued spans to buf, oldest first. Only run calls
// it. A slot claimed but not yet filled ends the take: its span and those
// after it go in the next one.
func (q *spanQueue) take(buf []sdktrace.ReadOnlySpan, n int) []sdktrace.ReadOnlySpan {
	for range n {
		sl := &q.slots[q.head&q.mask]
		if sl.seq.Load() != q.head+1 {
			break
		}
		buf = append(buf, sl.span)
		sl.span = nil
		sl.seq.Store(q.head + q.mask + 1) // free for the producer of head+size
		q.head++
	}
	return buf
}

// run exports: a full batch at once, a partial one after the schedule
// delay, everything on ForceFlush and Shutdown.
func (q *spanQueue) run() {
	defer close(q.done)
	batch := make([]sdktrace.ReadOnlySpan, 0, q.opts.MaxExportBatchSize)
	timer := time.NewTimer(q.opts.ScheduleDelay)
	defer timer.Stop()
	var reported uint64
	for {
		select {
		case <-q.kick:
		case <-timer.C:
		case ch := <-q.flush:
			batch = q.exportUpTo(q.tail.Load(), batch)
			close(ch)
			continue
		case <-q.stop:
			q.exportUpTo(q.tail.Load(), batch)
			return
		}
		batch = q.exportUpTo(q.tail.Load(), batch)
		timer.Reset(q.opts.ScheduleDelay)
		if d := q.dropped.Load(); d != reported {
			q.log.Warn("tracing: spans dropped, the export queue was full; raise OTEL_BSP_MAX_QUEUE_SIZE or check the collector",
				"dropped", d-reported, "dropped_total", d)
			reported = d
		}
	}
}

// exportUpTo exports the spans of every position below end (a tail read
// when run woke), a batch at a time, and returns buf emptied for reuse
// (the exporter keeps no reference to the slice). Draining to a position,
// not to the first slot still empty, matters: a producer may have claimed
// a slot and not yet filled it (it is a few instructions from its store,
// unless descheduled), and stopping there would leave the spans behind it
// waiting for the schedule delay, with the kick that announced them spent.
func (q *spanQueue) exportUpTo(end uint64, buf []sdktrace.ReadOnlySpan) []sdktrace.ReadOnlySpan {
	for q.head < end {
		buf = q.take(buf[:0], int(min(end-q.head, uint64(q.opts.MaxExportBatchSize))))
		if len(buf) == 0 {
			runtime.Gosched() // let the producer of q.head store its span
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), q.opts.ExportTimeout)
		err := q.exp.ExportSpans(ctx, buf)
		cancel()
		if err != nil {
			q.log.Warn("tracing: export failed", "spans", len(buf), "err", err)
		}
		if q.recycle {
			for _, s := range buf {
				if s, ok := s.(*span); ok {
					s.recycle()
				}
			}
		}
		clear(buf)
	}
	return buf[:0]
}

// ForceFlush exports every span queued before the call.
func (q *spanQueue) ForceFlush(ctx context.Context) error {
	ch := make(chan struct{})
	select {
	case q.flush <- ch:
	case <-q.done:
		return nil // shut down: everything went
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown exports what is queued, refuses spans from now on and shuts the
// exporter down. A span ended by another goroutine while Shutdown runs may
// be lost (so it is with the SDK's processor). Calls after the first
// return nil.
func (q *spanQueue) Shutdown(ctx context.Context) error {
	first := false
	q.once.Do(func() { first = true })
	if !first {
		return nil
	}
	q.stopped.Store(true)
	close(q.stop)
	var err error
	select {
	case <-q.done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	return errors.Join(err, q.exp.Shutdown(ctx))
}
