package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The metrics test uses ports 9680-9699 only: admin 9680, listeners
// 9681-9682, backends 9690-9693 (9692 stays closed).
const metricsConfig = `admin: {listen: 127.0.0.1:9680}
discovery: [{name: local, file: {path: services.yaml}}]
outbound:
  - name: web
    listen: 127.0.0.1:9681
    protocol: http
    connect_attempts: 1
    routes:
      - {name: ok, match: {path: {value: /ok}}, backends: [{service: ok.e2e}]}
      - {name: fail, match: {path: {value: /fail}}, backends: [{service: fail.e2e}]}
      - {name: dead, match: {path: {value: /dead}}, backends: [{service: dead.e2e}]}
  - name: db
    listen: 127.0.0.1:9682
    service: tcp.e2e
`

const metricsServices = `services:
  - {name: ok.e2e, endpoints: [{address: 127.0.0.1, port: 9690}]}
  - {name: fail.e2e, endpoints: [{address: 127.0.0.1, port: 9691}]}
  - {name: dead.e2e, endpoints: [{address: 127.0.0.1, port: 9692}]}
  - {name: tcp.e2e, endpoints: [{address: 127.0.0.1, port: 9693}]}
`

// The real binary's /metrics, read with the Prometheus text parser,
// counts exactly the traffic sent: 200s, a backend's 503s, the proxy's
// own 502s and 404s with their causes, a duration sample per request,
// and TCP connections with their bytes each way.
func TestMetricsCountTraffic(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "outrigger.yaml"), metricsConfig)
	writeFile(t, filepath.Join(dir, "services.yaml"), metricsServices)
	start(t, "echo", "-name", "ok-1", "-listen", "127.0.0.1:9690", "-mode", "http")
	start(t, "echo", "-name", "fail-1", "-listen", "127.0.0.1:9691", "-mode", "http", "-fail-every", "1")
	start(t, "echo", "-name", "tcp-1", "-listen", "127.0.0.1:9693")
	for _, a := range []string{"127.0.0.1:9690", "127.0.0.1:9691", "127.0.0.1:9693"} {
		waitDial(t, a)
	}
	p := start(t, "outrigger", "run", "-c", filepath.Join(dir, "outrigger.yaml"))
	deadline := time.Now().Add(waitLimit)
	for code, _ := getJSON(t, "http://127.0.0.1:9680/ready", nil); code != http.StatusOK; code, _ = getJSON(t, "http://127.0.0.1:9680/ready", nil) {
		if time.Now().After(deadline) {
			t.Fatalf("not ready within %v:\n%s", waitLimit, p.output())
		}
		time.Sleep(20 * time.Millisecond)
	}

	client := &http.Client{Transport: &http.Transport{}, Timeout: waitLimit}
	defer client.CloseIdleConnections()
	for _, r := range []struct {
		path      string
		n, status int
	}{{"/ok", 4, 200}, {"/fail", 3, 503}, {"/dead", 2, 502}, {"/nowhere", 1, 404}} {
		for range r.n {
			resp, err := client.Get("http://127.0.0.1:9681" + r.path)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != r.status {
				t.Fatalf("GET %s: %d, want %d", r.path, resp.StatusCode, r.status)
			}
		}
	}
	// Two TCP connections: the greeting line, then one line echoed.
	var wrote, read int
	for i := range 2 {
		c, err := net.DialTimeout("tcp", "127.0.0.1:9682", waitLimit)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(waitLimit))
		r := bufio.NewReader(c)
		greeting, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("no greeting: %v", err)
		}
		msg := fmt.Sprintf("hello %d\n", i)
		io.WriteString(c, msg)
		if echo, err := r.ReadString('\n'); err != nil || echo != msg {
			t.Fatalf("echo %q, %v; want %q", echo, err, msg)
		}
		c.Close()
		wrote += len(msg)
		read += len(greeting) + len(msg)
	}

	var fams map[string]*dto.MetricFamily
	deadline = time.Now().Add(waitLimit)
	for {
		fams = scrapeMetrics(t, "http://127.0.0.1:9680/metrics")
		got := flatten(fams, "outrigger_tcp_connections_closed_total")
		if got[`outrigger_tcp_connections_closed_total{destination_service="tcp.e2e",listener="db",reason="eof"}`] == 2 &&
			sum(flatten(fams, "outrigger_requests_total")) == 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("traffic not counted within %v: %v", waitLimit, got)
		}
		time.Sleep(20 * time.Millisecond)
	}

	got := flatten(fams, "outrigger_requests_total", "outrigger_request_duration_seconds",
		"outrigger_proxy_errors_total", "outrigger_upstream_attempts_total",
		"outrigger_tcp_connections_opened_total", "outrigger_tcp_connections_closed_total",
		"outrigger_tcp_connections_active", "outrigger_tcp_received_bytes_total", "outrigger_tcp_sent_bytes_total")
	want := map[string]float64{
		`outrigger_requests_total{destination_service="ok.e2e",listener="web",method="GET",response_code="200",response_code_class="2xx",route="ok"}`:     4,
		`outrigger_requests_total{destination_service="fail.e2e",listener="web",method="GET",response_code="503",response_code_class="5xx",route="fail"}`: 3,
		`outrigger_requests_total{destination_service="dead.e2e",listener="web",method="GET",response_code="502",response_code_class="5xx",route="dead"}`: 2,
		`outrigger_requests_total{destination_service="",listener="web",method="GET",response_code="404",response_code_class="4xx",route=""}`:             1,

		`outrigger_request_duration_seconds_count{destination_service="ok.e2e",listener="web",response_code_class="2xx",route="ok"}`:     4,
		`outrigger_request_duration_seconds_count{destination_service="fail.e2e",listener="web",response_code_class="5xx",route="fail"}`: 3,
		`outrigger_request_duration_seconds_count{destination_service="dead.e2e",listener="web",response_code_class="5xx",route="dead"}`: 2,
		`outrigger_request_duration_seconds_count{destination_service="",listener="web",response_code_class="4xx",route=""}`:             1,

		`outrigger_proxy_errors_total{cause="connect_failure",destination_service="dead.e2e",listener="web",route="dead"}`: 2,
		`outrigger_proxy_errors_total{cause="no_route",destination_service="",listener="web",route=""}`:                    1,

		`outrigger_upstream_attempts_total{destination_service="ok.e2e",listener="web",route="ok"}`:     4,
		`outrigger_upstream_attempts_total{destination_service="fail.e2e",listener="web",route="fail"}`: 3,
		`outrigger_upstream_attempts_total{destination_service="dead.e2e",listener="web",route="dead"}`: 2,
		`outrigger_upstream_attempts_total{destination_service="",listener="web",route=""}`:             0,

		`outrigger_tcp_connections_opened_total{destination_service="tcp.e2e",listener="db"}`:              2,
		`outrigger_tcp_connections_closed_total{destination_service="tcp.e2e",listener="db",reason="eof"}`: 2,
		`outrigger_tcp_connections_active{destination_service="tcp.e2e",listener="db"}`:                    0,
		`outrigger_tcp_received_bytes_total{destination_service="tcp.e2e",listener="db"}`:                  float64(wrote),
		`outrigger_tcp_sent_bytes_total{destination_service="tcp.e2e",listener="db"}`:                      float64(read),
	}
	if d := cmp.Diff(got, want); d != "" {
		t.Errorf("/metrics (-got +want):\n%s", d)
	}
	if n := sum(flatten(fams, "outrigger_build_info")); n != 1 {
		t.Errorf("outrigger_build_info: %v series, want 1", n)
	}
}

func scrapeMetrics(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	return fams
}

// flatten renders the named families' series as name{label="value",...}
// → value (a histogram as name_count → its sample count).
func flatten(fams map[string]*dto.MetricFamily, names ...string) map[string]float64 {
	out := map[string]float64{}
	for _, name := range names {
		f := fams[name]
		if f == nil {
			continue
		}
		for _, m := range f.Metric {
			var ls []string
			for _, l := range m.Label {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(ls)
			labels := "{" + strings.Join(ls, ",") + "}"
			switch {
			case m.Counter != nil:
				out[name+labels] = m.Counter.GetValue()
			case m.Gauge != nil:
				out[name+labels] = m.Gauge.GetValue()
			case m.Histogram != nil:
				out[name+"_count"+labels] = float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return out
}

func sum(m map[string]float64) float64 {
	var n float64
	for _, v := range m {
		n += v
	}
	return n
}
