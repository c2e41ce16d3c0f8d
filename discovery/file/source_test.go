package file

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/outrigger-mesh/outrigger/discovery"
)

// wait bounds every wait for an event. It only turns a hang into a failure;
// no test measures time with it.
const wait = 10 * time.Second

// event is one call on the fake sink: an Apply (Update set) or a Synced.
type event struct {
	Update discovery.Update
	Synced string
}

// fakeSink records every call in order and hands each to the test through
// a channel, so a test can wait for the next one.
type fakeSink struct {
	mu     sync.Mutex
	events []event
	ch     chan event
}

func newFakeSink() *fakeSink { return &fakeSink{ch: make(chan event, 100)} }

func (f *fakeSink) Apply(u discovery.Update) error {
	f.record(event{Update: u})
	return nil
}

func (f *fakeSink) Synced(source string) { f.record(event{Synced: source}) }

func (f *fakeSink) record(e event) {
	f.mu.Lock()
	f.events = append(f.events, e)
	f.mu.Unlock()
	f.ch <- e
}

// next waits for the next call on the sink.
func (f *fakeSink) next(t *testing.T) event {
	t.Helper()
	select {
	case e := <-f.ch:
		return e
	case <-time.After(wait):
		t.Fatalf("no call on the sink within %v", wait)
		return event{}
	}
}

// nextN waits for the next n calls.
func (f *fakeSink) nextN(t *testing.T, n int) []event {
	t.Helper()
	var got []event
	for range n {
		got = append(got, f.next(t))
	}
	return got
}

// none fails if a call is waiting that the test has not taken.
func (f *fakeSink) none(t *testing.T) {
	t.Helper()
	select {
	case e := <-f.ch:
		t.Fatalf("unexpected call on the sink: %+v", e)
	default:
	}
}

// logs is a slog.Handler that passes warnings and errors to the test.
type logs struct{ ch chan slog.Record }

func (l *logs) Enabled(_ context.Context, lvl slog.Level) bool { return lvl >= slog.LevelWarn }
func (l *logs) Handle(_ context.Context, r slog.Record) error {
	select {
	case l.ch <- r:
	default: // never block Run; a test that needs the record fails instead
	}
	return nil
}
func (l *logs) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logs) WithGroup(string) slog.Handler      { return l }

// next waits for the next warning or error and returns its message and
// its "err" attribute.
func (l *logs) next(t *testing.T) (msg, errText string) {
	t.Helper()
	select {
	case r := <-l.ch:
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "err" {
				errText = a.Value.String()
			}
			return true
		})
		return r.Message, errText
	case <-time.After(wait):
		t.Fatalf("nothing logged within %v", wait)
		return "", ""
	}
}

func (l *logs) none(t *testing.T) {
	t.Helper()
	select {
	case r := <-l.ch:
		t.Fatalf("unexpected log: %s", r.Message)
	default:
	}
}

// running is a Source whose Run is in progress in a goroutine.
type running struct {
	src  *Source
	sink *fakeSink
	logs *logs
	stop func() error // cancels Run and returns its result
}

func start(t *testing.T, src *Source, sink *fakeSink, l *logs) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, sink) }()
	var once sync.Once
	var err error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(wait):
				t.Fatalf("Run did not return within %v of cancel", wait)
			}
		})
		return err
	}
	return &running{src: src, sink: sink, logs: l, stop: stop}
}

// startFile writes content to dir/services.yaml, starts a source on it and
// waits until it has synced, returning the calls made up to Synced.
func startFile(t *testing.T, content string) (*running, string, []event) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "services.yaml")
	writeFile(t, path, content)
	l := &logs{ch: make(chan slog.Record, 100)}
	src, err := New("local", Config{Path: path}, Options{Logger: slog.New(l)})
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, src, newFakeSink(), l)
	t.Cleanup(func() { _ = r.stop() })
	var got []event
	for {
		e := r.sink.next(t)
		got = append(got, e)
		if e.Synced != "" {
			return r, path, got
		}
	}
}

