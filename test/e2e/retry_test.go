package e2e

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The retry test's own ports (9640-9659): the listener, three echo
// backends, and the admin server.
var retryPorts = []string{"9640", "9641", "9642", "9643", "9659"}

// One of three real echo backends answers 503 to every other request
// (-fail-every 2). With retries on gateway errors, no client request
// fails, over HTTP/1.1 (the fast path) or h2c (net/http's path). A POST
// is not retried once sent: exactly half of the POSTs that reach the
// flaky backend get its 503; with an Idempotency-Key none do.
func TestRetryFlakyBackendClientsSeeNoErrors(t *testing.T) {
	for _, port := range retryPorts {
		ln, err := net.Listen("tcp", "127.0.0.1:"+port)
		if err != nil {
			t.Fatalf("port %s is taken by another process (%v); stop it and run the tests again", port, err)
		}
		ln.Close()
	}
	startEcho(t, "web-a", "127.0.0.1:9641", "-mode", "http", "-fail-every", "2")
	startEcho(t, "web-b", "127.0.0.1:9642", "-mode", "http")
	startEcho(t, "web-c", "127.0.0.1:9643", "-mode", "http")
	dir := t.TempDir()
	files := map[string]string{
		"outrigger.yaml": `node: {name: retry-1, namespace: e2e}
admin: {listen: 127.0.0.1:9659}
discovery: [{name: local, file: {path: services.yaml}}]
outbound:
  - {name: web, listen: 127.0.0.1:9640, protocol: http, service: web.e2e}
upstreams:
  web.e2e:
    retry:
      attempts: 3
      per_try_timeout: 5s
      on: [gateway-error, reset]
      backoff: {base: 1ms, max: 5ms}
      # Requests come one at a time here, and the default budget (20% of
      # requests in flight, plus 10 retries a second) would refuse most
      # retries of a single client: allow one retry per request in flight.
      budget: {percent: 100}
`,
		"services.yaml": `services:
  - name: web.e2e
    endpoints:
      - {id: web-a, address: 127.0.0.1, port: 9641}
      - {id: web-b, address: 127.0.0.1, port: 9642}
      - {id: web-c, address: 127.0.0.1, port: 9643}
`,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := start(t, "outrigger", "run", "-c", filepath.Join(dir, "outrigger.yaml"), "--log-level", "debug")
	deadline := time.Now().Add(waitLimit)
	for {
		if code, _ := getJSON(t, "http://127.0.0.1:9659/ready", nil); code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("outrigger not ready within %v:\n%s", waitLimit, p.output())
		}
		time.Sleep(20 * time.Millisecond)
	}

	h2c := &http.Transport{Protocols: new(http.Protocols)}
	h2c.Protocols.SetUnencryptedHTTP2(true)
	for _, c := range []struct {
		name   string
		client *http.Client
		proto  string
	}{
		{"HTTP/1.1", &http.Client{Timeout: waitLimit}, "HTTP/1.1"},
		{"h2c", &http.Client{Timeout: waitLimit, Transport: h2c}, "HTTP/2.0"},
	} {
		seen := map[string]int{}
		for i := range 60 {
			resp, a, body := get(t, c.client, "http://127.0.0.1:9640/item")
			if resp.StatusCode != http.StatusOK || resp.Proto != c.proto {
				t.Fatalf("%s request %d: %s %d from %q: %s", c.name, i, resp.Proto, resp.StatusCode, a.Name, body)
			}
			seen[a.Name]++
		}
		if seen["web-a"] == 0 || seen["web-b"] == 0 || seen["web-c"] == 0 {
			t.Errorf("%s: answers came from %v; want all three backends", c.name, seen)
		}
	}

	// 30 POSTs one after another, none retried: round robin sends 10 to
	// web-a, which fails every other one of them.
	post := func(key string) (failed int) {
		for range 30 {
			req, _ := http.NewRequest("POST", "http://127.0.0.1:9640/orders", strings.NewReader(`{"order": 1}`))
			if key != "" {
				req.Header.Set("Idempotency-Key", key)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusOK:
			case http.StatusServiceUnavailable:
				failed++
			default:
				t.Fatalf("POST: %d", resp.StatusCode)
			}
		}
		return failed
	}
	if n := post(""); n != 5 {
		t.Errorf("%d of 30 POSTs failed; want 5 (web-a's 503s, not retried after the body was sent)", n)
	}
	if n := post("order-1"); n != 0 {
		t.Errorf("%d of 30 POSTs with an Idempotency-Key failed; want 0 (retried)", n)
	}
}
