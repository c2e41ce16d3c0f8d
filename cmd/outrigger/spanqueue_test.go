package main

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// queueProvider is a tracer provider whose spans go through a spanQueue
// with o to an in-memory exporter.
func queueProvider(t *testing.T, o spanQueueOptions, opts ...sdktrace.TracerProviderOption) (*sdktrace.TracerProvider, *spanQueue, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	q := newSpanQueue(exp, o, slog.New(slog.DiscardHandler))
	tp := sdktrace.NewTracerProvider(append(opts, sdktrace.WithSpanProcessor(q))...)
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp, q, exp
}

// endSpans starts and ends n spans named prefix-i.
func endSpans(tp trace.TracerProvider, prefix string, n int) {
	tr := tp.Tracer("test")
	for i := range n {
		_, s := tr.Start(context.Background(), prefix+"-"+strconv.Itoa(i))
		s.End()
	}
}

// waitSpans waits until exp holds n spans, failing after a few seconds.
func waitSpans(t *testing.T, exp *tracetest.InMemoryExporter, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(exp.GetSpans()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("exported %d spans, want %d", len(exp.GetSpans()), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// A partial batch waits for the schedule delay; the span that fills a
// batch has it exported at once.
func TestSpanQueueExportsFullBatchAtOnce(t *testing.T) {
	tp, _, exp := queueProvider(t, spanQueueOptions{MaxQueueSize: 64, MaxExportBatchSize: 8, ScheduleDelay: time.Hour, ExportTimeout: time.Second})
	tr := tp.Tracer("test")
	for i := range 8 {
		if i == 7 {
			time.Sleep(50 * time.Millisecond)
			if n := len(exp.GetSpans()); n != 0 {
				t.Fatalf("%d spans of a partial batch exported before the schedule delay", n)
			}
		}
		_, s := tr.Start(context.Background(), "s-"+strconv.Itoa(i))
		s.End()
	}
	waitSpans(t, exp, 8)
	for i, s := range exp.GetSpans() {
		if want := "s-" + strconv.Itoa(i); s.Name != want {
			t.Errorf("span %d is %q, want %q (oldest first)", i, s.Name, want)
		}
	}
}

// A partial batch goes after the schedule delay.
func TestSpanQueueExportsPartialBatchAfterDelay(t *testing.T) {
	tp, _, exp := queueProvider(t, spanQueueOptions{MaxQueueSize: 64, MaxExportBatchSize: 32, ScheduleDelay: 20 * time.Millisecond, ExportTimeout: time.Second})
	endSpans(tp, "s", 5)
	waitSpans(t, exp, 5)
}

// ForceFlush exports everything queued; Shutdown exports the rest and
// queues nothing after it.
func TestSpanQueueFlushAndShutdown(t *testing.T) {
	tp, q, exp := queueProvider(t, spanQueueOptions{MaxQueueSize: 64, MaxExportBatchSize: 32, ScheduleDelay: time.Hour, ExportTimeout: time.Second})
	endSpans(tp, "a", 5)
	if err := tp.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(exp.GetSpans()); n != 5 {
		t.Fatalf("after ForceFlush: %d spans exported, want 5", n)
	}
	endSpans(tp, "b", 3)
	// Shutdown of the InMemoryExporter forgets its spans: keep what the
	// queue's final export handed it.
	var got []string
	exp2 := &recordingExporter{InMemoryExporter: exp, onShutdown: func() {
		for _, s := range exp.GetSpans() {
			got = append(got, s.Name)
		}
	}}
	q.exp = exp2
	if err := q.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(got) != 8 {
		t.Fatalf("at shutdown the exporter held %v, want 8 spans", got)
	}
	q.OnEnd(nil) // refused before the span is looked at: the queue is shut down
	if err := q.Shutdown(context.Background()); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if err := q.ForceFlush(context.Background()); err != nil {
		t.Fatalf("ForceFlush after Shutdown: %v", err)
	}
}

type recordingExporter struct {
	*tracetest.InMemoryExporter
	onShutdown func()
}

func (e *recordingExporter) Shutdown(ctx context.Context) error {
	e.onShutdown()
	return e.InMemoryExporter.Shutdown(ctx)
}

// blockingExporter holds every export until release is closed.
type blockingExporter struct {
	*tracetest.InMemoryExporter
	entered chan struct{}
	release chan struct{}
}

func (e *blockingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	select {
	case e.entered <- struct{}{}:
	default:
	}
	<-e.release
	return e.InMemoryExporter.ExportSpans(ctx, spans)
}

// A full queue drops spans and counts them, and never blocks the caller;
// nothing queued is lost.
func TestSpanQueueDropsWhenFull(t *testing.T) {
	exp := &blockingExporter{InMemoryExporter: tracetest.NewInMemoryExporter(), entered: make(chan struct{}, 1), release: make(chan struct{})}
	q := newSpanQueue(exp, spanQueueOptions{MaxQueueSize: 16, MaxExportBatchSize: 4, ScheduleDelay: time.Hour, ExportTimeout: time.Second}, slog.New(slog.DiscardHandler))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(q))
	endSpans(tp, "s", 4) // a full batch: the exporter takes it and blocks
	<-exp.entered
	endSpans(tp, "t", 16+5) // 16 fit, 5 do not
	if d := q.dropped.Load(); d != 5 {
		t.Errorf("dropped %d, want 5", d)
	}
	close(exp.release)
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A kick that finds the oldest slot claimed but not yet filled (its
// producer between its claim and its store) waits for it and exports the
// batch then, not after the schedule delay.
func TestSpanQueueWaitsForAClaimedSlot(t *testing.T) {
	tp, q, exp := queueProvider(t, spanQueueOptions{MaxQueueSize: 16, MaxExportBatchSize: 4, ScheduleDelay: time.Hour, ExportTimeout: time.Second})
	var spare []sdktrace.ReadOnlySpan
	endSpans(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(&collectProcessor{out: &spare})), "late", 1)

	pos := q.tail.Load()
	if !q.tail.CompareAndSwap(pos, pos+1) { // claim, as OnEnd does
		t.Fatal("claim failed")
	}
	endSpans(tp, "s", 3) // the third completes a batch of four: a kick
	time.Sleep(20 * time.Millisecond)
	if n := len(exp.GetSpans()); n != 0 {
		t.Fatalf("%d spans exported past a slot not yet filled", n)
	}
	sl := &q.slots[pos&q.mask] // fill it, as OnEnd does
	sl.span = spare[0]
	sl.seq.Store(pos + 1)
	waitSpans(t, exp, 4)
	if got := exp.GetSpans()[0].Name; got != "late-0" {
		t.Errorf("first span exported is %q, want the late one, oldest first", got)
	}
}

// Unsampled spans are not queued.
func TestSpanQueueSkipsUnsampled(t *testing.T) {
	tp, _, exp := queueProvider(t, spanQueueOptions{MaxQueueSize: 8, MaxExportBatchSize: 1, ScheduleDelay: time.Hour, ExportTimeout: time.Second},
		sdktrace.WithSampler(sdktrace.NeverSample()))
	endSpans(tp, "s", 3)
	if err := tp.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(exp.GetSpans()); n != 0 {
		t.Errorf("%d unsampled spans exported", n)
	}
}

// Many goroutines ending spans at once, through a queue smaller than what
// they end (so it wraps many times): every span is exported exactly once.
func TestSpanQueueConcurrentProducers(t *testing.T) {
	const workers, each = 8, 2000
	tp, _, exp := queueProvider(t, spanQueueOptions{MaxQueueSize: 1 << 16, MaxExportBatchSize: 64, ScheduleDelay: time.Millisecond, ExportTimeout: time.Second})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() { endSpans(tp, "w"+strconv.Itoa(w), each) })
	}
	wg.Wait()
	if err := tp.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	seen := make(map[trace.SpanID]bool)
	for _, s := range exp.GetSpans() {
		if seen[s.SpanContext.SpanID()] {
			t.Fatalf("span %s exported twice", s.Name)
		}
		seen[s.SpanContext.SpanID()] = true
	}
	if len(seen) != workers*each {
		t.Fatalf("exported %d spans, want %d", len(seen), workers*each)
	}
}

// The queue wraps: a ring of 8 carries 1000 spans in order when the
// exporter keeps up.
func TestSpanQueueWraps(t *testing.T) {
	tp, _, exp := queueProvider(t, spanQueueOptions{MaxQueueSize: 8, MaxExportBatchSize: 4, ScheduleDelay: time.Hour, ExportTimeout: time.Second})
	tr := tp.Tracer("test")
	for i := range 1000 {
		_, s := tr.Start(context.Background(), strconv.Itoa(i))
		s.End()
		if i%4 == 3 {
			waitSpans(t, exp, i+1)
		}
	}
	for i, s := range exp.GetSpans() {
		if s.Name != strconv.Itoa(i) {
			t.Fatalf("span %d is %q", i, s.Name)
		}
	}
}

func TestSpanQueueOptionsFromEnv(t *testing.T) {
	o := spanQueueOptionsFromEnv(envMap(map[string]string{
		"OTEL_BSP_MAX_QUEUE_SIZE":        "100",
		"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "10",
		"OTEL_BSP_SCHEDULE_DELAY":        "250",
		"OTEL_BSP_EXPORT_TIMEOUT":        "nonsense",
	}), slog.New(slog.DiscardHandler))
	want := spanQueueOptions{MaxQueueSize: 100, MaxExportBatchSize: 10, ScheduleDelay: 250 * time.Millisecond, ExportTimeout: 30 * time.Second}
	if o != want {
		t.Errorf("got %+v, want %+v", o, want)
	}
	// Values that would allocate gigabytes or overflow a Duration are capped.
	big := spanQueueOptionsFromEnv(envMap(map[string]string{
		"OTEL_BSP_MAX_QUEUE_SIZE": "100000000000", "OTEL_BSP_SCHEDULE_DELAY": "9300000000000",
	}), slog.New(slog.DiscardHandler))
	if big.MaxQueueSize != maxSpanQueueSize || big.ScheduleDelay != maxSpanQueueMS*time.Millisecond || big.ScheduleDelay <= 0 {
		t.Errorf("capped: got %+v", big)
	}
	q := newSpanQueue(tracetest.NewInMemoryExporter(), o, slog.New(slog.DiscardHandler))
	defer q.Shutdown(context.Background())
	if len(q.slots) != 128 {
		t.Errorf("a queue size of 100 made %d slots, want 128", len(q.slots))
	}
}

// BenchmarkSpanEnd is the cost of a sampled span's start and end, through
// our queue and through the SDK's batch span processor, from parallel
// goroutines.
func BenchmarkSpanEnd(b *testing.B) {
	for _, c := range []struct {
		name string
		proc func(sdktrace.SpanExporter) sdktrace.SpanProcessor
	}{
		{"queue", func(e sdktrace.SpanExporter) sdktrace.SpanProcessor {
			return newSpanQueue(e, defaultSpanQueueOptions, slog.New(slog.DiscardHandler))
		}},
		{"sdk-batch", func(e sdktrace.SpanExporter) sdktrace.SpanProcessor { return sdktrace.NewBatchSpanProcessor(e) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(c.proc(discardExporter{})))
			defer tp.Shutdown(context.Background())
			tr := tp.Tracer("bench")
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					_, s := tr.Start(context.Background(), "GET")
					s.End()
				}
			})
		})
	}
}

type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }
