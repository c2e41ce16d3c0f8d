package discovery

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeSource calls run for its n-th Run (n from 1) and records when each
// Run started. Read starts only after the Supervisor's Run returned.
type fakeSource struct {
	name   string
	run    func(ctx context.Context, sink Sink, n int) error
	starts []time.Time
}

func (f *fakeSource) Name() string { return f.name }

func (f *fakeSource) Run(ctx context.Context, sink Sink) error {
	f.starts = append(f.starts, time.Now())
	return f.run(ctx, sink, len(f.starts))
}

// block is the tail of a healthy Run: watch until shutdown.
func block(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

type recordingSink struct {
	mu      sync.Mutex
	updates []Update
	synced  []string
}

func (r *recordingSink) Apply(u Update) error {
	if u.Service == "" {
		return errors.New("no service")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.updates = append(r.updates, u)
	return nil
}

func (r *recordingSink) Synced(source string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.synced = append(r.synced, source)
}

// logLines returns the lines of a text log at a level ("WARN", ...).
func logLines(buf *bytes.Buffer, level string) []string {
	var out []string
	for line := range strings.Lines(buf.String()) {
		if strings.Contains(line, " level="+level+" ") {
			out = append(out, line)
		}
	}
	return out
}

func newTestSupervisor(opts SupervisorOptions) (*Supervisor, *recordingSink, *bytes.Buffer) {
	var buf bytes.Buffer
	opts.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	sink := &recordingSink{}
	return NewSupervisor(sink, opts), sink, &buf
}

// start runs sup in the background; the returned func cancels it and
// returns Run's error once Run has returned.
func start(sup *Supervisor, sources ...Source) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx, sources...) }()
	return func() error {
		cancel()
		return <-done
	}
}

// checkDelays checks that the delay before restart k+1 is the base delay
// min(first·2^k, limit) ±20% (and +1ns, as backoff rounds).
func checkDelays(t *testing.T, starts []time.Time, first, limit time.Duration) {
	t.Helper()
	base := first
	for k := 1; k < len(starts); k++ {
		d := starts[k].Sub(starts[k-1])
		lo, hi := time.Duration(float64(base)*0.8), time.Duration(float64(base)*1.2)+time.Nanosecond
		if d < lo || d > hi {
			t.Errorf("delay before run %d: %v, want %v..%v", k+1, d, lo, hi)
		}
		base = min(2*base, limit)
	}
}

func TestSupervisorRestartsUntilRecovered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sup, sink, logs := newTestSupervisor(SupervisorOptions{})
		var before []SourceStatus
		src := &fakeSource{name: "file", run: func(ctx context.Context, sink Sink, n int) error {
			if n <= 3 {
				return fmt.Errorf("boom %d", n)
			}
			before = sup.Status()
			if err := sink.Apply(Update{Source: "file", Service: "orders.shop"}); err != nil {
				return err
			}
			sink.Synced("file")
			return block(ctx)
		}}
		stop := start(sup, src)
		time.Sleep(time.Minute)
		synctest.Wait()
		after := sup.Status()
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}

		if len(src.starts) != 4 {
			t.Fatalf("source ran %d times, want 4", len(src.starts))
		}
		checkDelays(t, src.starts, 500*time.Millisecond, 30*time.Second)
		for k := 2; k < len(src.starts); k++ {
			if prev, d := src.starts[k-1].Sub(src.starts[k-2]), src.starts[k].Sub(src.starts[k-1]); d <= prev {
				t.Errorf("delay before run %d (%v) not longer than the one before (%v)", k+1, d, prev)
			}
		}
		wantBefore := []SourceStatus{{Name: "file", ConsecutiveFailures: 3, LastError: "boom 3", Changed: src.starts[2]}}
		if diff := cmp.Diff(before, wantBefore); diff != "" {
			t.Errorf("status while failing (-got +want):\n%s", diff)
		}
		wantAfter := []SourceStatus{{Name: "file", Healthy: true, LastError: "boom 3", Changed: src.starts[3]}}
		if diff := cmp.Diff(after, wantAfter); diff != "" {
			t.Errorf("status after recovery (-got +want):\n%s", diff)
		}
		if got := sup.Status(); len(got) != 0 {
			t.Errorf("status after Run returned: %v, want none", got)
		}

		warn, debug, info := logLines(logs, "WARN"), logLines(logs, "DEBUG"), logLines(logs, "INFO")
		if len(warn) != 1 || !strings.Contains(warn[0], "boom 1") || !strings.Contains(warn[0], "source=file") {
			t.Errorf("warnings: %q, want one for boom 1", warn)
		}
		if len(debug) != 2 {
			t.Errorf("debug lines: %q, want two (failures 2 and 3)", debug)
		}
		if len(info) != 1 || !strings.Contains(info[0], "recovered after 3 failures") {
			t.Errorf("info lines: %q, want one recovery after 3 failures", info)
		}
		if len(sink.updates) != 1 || len(sink.synced) != 1 {
			t.Errorf("sink got %d updates and %d syncs, want 1 and 1", len(sink.updates), len(sink.synced))
		}
	})
}

// A delivery ends the failure streak: the next failure warns again and the
// delays start over.
func TestSupervisorRecoveryResetsBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sup, _, logs := newTestSupervisor(SupervisorOptions{MinBackoff: time.Second, MaxBackoff: time.Minute})
		src := &fakeSource{name: "k8s", run: func(ctx context.Context, sink Sink, n int) error {
			switch n {
			case 1:
				return errors.New("list failed")
			case 2:
				// A failed Apply is no delivery: the streak goes on.
				_ = sink.Apply(Update{Source: "k8s"})
				return errors.New("still down")
			case 3:
				if err := sink.Apply(Update{Source: "k8s", Service: "orders.shop"}); err != nil {
					return err
				}
				return errors.New("watch expired")
			case 4:
				return errors.New("relist failed")
			}
			return block(ctx)
		}}
		stop := start(sup, src)
		time.Sleep(time.Minute)
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
		if len(src.starts) != 5 {
			t.Fatalf("source ran %d times, want 5", len(src.starts))
		}
		checkDelays(t, src.starts[:3], time.Second, time.Minute) // streak 1: 1s, 2s
		checkDelays(t, src.starts[2:], time.Second, time.Minute) // streak 2 starts over: 1s, 2s
		warn, info := logLines(logs, "WARN"), logLines(logs, "INFO")
		if len(warn) != 2 || !strings.Contains(warn[0], "list failed") || !strings.Contains(warn[1], "watch expired") {
			t.Errorf("warnings: %q, want one per streak", warn)
		}
		if len(info) != 1 || !strings.Contains(info[0], "recovered after 2 failures") {
			t.Errorf("info lines: %q, want one recovery after 2 failures", info)
		}
	})
}

func TestSupervisorBackoffCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sup, _, logs := newTestSupervisor(SupervisorOptions{MinBackoff: time.Second, MaxBackoff: 3 * time.Second})
		src := &fakeSource{name: "dns", run: func(ctx context.Context, sink Sink, n int) error {
			return errors.New("no route")
		}}
		stop := start(sup, src)
		time.Sleep(20 * time.Second)
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
		if len(src.starts) < 6 {
			t.Fatalf("source ran %d times in 20s, want at least 6", len(src.starts))
		}
		checkDelays(t, src.starts, time.Second, 3*time.Second)
		if warn := logLines(logs, "WARN"); len(warn) != 1 {
			t.Errorf("warnings: %q, want one for the whole streak", warn)
		}
		if debug := logLines(logs, "DEBUG"); len(debug) != len(src.starts)-1 {
			t.Errorf("%d debug lines, want %d", len(debug), len(src.starts)-1)
		}
	})
}

