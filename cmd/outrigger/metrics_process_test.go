package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
)

// metricsConfig is an http listener "web" with three routes (ok and fail
// to web.test, dead to dead.test where nothing listens) and a tcp
// listener "db" to b.test; web.test has circuit breakers. extra is more
// outbound entries.
func metricsConfig(web, db, extra string) string {
	return rigConfig(`  - name: web
    listen: "`+web+`"
    protocol: http
    connect_attempts: 1
    routes:
      - {name: ok, match: {path: {value: /ok}}, backends: [{service: web.test}]}
      - {name: fail, match: {path: {value: /fail}}, backends: [{service: web.test}]}
      - {name: dead, match: {path: {value: /dead}}, backends: [{service: dead.test}]}
  - name: db
    listen: "`+db+`"
    service: b.test
`+extra) + `upstreams:
  web.test: {circuit_breaker: {consecutive_failures: 100, open: 30s}}
`
}

// metricsServices lists web.test, dead.test and b.test, one endpoint each.
func metricsServices(web, dead, b string) string {
	var s strings.Builder
	s.WriteString("services:\n")
	for _, svc := range []struct{ name, addr string }{{"web.test", web}, {"dead.test", dead}, {"b.test", b}} {
		host, port, _ := net.SplitHostPort(svc.addr)
		fmt.Fprintf(&s, "  - name: %s\n    endpoints: [{address: %s, port: %s}]\n", svc.name, host, port)
	}
	return s.String()
}

// get sends n GETs of path to addr and checks each status.
func getN(t *testing.T, c *http.Client, addr, path string, n, status int) {
	t.Helper()
	for range n {
		resp, err := c.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != status {
			t.Fatalf("GET %s: %d, want %d", path, resp.StatusCode, status)
		}
	}
}

// scrapeAdmin GETs /metrics from the process's admin server and parses it.
func (r *reloadRig) scrapeAdmin() map[string]*dto.MetricFamily {
	r.t.Helper()
	resp, err := http.Get("http://" + r.p.admin.Addr().String() + "/metrics")
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		r.t.Fatalf("/metrics: %s", resp.Status)
	}
	return families(r.t, resp.Body)
}

// scrapeUntil scrapes until cond holds (observers run after the client
// has its response, and TCP closes are counted when both sides closed).
func (r *reloadRig) scrapeUntil(what string, cond func(map[string]*dto.MetricFamily) bool) map[string]*dto.MetricFamily {
	r.t.Helper()
	var fams map[string]*dto.MetricFamily
	r.waitFor(what, func() bool { fams = r.scrapeAdmin(); return cond(fams) })
	return fams
}

// total sums the samples of series(fams, name).
func total(fams map[string]*dto.MetricFamily, name string) float64 {
	var n float64
	for k, v := range series(fams, name) {
		if !strings.HasSuffix(name, "_count") || strings.HasPrefix(k, name) {
			n += v
		}
	}
	return n
}

