package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/outrigger-mesh/outrigger/proxy"
)

// accessLine is one access log line as a user's log pipeline parses it.
type accessLine struct {
	Time      time.Time `json:"time"`
	Duration  *float64  `json:"duration_ms"`
	Method    string    `json:"method"`
	Authority string    `json:"authority"`
	Path      string    `json:"path"`
	Protocol  string    `json:"protocol"`
	Status    int       `json:"status"`
	Bytes     int64     `json:"bytes"`
	Upstream  string    `json:"upstream"`
	Attempts  int       `json:"attempts"`
	Retries   int       `json:"retries"`
	Route     string    `json:"route"`
	Service   string    `json:"service"`
	Listener  string    `json:"listener"`
	Client    string    `json:"client"`
	Cause     string    `json:"cause"`
	TraceID   *string   `json:"trace_id"`
}

// helloBackend is a real HTTP server answering "hello" to everything.
func helloBackend(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// accessRig runs a process with one http listener "web": route "ok" to a
// real backend (b.test), route "dead" to an address nothing listens on
// (c.test), and the given access_log block.
func accessRig(t *testing.T, accessLog string) (r *reloadRig, backend, dead string) {
	t.Helper()
	backend, dead = helloBackend(t), freePort(t)
	r = startRig(t, rigConfig(`  - name: web
    listen: "127.0.0.1:0"
    protocol: http
    connect_attempts: 1
    routes:
      - {name: ok, match: {path: {value: /ok}}, backends: [{service: b.test}]}
      - {name: dead, match: {path: {value: /dead}}, backends: [{service: c.test}]}
access_log: `+accessLog+"\n"), servicesFile(backend, dead))
	return r, backend, dead
}

func get(t *testing.T, addr, host, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// readLines waits until the file holds n lines and parses them.
func readLines(t *testing.T, path string, n int) []accessLine {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if lines := strings.SplitAfter(string(b), "\n"); strings.Count(string(b), "\n") >= n {
			var out []accessLine
			for _, l := range lines[:n] {
				var a accessLine
				if err := json.Unmarshal([]byte(l), &a); err != nil {
					t.Fatalf("line %q: %v", l, err)
				}
				out = append(out, a)
			}
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %q, want %d lines", path, b, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stop ends the rig's process with SIGTERM and waits for run to return.
func (r *reloadRig) stop() {
	r.t.Helper()
	r.sigs <- syscall.SIGTERM
	select {
	case err := <-r.done:
		if err != nil {
			r.t.Errorf("run: %v", err)
		}
		r.done <- nil // for the cleanup
	case <-time.After(10 * time.Second):
		r.t.Fatal("run did not return after SIGTERM")
	}
}

func TestAccessLogLinesFromRealRequests(t *testing.T) {
	r, backend, dead := accessRig(t, "{path: access.log}")
	web := r.addr("web")
	if code, body := get(t, web, "shop.test", "/ok?x=1"); code != 200 || body != "hello" {
		t.Fatalf("/ok = %d %q", code, body)
	}
	if code, _ := get(t, web, "shop.test:8080", "/dead"); code != http.StatusBadGateway {
		t.Fatalf("/dead = %d, want 502", code)
	}
	if code, _ := get(t, web, "shop.test", "/nowhere"); code != http.StatusNotFound {
		t.Fatalf("/nowhere = %d, want 404", code)
	}
	// HTTP/1.0 is served by net/http's path, which counts body bytes.
	c, err := net.Dial("tcp", web)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET /ok HTTP/1.0\r\nHost: old.test\r\n\r\n")
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if resp, _ := io.ReadAll(c); !strings.HasPrefix(string(resp), "HTTP/1.0 200") || !strings.HasSuffix(string(resp), "hello") {
		t.Fatalf("HTTP/1.0 /ok answered %q", resp)
	}
	c.Close()
	lines := readLines(t, filepath.Join(filepath.Dir(r.path), "access.log"), 4)
	empty := ""
	want := []accessLine{
		{Method: "GET", Authority: "shop.test", Path: "/ok?x=1", Protocol: "HTTP/1.1", Status: 200, Bytes: 5,
			Upstream: backend, Attempts: 1, Route: "ok", Service: "b.test", Listener: "web", TraceID: &empty},
		{Method: "GET", Authority: "shop.test:8080", Path: "/dead", Protocol: "HTTP/1.1", Status: 502,
			Upstream: dead, Attempts: 1, Route: "dead", Service: "c.test", Listener: "web", Cause: "connect_failure", TraceID: &empty},
		{Method: "GET", Authority: "shop.test", Path: "/nowhere", Protocol: "HTTP/1.1", Status: 404,
			Listener: "web", Cause: "no_route", TraceID: &empty},
		{Method: "GET", Authority: "old.test", Path: "/ok", Protocol: "HTTP/1.0", Status: 200, Bytes: 5,
			Upstream: backend, Attempts: 1, Route: "ok", Service: "b.test", Listener: "web", TraceID: &empty},
	}
	for i := range lines {
		l := &lines[i]
		if l.Duration == nil || *l.Duration < 0 {
			t.Errorf("line %d: duration_ms %v", i, l.Duration)
		}
		if time.Since(l.Time) > time.Minute || time.Since(l.Time) < 0 {
			t.Errorf("line %d: time %v is not now", i, l.Time)
		}
		if ap, err := netip.ParseAddrPort(l.Client); err != nil || !ap.Addr().IsLoopback() {
			t.Errorf("line %d: client %q, want a loopback address", i, l.Client)
		}
	}
	// A request is logged once its response is written, so a later
	// request's line can come first: match lines by request. Bytes is
	// compared for the endpoint's answers; the proxy's own error bodies
	// are the engine's business.
	ignore := cmpopts.IgnoreFields(accessLine{}, "Time", "Duration", "Client")
	byRequest := map[string]accessLine{}
	for _, l := range lines {
		byRequest[l.Protocol+" "+l.Authority+l.Path] = l
	}
	for i, w := range want {
		opts := []cmp.Option{ignore}
		if w.Cause != "" {
			opts = append(opts, cmpopts.IgnoreFields(accessLine{}, "Bytes"))
		}
		if diff := cmp.Diff(byRequest[w.Protocol+" "+w.Authority+w.Path], w, opts...); diff != "" {
			t.Errorf("line for request %d (-got +want):\n%s", i, diff)
		}
	}

	// Log rotation: the file is moved away, SIGHUP reopens the path.
	logPath := filepath.Join(filepath.Dir(r.path), "access.log")
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	r.sigs <- syscall.SIGHUP
	r.waitFor("reopened", func() bool { return strings.Contains(r.logs.String(), "access log reopened") })
	get(t, web, "rotated.test", "/ok")
	if got := readLines(t, logPath, 1); got[0].Authority != "rotated.test" {
		t.Errorf("after SIGHUP the new file holds %+v", got[0])
	}
	r.stop()
	if b, _ := os.ReadFile(logPath + ".1"); strings.Count(string(b), "\n") != 4 {
		t.Errorf("the rotated file holds %q, want the 4 lines from before", b)
	}
}

func TestAccessLogSampleZeroWritesNothing(t *testing.T) {
	r, _, _ := accessRig(t, "{path: access.log, sample: 0}")
	web := r.addr("web")
	for range 20 {
		if code, _ := get(t, web, "shop.test", "/ok"); code != 200 {
			t.Fatalf("/ok = %d", code)
		}
	}
	r.stop() // flushes and closes the file
	b, err := os.ReadFile(filepath.Join(filepath.Dir(r.path), "access.log"))
	if err != nil || len(b) != 0 {
		t.Errorf("access.log = %q, %v; want an empty file", b, err)
	}
}

// A full queue drops and counts, and never blocks the request.
func TestAccessLogFullQueueDrops(t *testing.T) {
	l := &accessLog{lines: make(chan *[]byte, 2), log: slog.New(slog.DiscardHandler)}
	l.setSample(1)
	rec := &proxy.RequestRecord{Method: "GET", Status: 200}
	done := make(chan struct{})
	go func() {
		for range 5 {
			l.ObserveRequest(rec)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("ObserveRequest blocked on a full queue")
	}
	if got := l.Dropped(); got != 3 {
		t.Errorf("dropped %d, want 3 (queue of 2, 5 requests)", got)
	}
	if len(l.lines) != 2 {
		t.Errorf("queued %d, want 2", len(l.lines))
	}
}

func TestAccessLogJSONEscaping(t *testing.T) {
	rec := &proxy.RequestRecord{
		Method: "GET", Path: "/a\"b\\c\x01\n\xff/é", Authority: "h<t>",
		Endpoint: netip.MustParseAddrPort("[::1]:80"), Start: time.Unix(1700000000, 123456789), Duration: 1500 * time.Microsecond,
	}
	line := appendAccessLine(nil, rec)
	var got map[string]any
	if err := json.Unmarshal(line, &got); err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	want := map[string]any{"path": "/a\"b\\c\x01\n\ufffd/é", "authority": "h<t>", "upstream": "[::1]:80",
		"time": "2023-11-14T22:13:20.123456Z", "duration_ms": 1.5}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %#v, want %#v (line %s)", k, got[k], v, line)
		}
	}
	if line[len(line)-1] != '\n' || strings.Count(string(line), "\n") != 1 {
		t.Errorf("line %q is not one line", line)
	}
}

func TestAccessLogConfigErrors(t *testing.T) {
	base := rigConfig(`  - {name: web, listen: "127.0.0.1:0", protocol: http, service: b.test}` + "\n")
	for _, tc := range []struct{ block, want string }{
		{"access_log: {sample: 0.5}", "outrigger.yaml:6: access_log.path: required"},
		{"access_log:\n  path: stdout\n  sample: 2", "outrigger.yaml:8: access_log.sample: 2 is outside 0..1"},
		{"access_log: {path: no/such/dir/access.log}", "outrigger.yaml:6: access_log.path: directory"},
	} {
		dir := t.TempDir()
		_, err := ParseConfig(filepath.Join(dir, "outrigger.yaml"), []byte(base+tc.block+"\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.block, err, tc.want)
		}
	}
	cfg, err := ParseConfig("outrigger.yaml", []byte(base+"access_log: {path: stderr}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.AccessLog.Sample; s == nil || *s != 1 {
		t.Errorf("default sample %v, want 1", s)
	}
}

// Adding or removing access_log needs a restart: a reload keeps the
// running setting and says so. A change of the block's path or sample is
// applied in place.
func TestAccessLogChangeNeedsRestart(t *testing.T) {
	base := rigConfig(`  - {name: web, listen: "127.0.0.1:0", protocol: http, service: b.test}` + "\n")
	parse := func(extra string) *Config {
		cfg, err := ParseConfig("outrigger.yaml", []byte(base+extra))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	off, on, sampled := parse(""), parse("access_log: {path: stderr}\n"), parse("access_log: {path: stderr, sample: 0.5}\n")
	for _, tc := range []struct {
		old, next        *Config
		restart, inPlace bool
	}{
		{off, on, true, false}, {on, off, true, false},
		{on, sampled, false, true}, {on, parse("access_log: {path: stdout}\n"), false, true},
		{on, parse("access_log: {path: stderr}\n"), false, false}, {nil, on, false, false},
	} {
		d := diffConfig(tc.old, tc.next)
		if got := slices.Contains(d.restart, "access_log"); got != tc.restart {
			t.Errorf("restart %v, want access_log there: %v", d.restart, tc.restart)
		}
		if d.accessLog != tc.inPlace {
			t.Errorf("applied in place %v, want %v", d.accessLog, tc.inPlace)
		}
	}
}

// A reload that moves the access log to another file and lowers its
// sample applies both: the lines of requests before it are in the old
// file, those after it in the new one, and with sample 0 none; a path that
// cannot be opened fails the reload and the log stays where it was.
func TestAccessLogReloadPathAndSample(t *testing.T) {
	r, _, _ := accessRig(t, "{path: a.log}")
	web := r.addr("web")
	dir := filepath.Dir(r.path)
	config := func(accessLog string) string {
		b, err := os.ReadFile(r.path)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		i := strings.Index(s, "access_log: ")
		return s[:i] + "access_log: " + accessLog + "\n"
	}
	for range 3 {
		if code, _ := get(t, web, "shop.test", "/ok"); code != 200 {
			t.Fatalf("/ok = %d", code)
		}
	}
	readLines(t, filepath.Join(dir, "a.log"), 3)

	if s := r.reload(config("{path: b.log}")); s.Failures != 0 || slices.Contains(s.RestartNeeded, "access_log") {
		t.Fatalf("reload: %+v", s)
	}
	for range 2 {
		get(t, web, "shop.test", "/ok")
	}
	readLines(t, filepath.Join(dir, "b.log"), 2)

	// A directory where the file should be: the open fails, the reload
	// fails, b.log stays.
	if err := os.Mkdir(filepath.Join(dir, "c.log"), 0o755); err != nil {
		t.Fatal(err)
	}
	if s := r.reload(config("{path: c.log}")); s.Failures != 1 || !strings.Contains(strings.Join(s.LastError, " "), "c.log") {
		t.Fatalf("reload to an unopenable path: %+v", s)
	}
	get(t, web, "shop.test", "/ok")
	readLines(t, filepath.Join(dir, "b.log"), 3)

	if s := r.reload(config("{path: b.log, sample: 0}")); s.Failures != 1 {
		t.Fatalf("reload: %+v", s)
	}
	for range 5 {
		get(t, web, "shop.test", "/ok")
	}
	r.stop() // flushes and closes
	if got := readLines(t, filepath.Join(dir, "b.log"), 3); len(got) != 3 {
		t.Fatalf("b.log: %d lines", len(got))
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "b.log")); strings.Count(string(b), "\n") != 3 {
		t.Errorf("b.log holds %d lines after sample 0, want still 3", strings.Count(string(b), "\n"))
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "a.log")); strings.Count(string(b), "\n") != 3 {
		t.Errorf("a.log holds %d lines, want the 3 from before the move", strings.Count(string(b), "\n"))
	}
}

// With tracing on, a line carries the request's trace ID in hex.
func TestAccessLogTraceID(t *testing.T) {
	r := proxy.RequestRecord{Method: "GET", Status: 200}
	r.TraceID = [16]byte{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	var m map[string]any
	if err := json.Unmarshal(appendAccessLine(nil, &r), &m); err != nil {
		t.Fatal(err)
	}
	if got := m["trace_id"]; got != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("trace_id = %v", got)
	}
	r.TraceID = [16]byte{}
	if err := json.Unmarshal(appendAccessLine(nil, &r), &m); err != nil || m["trace_id"] != "" {
		t.Errorf("without tracing: trace_id = %v, %v; want \"\"", m["trace_id"], err)
	}
}
