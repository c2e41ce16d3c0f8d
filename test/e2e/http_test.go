package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"
)

type echoAnswer struct {
	Name    string              `json:"name"`
	Path    string              `json:"path"`
	Proto   string              `json:"proto"`
	Headers map[string][]string `json:"headers"`
}

func get(t *testing.T, c *http.Client, url string) (*http.Response, echoAnswer, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var a echoAnswer
	if resp.Header.Get("Content-Type") == "application/json" {
		if err := json.Unmarshal(body, &a); err != nil {
			t.Fatalf("%s: %v in %s", url, err, body)
		}
	}
	return resp, a, string(body)
}

// The demo's HTTP listener routes by path, balances per request over one
// keep-alive connection, answers fixed routes itself, and speaks h2c.
func TestDemoHTTPRoutes(t *testing.T) {
	startOutrigger(t, demo(t))
	h1 := &http.Client{Timeout: waitLimit}

	seen := map[string]int{}
	for range 40 {
		resp, a, body := get(t, h1, "http://127.0.0.1:9080/shop?x=1")
		if resp.StatusCode != 200 || resp.Header.Get("X-Demo-Route") != "web" || a.Path != "/shop" {
			t.Fatalf("/shop: %d route=%q path=%q body=%s", resp.StatusCode, resp.Header.Get("X-Demo-Route"), a.Path, body)
		}
		if got := a.Headers["Via"]; len(got) == 0 {
			t.Errorf("backend saw no Via header: %v", a.Headers)
		}
		seen[a.Name]++
	}
	if len(seen) != 2 || seen["web-1"] == 0 || seen["web-2"] == 0 {
		t.Errorf("requests over one client went to %v; want both web-1 and web-2", seen)
	}

	resp, a, body := get(t, h1, "http://127.0.0.1:9080/api/orders")
	if resp.StatusCode != 200 || a.Name != "api-1" || a.Path != "/orders" || resp.Header.Get("X-Demo-Route") != "api" {
		t.Errorf("/api/orders: %d name=%q path=%q body=%s; want api-1 at /orders", resp.StatusCode, a.Name, a.Path, body)
	}
	resp, _, body = get(t, h1, "http://127.0.0.1:9080/healthz")
	if resp.StatusCode != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q; want the fixed 200 ok", resp.StatusCode, body)
	}

	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	h2 := &http.Client{Timeout: waitLimit, Transport: &http.Transport{Protocols: &protos}}
	resp, a, body = get(t, h2, "http://127.0.0.1:9080/over-h2c")
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 || a.Path != "/over-h2c" {
		t.Errorf("h2c: %d %s path=%q body=%s; want 200 over HTTP/2", resp.StatusCode, resp.Proto, a.Path, body)
	}
}

// With its backends gone, the HTTP listener answers 502 naming the cause,
// so a user can tell a proxy error from an application error.
func TestDemoHTTPProxyErrorsNameTheirCause(t *testing.T) {
	dir := t.TempDir()
	requireFreePorts(t)
	writeFile(t, dir+"/services.yaml", "services:\n  - name: web.demo\n    endpoints: [{address: 127.0.0.1, port: 9201}]\n  - name: api.demo\n    endpoints: []\n")
	writeFile(t, dir+"/outrigger.yaml", `discovery: [{name: local, file: {path: services.yaml}}]
outbound:
  - name: web
    listen: 127.0.0.1:9080
    protocol: http
    connect_timeout: 1s
    routes:
      - {match: {path: {value: /api}}, backends: [{service: api.demo}]}
      - {backends: [{service: web.demo}]}
`)
	startOutrigger(t, dir)
	c := &http.Client{Timeout: waitLimit}
	for _, tt := range []struct {
		path   string
		status int
		cause  string
	}{
		{"/", http.StatusBadGateway, "connect_failure"},
		{"/api/x", http.StatusServiceUnavailable, "no_endpoints"},
	} {
		start := time.Now()
		resp, _, body := get(t, c, "http://127.0.0.1:9080"+tt.path)
		if resp.StatusCode != tt.status || resp.Header.Get("X-Outrigger-Error") != tt.cause {
			t.Errorf("%s: %d X-Outrigger-Error=%q %q; want %d %s", tt.path, resp.StatusCode,
				resp.Header.Get("X-Outrigger-Error"), body, tt.status, tt.cause)
		}
		t.Logf("%s answered %d in %v", tt.path, resp.StatusCode, time.Since(start))
	}
}