// writeFile writes in place: truncate, then write.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// replaceFile saves as careful editors do: write a temporary file in the
// same directory, then rename it over the old one.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".services.yaml.tmp")
	writeFile(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func svc(name string, ports ...uint16) string {
	var b strings.Builder
	b.WriteString("  - name: " + name + "\n    endpoints:\n")
	for _, p := range ports {
		b.WriteString("      - {address: 127.0.0.1, port: " + strconv.Itoa(int(p)) + "}\n")
	}
	if len(ports) == 0 {
		b.WriteString("      []\n")
	}
	return b.String()
}

func apply(service string, ports ...uint16) event {
	eps := []discovery.Endpoint{}
	for _, p := range ports {
		ap := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p)
		eps = append(eps, discovery.Endpoint{ID: ap.String(), Addr: ap, Weight: 1})
	}
	return event{Update: discovery.Update{Source: "local", Service: service, Endpoints: eps}}
}

func deleted(service string) event {
	return event{Update: discovery.Update{Source: "local", Service: service, Deleted: true}}
}

var synced = event{Synced: "local"}

func diffEvents(t *testing.T, got, want []event) {
	t.Helper()
	if diff := cmp.Diff(got, want, cmpAddr); diff != "" {
		t.Errorf("calls on the sink (-got +want):\n%s", diff)
	}
}

func TestRunPublishesThenSyncs(t *testing.T) {
	defer goleak.VerifyNone(t)
	r, _, got := startFile(t, "services:\n"+svc("echo.demo", 9101, 9102)+svc("idle.demo"))
	defer r.stop()
	diffEvents(t, got, []event{apply("echo.demo", 9101, 9102), apply("idle.demo"), synced})
	if err := r.stop(); err != nil {
		t.Errorf("Run after cancel: %v, want nil", err)
	}
}

func TestRunPicksUpEdits(t *testing.T) {
	for _, tt := range []struct {
		name string
		save func(t *testing.T, path, content string)
	}{
		{"rename over the file", replaceFile},
		{"truncate and write in place", writeFile},
	} {
		t.Run(tt.name, func(t *testing.T) {
			defer goleak.VerifyNone(t)
			r, path, _ := startFile(t, "services:\n"+svc("a.demo", 1)+svc("b.demo", 2))
			defer r.stop()
			// Only the changed service is applied.
			tt.save(t, path, "services:\n"+svc("a.demo", 1)+svc("b.demo", 2, 3))
			diffEvents(t, r.sink.nextN(t, 1), []event{apply("b.demo", 2, 3)})
			// And again: the watch survives the first save (for a rename,
			// the watched file's inode is gone).
			tt.save(t, path, "services:\n"+svc("a.demo", 4)+svc("b.demo", 2, 3))
			diffEvents(t, r.sink.nextN(t, 1), []event{apply("a.demo", 4)})
			if err := r.stop(); err != nil {
				t.Errorf("Run after cancel: %v, want nil", err)
			}
		})
	}
}

func TestRunKeepsLastGoodOnBadEdit(t *testing.T) {
	for _, tt := range []struct {
		name    string
		content string
		wantErr string
	}{{
		name:    "syntax error",
		content: "services:\n  - name: a.demo\n    endpoints: [\n",
		wantErr: "services.yaml:3: syntax error: sequence end token ']' not found",
	}, {
		name:    "invalid field",
		content: "services:\n" + svc("a.demo", 1) + "      - {address: 127.0.0.1, port: 70000}\n",
		wantErr: "services.yaml:5: services[0].endpoints[1].port: 70000 is out of range 1..65535",
	}, {
		name:    "write caught halfway",
		content: "services:\n  - name: a.demo\n    endpoints:\n      - addre",
		wantErr: `services.yaml:4: services[0].endpoints[0]: want a mapping, got the string "addre"`,
	}, {
		name:    "empty",
		content: "",
		wantErr: `services.yaml:1: file is empty; want a "services:" list (write "services: []" for no services)`,
	}} {
		t.Run(tt.name, func(t *testing.T) {
			defer goleak.VerifyNone(t)
			r, path, _ := startFile(t, "services:\n"+svc("a.demo", 1)+svc("b.demo", 2))
			defer r.stop()
			// A rename makes exactly one event for the file, hence one read.
			replaceFile(t, path, tt.content)
			msg, errText := r.logs.next(t)
			if want := "file: services file not reloaded; keeping the last good set"; msg != want {
				t.Errorf("logged %q, want %q", msg, want)
			}
			if want := "file: invalid services file:\n" + strings.ReplaceAll(tt.wantErr, "services.yaml", path); errText != want {
				t.Errorf("logged err (-got +want):\n%s", cmp.Diff(errText, want))
			}
			// The read that logged is done, and it sent nothing.
			r.sink.none(t)
			// The next thing the sink sees is the next good edit.
			replaceFile(t, path, "services:\n"+svc("a.demo", 1))
			diffEvents(t, r.sink.nextN(t, 1), []event{deleted("b.demo")})
			r.logs.none(t)
			if err := r.stop(); err != nil {
				t.Errorf("Run after cancel: %v, want nil", err)
			}
		})
	}
}

