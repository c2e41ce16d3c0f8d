package e2e

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The resilience tests run their own config: real echo backends on fixed
// ports of their own, found through a services file, behind the real
// binary; the admin server is on the demo's 15000, where getJSON looks.
var resiliencePorts = []string{"15000", "9600", "9601", "9602", "9611", "9612", "9621", "9622", "9631", "9632"}

// resilienceEndpoints is the part of /endpoints these tests read.
type resilienceEndpoints struct {
	Upstreams []struct {
		Service   string `json:"service"`
		Endpoints []resilienceEndpoint
	} `json:"upstreams"`
}

type resilienceEndpoint struct {
	ID       string `json:"id"`
	Eligible bool   `json:"eligible"`
	Picks    uint64 `json:"picks"`
	Breaker  *struct {
		State     string     `json:"state"`
		Trips     int        `json:"trips"`
		OpenUntil *time.Time `json:"open_until"`
	} `json:"breaker"`
	Outlier *struct {
		Ejected      bool       `json:"ejected"`
		Ejections    int        `json:"ejections"`
		EjectedUntil *time.Time `json:"ejected_until"`
		Reason       string     `json:"reason"`
	} `json:"outlier"`
	Health *struct {
		Healthy bool `json:"healthy"`
	} `json:"health"`
}

// endpointStatus returns the /endpoints entry of endpoint id of service
// (the file source prefixes ids with its name: local/id).
func endpointStatus(t *testing.T, service, id string) resilienceEndpoint {
	t.Helper()
	var page resilienceEndpoints
	if code, body := getJSON(t, "http://127.0.0.1:15000/endpoints", &page); code != http.StatusOK {
		t.Fatalf("/endpoints = %d %s", code, body)
	}
	for _, u := range page.Upstreams {
		if u.Service != service {
			continue
		}
		for _, e := range u.Endpoints {
			if e.ID == "local/"+id {
				return e
			}
		}
	}
	t.Fatalf("/endpoints has no endpoint %s of %s: %+v", id, service, page)
	return resilienceEndpoint{}
}

