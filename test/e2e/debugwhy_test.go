package e2e

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The X-Outrigger-Debug test's own ports (9740-9749): the listener, an
// echo backend that always answers 503, one that answers 200, one where
// nothing listens, and the admin server.
var debugWhyPorts = []string{"9740", "9741", "9742", "9743", "9749"}

// A client on loopback that sends "X-Outrigger-Debug: why" to the real
// binary gets the trail in X-Outrigger-Why, over HTTP/1.1 (the fast path)
// and h2c (net/http's path): a 503 retried on the other endpoint shows
// both attempts and retries=1; a connect failure shows its cause. The
// field never reaches the backend, and a request without it gets no
// trail.
func TestDebugWhyHeaderOverTheRealBinary(t *testing.T) {
	for _, port := range debugWhyPorts {
		ln, err := net.Listen("tcp", "127.0.0.1:"+port)
		if err != nil {
			t.Fatalf("port %s is taken by another process (%v); stop it and run the tests again", port, err)
		}
		ln.Close()
	}
	startEcho(t, "web-a", "127.0.0.1:9741", "-mode", "http", "-fail-every", "1")
	startEcho(t, "web-b", "127.0.0.1:9742", "-mode", "http")
	dir := t.TempDir()
	files := map[string]string{
		"outrigger.yaml": `node: {name: debugwhy-1, namespace: e2e}
admin: {listen: 127.0.0.1:9749}
discovery: [{name: local, file: {path: services.yaml}}]
outbound:
  - name: web
    listen: 127.0.0.1:9740
    protocol: http
    connect_attempts: 1
    routes:
      - {name: down, match: {path: {value: /down}}, backends: [{service: down.e2e}]}
      - {name: api, match: {path: {value: /api}}, backends: [{service: web.e2e}]}
upstreams:
  web.e2e:
    retry:
      attempts: 2
      per_try_timeout: 5s
      on: [gateway-error]
      backoff: {base: 1ms, max: 5ms}
      budget: {percent: 100}
`,
		"services.yaml": `services:
  - name: web.e2e
    endpoints:
      - {id: web-a, address: 127.0.0.1, port: 9741}
      - {id: web-b, address: 127.0.0.1, port: 9742}
  - name: down.e2e
    endpoints:
      - {id: gone, address: 127.0.0.1, port: 9743}
`,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := start(t, "outrigger", "run", "-c", filepath.Join(dir, "outrigger.yaml"))
	deadline := time.Now().Add(waitLimit)
	for code, _ := getJSON(t, "http://127.0.0.1:9749/ready", nil); code != http.StatusOK; code, _ = getJSON(t, "http://127.0.0.1:9749/ready", nil) {
		if time.Now().After(deadline) {
			t.Fatalf("outrigger not ready within %v:\n%s", waitLimit, p.output())
		}
		time.Sleep(20 * time.Millisecond)
	}

	h2c := &http.Transport{Protocols: new(http.Protocols)}
	h2c.Protocols.SetUnencryptedHTTP2(true)
	defer h2c.CloseIdleConnections()
	h1 := &http.Transport{}
	defer h1.CloseIdleConnections()
	for _, c := range []struct {
		name   string
		client *http.Client
	}{
		{"HTTP/1.1", &http.Client{Transport: h1, Timeout: waitLimit}},
		{"h2c", &http.Client{Transport: h2c, Timeout: waitLimit}},
	} {
		t.Run(c.name, func(t *testing.T) {
			get := func(path string, debug bool) (*http.Response, []byte) {
				t.Helper()
				req, _ := http.NewRequest("GET", "http://127.0.0.1:9740"+path, nil)
				if debug {
					req.Header.Set("x-outrigger-debug", "why")
				}
				resp, err := c.client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatal(err)
				}
				return resp, b
			}

			// Round robin starts anywhere: ask until a request went to
			// web-a first.
			var trail string
			for i := 0; i < 4 && !strings.Contains(trail, "attempt=1 127.0.0.1:9741 503"); i++ {
				resp, body := get("/api/x", true)
				trail = resp.Header.Get("X-Outrigger-Why")
				if resp.StatusCode != 200 {
					t.Fatalf("GET /api/x = %d %s (trail %q)", resp.StatusCode, body, trail)
				}
				var echo struct {
					Name    string              `json:"name"`
					Headers map[string][]string `json:"headers"`
				}
				if err := json.Unmarshal(body, &echo); err != nil {
					t.Fatalf("echo body %q: %v", body, err)
				}
				for k := range echo.Headers {
					if strings.EqualFold(k, "x-outrigger-debug") {
						t.Errorf("the backend got %s: %q", k, echo.Headers[k])
					}
				}
			}
			t.Logf("X-Outrigger-Why: %s", trail)
			const prefix = "listener=web; route=api; service=web.e2e; attempt=1 127.0.0.1:9741 503; attempt=2 127.0.0.1:9742 200 backoff="
			const suffix = "; retries=1; response_timeout=15s; per_try_timeout=5s"
			if !strings.HasPrefix(trail, prefix) || !strings.HasSuffix(trail, suffix) {
				t.Errorf("trail\n %s\nwant %s<d>%s", trail, prefix, suffix)
			}

			resp, _ := get("/down", true)
			want := "listener=web; route=down; service=down.e2e; attempt=1 127.0.0.1:9743 connect_failure; response_timeout=15s; cause=connect_failure"
			if got := resp.Header.Get("X-Outrigger-Why"); resp.StatusCode != 502 || got != want {
				t.Errorf("GET /down = %d, trail\n %s\nwant %s", resp.StatusCode, got, want)
			}

			resp, _ = get("/api/x", false)
			if v, ok := resp.Header["X-Outrigger-Why"]; ok {
				t.Errorf("a request without x-outrigger-debug got X-Outrigger-Why %q", v)
			}
		})
	}
}