func TestRunDeletesRemovedService(t *testing.T) {
	defer goleak.VerifyNone(t)
	r, path, _ := startFile(t, "services:\n"+svc("a.demo", 1)+svc("b.demo", 2)+svc("c.demo", 3))
	defer r.stop()
	replaceFile(t, path, "services:\n"+svc("b.demo", 2))
	// Applies come before deletions, so a.demo and c.demo being the next
	// two calls shows b.demo, unchanged, was not applied again.
	diffEvents(t, r.sink.nextN(t, 2), []event{deleted("a.demo"), deleted("c.demo")})
	// An empty list is not a deletion.
	replaceFile(t, path, "services:\n"+svc("b.demo"))
	diffEvents(t, r.sink.nextN(t, 1), []event{apply("b.demo")})
	replaceFile(t, path, "services: []\n")
	diffEvents(t, r.sink.nextN(t, 1), []event{deleted("b.demo")})
}

func TestRunKeepsLastGoodWhenFileRemoved(t *testing.T) {
	defer goleak.VerifyNone(t)
	r, path, _ := startFile(t, "services:\n"+svc("a.demo", 1))
	defer r.stop()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	msg, _ := r.logs.next(t)
	if want := "file: services file removed; keeping the last good set until it is back"; msg != want {
		t.Errorf("logged %q, want %q", msg, want)
	}
	r.sink.none(t)
	writeFile(t, path, "services:\n"+svc("a.demo", 1, 2))
	diffEvents(t, r.sink.nextN(t, 1), []event{apply("a.demo", 1, 2)})
}

func TestReloadRereads(t *testing.T) {
	defer goleak.VerifyNone(t)
	// The watched path is a link to a file in another directory: edits
	// there make no event in the watched one, so only Reload sees them.
	real := filepath.Join(t.TempDir(), "real.yaml")
	writeFile(t, real, "services:\n"+svc("a.demo", 1)+svc("b.demo", 2))
	path := filepath.Join(t.TempDir(), "services.yaml")
	if err := os.Symlink(real, path); err != nil {
		t.Fatal(err)
	}
	l := &logs{ch: make(chan slog.Record, 100)}
	src, err := New("local", Config{Path: path}, Options{Logger: slog.New(l)})
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, src, newFakeSink(), l)
	defer r.stop()
	diffEvents(t, r.sink.nextN(t, 3), []event{apply("a.demo", 1), apply("b.demo", 2), synced})

	writeFile(t, real, "services:\n"+svc("a.demo", 1)+svc("b.demo", 3))
	src.Reload()
	src.Reload() // coalesced with the first, or a second full publish; never blocks
	// A Reload applies every service, changed or not.
	diffEvents(t, r.sink.nextN(t, 2), []event{apply("a.demo", 1), apply("b.demo", 3)})
}