// pollEndpoint polls /endpoints until cond holds for endpoint id of
// service, calling between (if not nil) before each new look; bounded by
// waitLimit.
func pollEndpoint(t *testing.T, service, id, what string, between func(), cond func(resilienceEndpoint) bool) resilienceEndpoint {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		e := endpointStatus(t, service, id)
		if cond(e) {
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/%s not %s within %v: %+v", service, id, what, waitLimit, e)
		}
		if between != nil {
			between()
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// requireResiliencePorts checks that every port of these tests is free,
// so that a stray process cannot answer in place of the one under test.
func requireResiliencePorts(t *testing.T) {
	t.Helper()
	for _, port := range resiliencePorts {
		ln, err := net.Listen("tcp", "127.0.0.1:"+port)
		if err != nil {
			t.Fatalf("port %s is taken by another process (%v); stop it and run the tests again", port, err)
		}
		ln.Close()
	}
}

// startResilience writes config and services into a temporary directory
// and starts Outrigger on them.
func startResilience(t *testing.T, config, services string) {
	t.Helper()
	dir := t.TempDir()
	config = "node: {name: resil-1, namespace: e2e}\nadmin: {listen: 127.0.0.1:15000}\n" +
		"discovery: [{name: local, file: {path: services.yaml}}]\n" + config
	for name, content := range map[string]string{"outrigger.yaml": config, "services.yaml": services} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	startOutrigger(t, dir)
}

func startEcho(t *testing.T, name, addr string, args ...string) *process {
	t.Helper()
	p := start(t, "echo", append([]string{"-name", name, "-listen", addr}, args...)...)
	waitDial(t, addr)
	return p
}

// An active HTTP health check takes a killed backend out of rotation
// before any request is sent to it: with connect_attempts 1 (no retry on
// another endpoint) every request after the check said so succeeds, and
// none is picked for the dead backend.
func TestResilienceHealthCheckRemovesKilledBackend(t *testing.T) {
	requireResiliencePorts(t)
	startEcho(t, "web-a", "127.0.0.1:9611", "-mode", "http")
	dead := startEcho(t, "web-b", "127.0.0.1:9612", "-mode", "http")
	startResilience(t, `outbound:
  - {name: web, listen: 127.0.0.1:9600, protocol: http, service: web.e2e, connect_attempts: 1}
upstreams:
  web.e2e:
    health_check:
      type: http
      interval: 50ms
      timeout: 1s
      unhealthy_threshold: 2
      http: {path: /healthz, expected_statuses: [200-299]}
`, `services:
  - name: web.e2e
    endpoints:
      - {id: web-a, address: 127.0.0.1, port: 9611}
      - {id: web-b, address: 127.0.0.1, port: 9612}
`)
	client := &http.Client{Timeout: waitLimit}
	// Both serve while both are healthy, so the dead one would be picked
	// if the check did not remove it.
	seen := map[string]int{}
	for range 10 {
		resp, a, body := get(t, client, "http://127.0.0.1:9600/")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("before the kill: %d %s", resp.StatusCode, body)
		}
		seen[a.Name]++
	}
	if seen["web-a"] == 0 || seen["web-b"] == 0 {
		t.Fatalf("before the kill requests went to %v; want both backends", seen)
	}
	if e := endpointStatus(t, "web.e2e", "web-b"); e.Health == nil || !e.Health.Healthy {
		t.Fatalf("web-b before the kill: %+v, want healthy", e)
	}

	dead.cmd.Process.Kill()
	<-dead.done
	// Not eligible means the picker without web-b is published.
	e := pollEndpoint(t, "web.e2e", "web-b", "unhealthy and out of the picker", nil, func(e resilienceEndpoint) bool {
		return e.Health != nil && !e.Health.Healthy && !e.Eligible
	})
	picks := e.Picks

	for i := range 20 {
		resp, a, body := get(t, client, "http://127.0.0.1:9600/")
		if resp.StatusCode != http.StatusOK || a.Name != "web-a" {
			t.Fatalf("request %d after web-b was marked unhealthy: %d from %q: %s", i, resp.StatusCode, a.Name, body)
		}
	}
	if e := endpointStatus(t, "web.e2e", "web-b"); e.Picks != picks || e.Health.Healthy {
		t.Errorf("web-b after 20 requests: %+v; want still unhealthy and picked %d times, as before", e, picks)
	}
}

// An L4 listener with a circuit breaker: connects refused by one endpoint
// trip its breaker; connect_attempts lets every client connection succeed
// on the other endpoint meanwhile; while the breaker is open the endpoint
// is not picked at all, so no connect is attempted to it.
func TestResilienceTCPBreakerOpensOnRefusedConnects(t *testing.T) {
	requireResiliencePorts(t)
	startEcho(t, "tcp-a", "127.0.0.1:9621")
	// Nothing listens on 9622 (checked above).
	startResilience(t, `outbound:
  - {name: tcp, listen: 127.0.0.1:9601, service: tcp.e2e, connect_attempts: 2}
upstreams:
  tcp.e2e:
    circuit_breaker: {consecutive_failures: 3, open: 10m}
`, `services:
  - name: tcp.e2e
    endpoints:
      - {id: tcp-a, address: 127.0.0.1, port: 9621}
      - {id: tcp-b, address: 127.0.0.1, port: 9622}
`)
	connect := func() {
		c := dial(t, "127.0.0.1:9601")
		if c.backend != "tcp-a" {
			t.Fatalf("connection greeted by %q, want tcp-a (tcp-b refuses)", c.backend)
		}
		c.roundTrip(t, "ping")
		c.Close()
	}
	if e := endpointStatus(t, "tcp.e2e", "tcp-b"); e.Breaker == nil || e.Breaker.State != "closed" || e.Picks != 0 {
		t.Fatalf("tcp-b at the start: %+v, want a closed breaker and no picks", e)
	}
	e := pollEndpoint(t, "tcp.e2e", "tcp-b", "with its breaker open and out of the picker", connect, func(e resilienceEndpoint) bool {
		return e.Breaker.State == "open" && !e.Eligible
	})
	// Exactly 3: the breaker opens inside the third failed pick's Done,
	// and Pick reads its state before handing out the endpoint.
	if e.Picks != 3 || e.Breaker.Trips != 1 || e.Breaker.OpenUntil == nil {
		t.Errorf("tcp-b once open: %+v; want 3 picks (consecutive_failures), 1 trip, an open_until", e)
	}
	for range 20 {
		connect()
	}
	after := endpointStatus(t, "tcp.e2e", "tcp-b")
	if after.Picks != e.Picks || after.Breaker.State != "open" {
		t.Errorf("tcp-b after 20 more connections: %+v; want still open and picked %d times, as when it opened", after, e.Picks)
	}
	if a := endpointStatus(t, "tcp.e2e", "tcp-a"); a.Breaker.State != "closed" || !a.Eligible {
		t.Errorf("tcp-a: %+v, want closed and eligible", a)
	}
}

// Outlier detection through the HTTP engine: a backend that answers every
// request with 503 is ejected after consecutive_5xx of them, /endpoints
// says so and why, and it gets no more requests while ejected.
func TestResilienceOutlierEjectsBackendAnswering503(t *testing.T) {
	requireResiliencePorts(t)
	startEcho(t, "flaky-a", "127.0.0.1:9631", "-mode", "http")
	startEcho(t, "flaky-b", "127.0.0.1:9632", "-mode", "http", "-fail-every", "1")
	startResilience(t, `outbound:
  - {name: flaky, listen: 127.0.0.1:9602, protocol: http, service: flaky.e2e}
upstreams:
  flaky.e2e:
    outlier_detection: {consecutive_5xx: 3, base_ejection_time: 10m, max_ejection_percent: 50}
`, `services:
  - name: flaky.e2e
    endpoints:
      - {id: flaky-a, address: 127.0.0.1, port: 9631}
      - {id: flaky-b, address: 127.0.0.1, port: 9632}
`)
	client := &http.Client{Timeout: waitLimit}
	failures := 0
	request := func() {
		resp, a, body := get(t, client, "http://127.0.0.1:9602/")
		switch {
		case resp.StatusCode == http.StatusOK && a.Name == "flaky-a":
		case resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("X-Echo-Name") == "flaky-b":
			failures++
		default:
			t.Fatalf("unexpected answer %d from %q: %s", resp.StatusCode, resp.Header.Get("X-Echo-Name"), body)
		}
	}
	// Not eligible means the picker without flaky-b is published: the
	// ejection is decided on the balancer's control goroutine, after the
	// third 503, so a request sent meanwhile may still reach flaky-b.
	e := pollEndpoint(t, "flaky.e2e", "flaky-b", "ejected and out of the picker", request, func(e resilienceEndpoint) bool {
		return e.Outlier != nil && e.Outlier.Ejected && !e.Eligible
	})
	if e.Outlier.Reason != "consecutive-5xx" || e.Outlier.Ejections != 1 || e.Outlier.EjectedUntil == nil {
		t.Errorf("flaky-b once ejected: %+v; want reason consecutive-5xx, 1 ejection, an ejected_until", *e.Outlier)
	}
	if e.Picks < 3 || uint64(failures) != e.Picks {
		t.Errorf("flaky-b was ejected after %d picks with %d 503s seen by the client; want at least 3 (consecutive_5xx), one 503 per pick", e.Picks, failures)
	}
	seen := failures
	for range 20 {
		request()
	}
	if failures != seen {
		t.Errorf("the client saw %d 503s after the ejection; want none", failures-seen)
	}
	after := endpointStatus(t, "flaky.e2e", "flaky-b")
	if after.Picks != e.Picks || !after.Outlier.Ejected {
		t.Errorf("flaky-b after 20 more requests: %+v; want still ejected and picked %d times", after, e.Picks)
	}
	if a := endpointStatus(t, "flaky.e2e", "flaky-a"); a.Outlier.Ejected || !a.Eligible {
		t.Errorf("flaky-a: %+v, want in rotation", a)
	}
}
