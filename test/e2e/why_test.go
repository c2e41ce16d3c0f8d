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

// The access log and /why test runs on ports 9700-9719 of its own: the
// admin server on 9719, an http listener on 9700, echo backends on 9711
// (live) and 9712 (nothing listens: its breaker opens), and 9713 listed
// as not ready.
var whyPorts = []string{"9700", "9711", "9712", "9713", "9719"}

const whyAdmin = "http://127.0.0.1:9719"

// whyView is the part of /why this test reads.
type whyView struct {
	Verdict string `json:"verdict"`
	Route   struct {
		Matched *struct {
			Name string `json:"name"`
		} `json:"matched"`
	} `json:"route"`
	Services []struct {
		Service  string `json:"service"`
		Upstream struct {
			WouldPick []string `json:"would_pick"`
			Endpoints []struct {
				ID       string `json:"id"`
				Excluded []struct {
					Reason string `json:"reason"`
				} `json:"excluded"`
			} `json:"endpoints"`
		} `json:"upstream"`
	} `json:"services"`
}

func TestWhyAndAccessLogOverTheRealBinary(t *testing.T) {
	for _, port := range whyPorts {
		ln, err := net.Listen("tcp", "127.0.0.1:"+port)
		if err != nil {
			t.Fatalf("port %s is taken by another process (%v); stop it and run the tests again", port, err)
		}
		ln.Close()
	}
	startEcho(t, "web-a", "127.0.0.1:9711", "-mode", "http")
	dir := t.TempDir()
	files := map[string]string{
		"outrigger.yaml": `node: {name: why-1, namespace: e2e}
admin: {listen: 127.0.0.1:9719}
discovery: [{name: local, file: {path: services.yaml}}]
access_log: {path: access.log}
outbound:
  - name: web
    listen: 127.0.0.1:9700
    protocol: http
    connect_attempts: 1
    routes:
      - {name: api, match: {path: {value: /api}}, backends: [{service: web.e2e}]}
upstreams:
  web.e2e: {circuit_breaker: {consecutive_failures: 1, open: 1m}}
`,
		"services.yaml": `services:
  - name: web.e2e
    endpoints:
      - {id: web-a, address: 127.0.0.1, port: 9711}
      - {id: web-b, address: 127.0.0.1, port: 9712}
      - {id: web-c, address: 127.0.0.1, port: 9713, state: not_ready}
`,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := start(t, "outrigger", "run", "-c", filepath.Join(dir, "outrigger.yaml"))
	deadline := time.Now().Add(waitLimit)
	for code, _ := getJSON(t, whyAdmin+"/ready", nil); code != http.StatusOK; code, _ = getJSON(t, whyAdmin+"/ready", nil) {
		if time.Now().After(deadline) {
			t.Fatalf("outrigger not ready within %v:\n%s", waitLimit, p.output())
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Requests until web-b is picked: its connection is refused, the
	// client gets 502, and its breaker opens.
	saw502 := false
	for i := 0; i < 10 && !saw502; i++ {
		resp, err := http.Get("http://127.0.0.1:9700/api/x")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusBadGateway:
			saw502 = true
		case http.StatusOK:
		default:
			t.Fatalf("GET /api/x = %d", resp.StatusCode)
		}
	}
	if !saw502 {
		t.Fatal("web-b was never picked")
	}

	var why whyView
	deadline = time.Now().Add(waitLimit)
	for {
		code, body := getJSON(t, whyAdmin+"/why?path=/api/x&host=shop.test", &why)
		if code != http.StatusOK {
			t.Fatalf("/why = %d %s", code, body)
		}
		if len(why.Services) == 1 && len(why.Services[0].Upstream.WouldPick) == 1 {
			reasons := map[string]string{}
			for _, e := range why.Services[0].Upstream.Endpoints {
				for _, x := range e.Excluded {
					reasons[e.ID] += x.Reason
				}
			}
			if reasons["local/web-b"] == "breaker_open" && reasons["local/web-c"] == "not_ready" && reasons["local/web-a"] == "" &&
				why.Services[0].Upstream.WouldPick[0] == "local/web-a" && why.Route.Matched != nil && why.Route.Matched.Name == "api" {
				t.Logf("/why:\n%s", body)
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/why never named web-b breaker_open, web-c not_ready and web-a as the pick: %s", body)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The access log has a line per request, the 502 with its cause.
	var lines []map[string]any
	deadline = time.Now().Add(waitLimit)
	for {
		b, _ := os.ReadFile(filepath.Join(dir, "access.log"))
		lines = nil
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil {
				lines = append(lines, m)
			}
		}
		if len(lines) > 0 && lines[len(lines)-1]["status"] == float64(502) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("access.log never showed the 502: %s", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	last := lines[len(lines)-1]
	for k, v := range map[string]any{"cause": "connect_failure", "upstream": "127.0.0.1:9712", "route": "api",
		"service": "web.e2e", "listener": "web", "path": "/api/x", "method": "GET", "attempts": float64(1)} {
		if last[k] != v {
			t.Errorf("502 line: %s = %#v, want %#v (%v)", k, last[k], v, last)
		}
	}
	for _, l := range lines[:len(lines)-1] {
		if l["status"] != float64(200) || l["upstream"] != "127.0.0.1:9711" {
			t.Errorf("line before the 502: %v, want 200 from web-a", l)
		}
	}
}