func TestRunFollowsConfigMapSwap(t *testing.T) {
	defer goleak.VerifyNone(t)
	// The layout kubelet gives a ConfigMap volume: services.yaml links to
	// ..data/services.yaml, ..data links to a timestamped directory, and an
	// update renames a new ..data link over the old one.
	dir := t.TempDir()
	version := func(name, content string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, name, "services.yaml"), content)
	}
	version("..v1", "services:\n"+svc("a.demo", 1))
	for _, link := range [][2]string{{"..v1", "..data"}, {"..data/services.yaml", "services.yaml"}} {
		if err := os.Symlink(link[0], filepath.Join(dir, link[1])); err != nil {
			t.Fatal(err)
		}
	}
	l := &logs{ch: make(chan slog.Record, 100)}
	src, err := New("local", Config{Path: filepath.Join(dir, "services.yaml")}, Options{Logger: slog.New(l)})
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, src, newFakeSink(), l)
	defer r.stop()
	diffEvents(t, r.sink.nextN(t, 2), []event{apply("a.demo", 1), synced})

	version("..v2", "services:\n"+svc("a.demo", 2))
	if err := os.Symlink("..v2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	diffEvents(t, r.sink.nextN(t, 1), []event{apply("a.demo", 2)})
}

func TestRunRestartDeletesWhatVanished(t *testing.T) {
	defer goleak.VerifyNone(t)
	r, path, _ := startFile(t, "services:\n"+svc("a.demo", 1)+svc("b.demo", 2))
	defer r.stop()
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, "services:\n"+svc("a.demo", 1))
	// The same Source, run again (as the supervisor does), re-applies what
	// the file holds and deletes what the earlier Run published and the
	// file no longer has.
	r2 := start(t, r.src, r.sink, r.logs)
	defer r2.stop()
	diffEvents(t, r.sink.nextN(t, 3), []event{apply("a.demo", 1), deleted("b.demo"), synced})
}

func TestRunStartErrors(t *testing.T) {
	for _, tt := range []struct {
		name    string
		dir     string  // a directory under the test's, not created
		content *string // nil: no file
		want    []string
		is      error
	}{{
		name: "missing file",
		want: []string{"services file ", "services.yaml does not exist; create it", "or correct the path"},
		is:   fs.ErrNotExist,
	}, {
		name: "missing directory",
		dir:  "gone",
		want: []string{"gone, meant to hold services file ", "does not exist; create it and the file", "or correct the path"},
		is:   fs.ErrNotExist,
	}, {
		name:    "invalid file",
		content: ptr("services:\n  - name: a\n"),
		want:    []string{"file: invalid services file:\n", `services.yaml:2: services[0].name: invalid service key "a"`},
	}} {
		t.Run(tt.name, func(t *testing.T) {
			defer goleak.VerifyNone(t)
			path := filepath.Join(t.TempDir(), tt.dir, "services.yaml")
			if tt.content != nil {
				writeFile(t, path, *tt.content)
			}
			src, err := New("local", Config{Path: path}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			sink := newFakeSink()
			err = src.Run(context.Background(), sink)
			if err == nil {
				t.Fatal("Run: no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Run error %q does not contain %q", err, w)
				}
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("Run error %q does not name the path %s", err, path)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("Run error %q is not %v", err, tt.is)
			}
			sink.none(t)
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestRunTwiceAtOnce(t *testing.T) {
	defer goleak.VerifyNone(t)
	r, _, _ := startFile(t, "services: []\n")
	defer r.stop()
	err := r.src.Run(context.Background(), newFakeSink())
	if err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("second Run: %v, want an already running error", err)
	}
}

func TestNewValidates(t *testing.T) {
	for _, tt := range []struct {
		name, source, path, want string
	}{
		{"no path", "local", "", "file: path is required"},
		{"no name", "", "services.yaml", "file: source name is required"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.source, Config{Path: tt.path}, Options{})
			if err == nil || err.Error() != tt.want {
				t.Errorf("New: %v, want %q", err, tt.want)
			}
		})
	}
	src, err := New("local", Config{Path: "services.yaml"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if src.Name() != "local" {
		t.Errorf("Name() = %q, want local", src.Name())
	}
}