// Traffic of known shape through a process built by cmd/outrigger's own
// wiring shows up in /metrics, read with the Prometheus text parser, with
// exact counts: 200s and a backend's 503s, the proxy's 502 and 404 with
// their causes, duration samples, attempts, TCP connections and bytes;
// picks, breaker state and discovery endpoints from the collectors; and a
// reload that adds a listener keeps observing, and is counted.
func TestMetricsEndToEnd(t *testing.T) {
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/fail" {
			w.WriteHeader(503)
		}
		io.WriteString(w, "hello")
	}))
	defer web.Close()
	webAddr, dbAddr := freePort(t), freePort(t)
	r := startRig(t, metricsConfig(webAddr, dbAddr, ""), metricsServices(web.Listener.Addr().String(), freePort(t), echoGreeter(t, "b1")))
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()

	getN(t, client, webAddr, "/ok", 5, 200)
	getN(t, client, webAddr, "/fail", 3, 503)
	getN(t, client, webAddr, "/dead", 2, 502)
	getN(t, client, webAddr, "/nowhere", 4, 404)
	for range 3 {
		c := dialLine(t, dbAddr) // reads the 3-byte greeting "b1\n"
		c.echoes(t, "ping")      // 5 bytes each way
		c.Close()
	}

	fams := r.scrapeUntil("all traffic counted", func(f map[string]*dto.MetricFamily) bool {
		return total(f, "outrigger_requests_total") >= 14 && total(f, "outrigger_tcp_connections_closed_total") >= 3
	})
	got := series(fams, "outrigger_requests_total", "outrigger_request_duration_seconds",
		"outrigger_upstream_attempts_total", "outrigger_upstream_retries_total", "outrigger_proxy_errors_total",
		"outrigger_tcp_connections_opened_total", "outrigger_tcp_connections_closed_total",
		"outrigger_tcp_connections_active", "outrigger_tcp_received_bytes_total", "outrigger_tcp_sent_bytes_total",
		"outrigger_config_reloads_total", "outrigger_config_generation", "outrigger_config_last_reload_successful")
	okL, failL, deadL := "destination_service=web.test,listener=web", "destination_service=web.test,listener=web", "destination_service=dead.test,listener=web"
	none := "destination_service=,listener=web"
	db := "destination_service=b.test,listener=db"
	want := map[string]float64{
		"outrigger_requests_total{" + okL + ",method=GET,response_code=200,response_code_class=2xx,route=ok}":     5,
		"outrigger_requests_total{" + failL + ",method=GET,response_code=503,response_code_class=5xx,route=fail}": 3,
		"outrigger_requests_total{" + deadL + ",method=GET,response_code=502,response_code_class=5xx,route=dead}": 2,
		"outrigger_requests_total{" + none + ",method=GET,response_code=404,response_code_class=4xx,route=}":      4,

		"outrigger_request_duration_seconds_count{" + okL + ",response_code_class=2xx,route=ok}":     5,
		"outrigger_request_duration_seconds_count{" + failL + ",response_code_class=5xx,route=fail}": 3,
		"outrigger_request_duration_seconds_count{" + deadL + ",response_code_class=5xx,route=dead}": 2,
		"outrigger_request_duration_seconds_count{" + none + ",response_code_class=4xx,route=}":      4,

		"outrigger_upstream_attempts_total{" + okL + ",route=ok}":     5,
		"outrigger_upstream_attempts_total{" + failL + ",route=fail}": 3,
		"outrigger_upstream_attempts_total{" + deadL + ",route=dead}": 2,
		"outrigger_upstream_attempts_total{" + none + ",route=}":      0,
		"outrigger_upstream_retries_total{" + okL + ",route=ok}":      0,
		"outrigger_upstream_retries_total{" + failL + ",route=fail}":  0,
		"outrigger_upstream_retries_total{" + deadL + ",route=dead}":  0,
		"outrigger_upstream_retries_total{" + none + ",route=}":       0,

		"outrigger_proxy_errors_total{cause=connect_failure," + deadL + ",route=dead}": 2,
		"outrigger_proxy_errors_total{cause=no_route," + none + ",route=}":             4,

		"outrigger_tcp_connections_opened_total{" + db + "}":            3,
		"outrigger_tcp_connections_closed_total{" + db + ",reason=eof}": 3,
		"outrigger_tcp_connections_active{" + db + "}":                  0,
		"outrigger_tcp_received_bytes_total{" + db + "}":                15,
		"outrigger_tcp_sent_bytes_total{" + db + "}":                    24,

		"outrigger_config_reloads_total{result=success}": 0,
		"outrigger_config_reloads_total{result=failure}": 0,
		"outrigger_config_generation{}":                  1,
		"outrigger_config_last_reload_successful{}":      1,
	}
	if d := cmp.Diff(got, want); d != "" {
		t.Errorf("after the first traffic (-got +want):\n%s", d)
	}

	// From the collectors: picks per endpoint, breaker state, endpoints.
	state := map[string]float64{}
	for k, v := range series(fams, "outrigger_upstream_endpoint_picks_total", "outrigger_upstream_endpoint_breaker_state",
		"outrigger_upstream_endpoints_eligible", "outrigger_discovery_endpoints", "outrigger_build_info") {
		// Endpoint IDs and addresses carry ports; keep the rest.
		state[dropLabels(k, "endpoint", "address", "version", "go_version")] = v
	}
	wantState := map[string]float64{
		"outrigger_upstream_endpoint_picks_total{destination_service=web.test}":                   8,
		"outrigger_upstream_endpoint_picks_total{destination_service=dead.test}":                  2,
		"outrigger_upstream_endpoint_picks_total{destination_service=b.test}":                     3,
		"outrigger_upstream_endpoint_breaker_state{destination_service=web.test,state=closed}":    1,
		"outrigger_upstream_endpoint_breaker_state{destination_service=web.test,state=open}":      0,
		"outrigger_upstream_endpoint_breaker_state{destination_service=web.test,state=half-open}": 0,
		"outrigger_upstream_endpoints_eligible{destination_service=web.test}":                     1,
		"outrigger_upstream_endpoints_eligible{destination_service=dead.test}":                    1,
		"outrigger_upstream_endpoints_eligible{destination_service=b.test}":                       1,
		"outrigger_discovery_endpoints{service=web.test,source=local,state=ready}":                1,
		"outrigger_discovery_endpoints{service=dead.test,source=local,state=ready}":               1,
		"outrigger_discovery_endpoints{service=b.test,source=local,state=ready}":                  1,
		"outrigger_build_info{}": 1,
	}
	if d := cmp.Diff(state, wantState); d != "" {
		t.Errorf("state (-got +want):\n%s", d)
	}

	// A reload that adds a listener: its requests are observed too.
	if s := r.reload(metricsConfig(webAddr, dbAddr, `  - name: web2
    listen: "`+freePort(t)+`"
    protocol: http
    routes: [{name: ok, backends: [{service: web.test}]}]
`)); s.Generation != 2 {
		t.Fatalf("reload: %+v", s)
	}
	getN(t, client, r.addr("web2"), "/ok", 2, 200)
	getN(t, client, webAddr, "/ok", 1, 200)
	if s := r.reload("outbound: [{]"); s.Failures != 1 {
		t.Fatalf("bad reload: %+v", s)
	}
	fams = r.scrapeUntil("traffic after the reload counted", func(f map[string]*dto.MetricFamily) bool {
		return total(f, "outrigger_requests_total") >= 17
	})
	got = series(fams, "outrigger_requests_total", "outrigger_config_reloads_total", "outrigger_config_generation",
		"outrigger_config_last_reload_successful")
	for k := range got {
		if strings.Contains(k, "route=fail") || strings.Contains(k, "route=dead") || strings.Contains(k, "route=}") {
			delete(got, k) // as before
		}
	}
	want = map[string]float64{
		"outrigger_requests_total{" + okL + ",method=GET,response_code=200,response_code_class=2xx,route=ok}":                                6,
		"outrigger_requests_total{destination_service=web.test,listener=web2,method=GET,response_code=200,response_code_class=2xx,route=ok}": 2,
		"outrigger_config_reloads_total{result=success}":                                                                                     1,
		"outrigger_config_reloads_total{result=failure}":                                                                                     1,
		"outrigger_config_generation{}":                                                                                                      2,
		"outrigger_config_last_reload_successful{}":                                                                                          0,
	}
	if d := cmp.Diff(got, want); d != "" {
		t.Errorf("after the reloads (-got +want):\n%s", d)
	}
}

// dropLabels removes the named labels from a series key of series().
func dropLabels(key string, names ...string) string {
	open := strings.IndexByte(key, '{')
	var keep []string
	for _, l := range strings.Split(strings.TrimSuffix(key[open+1:], "}"), ",") {
		name, _, _ := strings.Cut(l, "=")
		drop := l == ""
		for _, n := range names {
			drop = drop || name == n
		}
		if !drop {
			keep = append(keep, l)
		}
	}
	return key[:open+1] + strings.Join(keep, ",") + "}"
}