// A Run that returns nil while ctx is live stopped watching: a failure.
func TestSupervisorEarlyReturnIsFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sup, _, logs := newTestSupervisor(SupervisorOptions{})
		src := &fakeSource{name: "file", run: func(ctx context.Context, sink Sink, n int) error {
			if n == 1 {
				return nil
			}
			return block(ctx)
		}}
		stop := start(sup, src)
		time.Sleep(time.Minute)
		synctest.Wait()
		status := sup.Status()
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
		if len(src.starts) != 2 {
			t.Fatalf("source ran %d times, want 2", len(src.starts))
		}
		want := []SourceStatus{{Name: "file", ConsecutiveFailures: 1, LastError: errStoppedEarly.Error(), Changed: src.starts[0]}}
		if diff := cmp.Diff(status, want); diff != "" {
			t.Errorf("status (-got +want):\n%s", diff)
		}
		if warn := logLines(logs, "WARN"); len(warn) != 1 || !strings.Contains(warn[0], "returned before shutdown") {
			t.Errorf("warnings: %q", warn)
		}
	})
}

// Cancelling ctx ends a backoff wait and a running source alike, and Run
// returns at once, with every goroutine gone (synctest.Test and goleak fail
// otherwise).
func TestSupervisorCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sup, _, _ := newTestSupervisor(SupervisorOptions{MinBackoff: time.Hour})
		failing := &fakeSource{name: "a", run: func(context.Context, Sink, int) error { return errors.New("down") }}
		healthy := &fakeSource{name: "b", run: func(ctx context.Context, _ Sink, _ int) error { return block(ctx) }}
		stop := start(sup, failing, healthy)
		time.Sleep(time.Second)
		t0 := time.Now()
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
		if d := time.Since(t0); d != 0 {
			t.Errorf("Run took %v to return after cancel", d)
		}
		if len(failing.starts) != 1 || len(healthy.starts) != 1 {
			t.Errorf("runs: %d and %d, want 1 and 1", len(failing.starts), len(healthy.starts))
		}
	})
}

func TestSupervisorRejectsNames(t *testing.T) {
	never := func(context.Context, Sink, int) error { panic("a source ran") }
	tests := []struct {
		name    string
		sources []string
		running []string // names of another Run in progress
		want    string
	}{
		{name: "duplicate", sources: []string{"a", "b", "a"}, want: `duplicate source name "a"`},
		{name: "empty", sources: []string{"a", ""}, want: "source 1 has no name"},
		{name: "taken by another Run", sources: []string{"b", "c"}, running: []string{"c"}, want: `duplicate source name "c"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				sup, _, _ := newTestSupervisor(SupervisorOptions{})
				var running []Source
				for _, n := range tt.running {
					running = append(running, &fakeSource{name: n, run: func(ctx context.Context, _ Sink, _ int) error { return block(ctx) }})
				}
				stop := start(sup, running...)
				synctest.Wait()
				var sources []Source
				for _, n := range tt.sources {
					sources = append(sources, &fakeSource{name: n, run: never})
				}
				err := sup.Run(t.Context(), sources...)
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("Run: %v, want an error containing %q", err, tt.want)
				}
				if got, want := len(sup.Status()), len(tt.running); got != want {
					t.Errorf("%d sources in Status, want %d", got, want)
				}
				if err := stop(); err != nil {
					t.Errorf("Run: %v", err)
				}
			})
		})
	}
}

func TestSupervisorStatusJSON(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sup, _, _ := newTestSupervisor(SupervisorOptions{MinBackoff: time.Hour})
		down := &fakeSource{name: "consul", run: func(context.Context, Sink, int) error {
			return errors.New("dial tcp 127.0.0.1:8500: connection refused")
		}}
		up := &fakeSource{name: "file", run: func(ctx context.Context, _ Sink, _ int) error { return block(ctx) }}
		stop := start(sup, up, down)
		synctest.Wait()
		got, err := json.Marshal(sup.Status())
		if err != nil {
			t.Fatal(err)
		}
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
		want := `[{"name":"consul","healthy":false,"consecutive_failures":1,` +
			`"last_error":"dial tcp 127.0.0.1:8500: connection refused","changed":"2000-01-01T00:00:00Z"},` +
			`{"name":"file","healthy":true,"consecutive_failures":0,"changed":"2000-01-01T00:00:00Z"}]`
		if diff := cmp.Diff(string(got), want); diff != "" {
			t.Errorf("Status JSON (-got +want):\n%s", diff)
		}
	})
}
