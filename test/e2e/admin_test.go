package e2e

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

type endpointsPage struct {
	Upstreams []struct {
		Service   string `json:"service"`
		Policy    string `json:"policy"`
		Endpoints []struct {
			ID       string `json:"id"`
			Address  string `json:"address"`
			Source   string `json:"source"`
			State    string `json:"state"`
			Locality struct {
				Cluster string `json:"cluster"`
				Zone    string `json:"zone"`
			} `json:"locality"`
			InFlight int64 `json:"in_flight"`
		} `json:"endpoints"`
	} `json:"upstreams"`
}

// /endpoints shows each endpoint with its source, state, locality and the
// connections open to it right now.
func TestAdminEndpointsShowInFlightConnections(t *testing.T) {
	startOutrigger(t, demo(t))
	c := dial(t, proxyAddr)
	c.roundTrip(t, "hold")

	var page endpointsPage
	if code, body := getJSON(t, "http://127.0.0.1:15000/endpoints", &page); code != http.StatusOK {
		t.Fatalf("/endpoints = %d %s", code, body)
	}
	echo := -1
	var services []string
	for i, u := range page.Upstreams {
		services = append(services, u.Service+"/"+u.Policy)
		if u.Service == "echo.demo" {
			echo = i
		}
	}
	if diff := cmp.Diff(services, []string{"echo.demo/round_robin", "api.demo/least_conn", "web.demo/least_conn", "grpc.demo/round_robin"}); diff != "" {
		t.Fatalf("upstreams (-got +want):\n%s", diff)
	}
	type row struct {
		ID, Address, Source, State, Cluster, Zone string
		InFlight                                  int64
	}
	var got []row
	for _, e := range page.Upstreams[echo].Endpoints {
		got = append(got, row{e.ID, e.Address, e.Source, e.State, e.Locality.Cluster, e.Locality.Zone, e.InFlight})
	}
	var want []row
	for i, name := range []string{"echo-1", "echo-2", "echo-3"} {
		var inFlight int64
		if name == c.backend {
			inFlight = 1
		}
		want = append(want, row{"local/" + name, "127.0.0.1:910" + string(rune('1'+i)), "local", "ready", "local", "local-a", inFlight})
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("/endpoints (-got +want):\n%s", diff)
	}

	c.Close()
	deadline := time.Now().Add(waitLimit)
	for {
		getJSON(t, "http://127.0.0.1:15000/endpoints", &page)
		var total int64
		for _, e := range page.Upstreams[echo].Endpoints {
			total += e.InFlight
		}
		if total == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("in_flight still %d after the connection closed", total)
		}
		time.Sleep(10 * time.Millisecond)
	}

	var cfg struct {
		Outbound []struct{ Listen, Service, Balancer, ConnectTimeout string } `json:"outbound"`
	}
	if code, body := getJSON(t, "http://127.0.0.1:15000/config", &cfg); code != http.StatusOK || len(cfg.Outbound) != 3 ||
		cfg.Outbound[0].Listen != proxyAddr || cfg.Outbound[0].Service != "echo.demo" {
		t.Errorf("/config = %d %s", code, body)
	}
	if code, body := getJSON(t, "http://127.0.0.1:15000/live", nil); code != http.StatusOK {
		t.Errorf("/live = %d %s", code, body)
	}
}

// Until an upstream has its first discovery answer the proxy is not ready,
// and /ready says why; the supervisor keeps retrying the failed source.
func TestReadyWaitsForFirstDiscoveryAnswer(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "outrigger.yaml"), `discovery: [{name: local, file: {path: services.yaml}}]
outbound: [{name: echo, listen: "127.0.0.1:9000", service: echo.demo}]
`)
	p := start(t, "outrigger", "run", "-c", filepath.Join(dir, "outrigger.yaml"))
	deadline := time.Now().Add(waitLimit)
	for {
		code, body := getJSON(t, "http://127.0.0.1:15000/ready", nil)
		if code == http.StatusServiceUnavailable {
			if !strings.Contains(body, "upstream echo.demo: waiting for its first discovery answer") {
				t.Errorf("/ready 503 body %s does not name the waiting upstream", body)
			}
			break
		}
		if code == http.StatusOK {
			t.Fatal("/ready = 200 with no services file")
		}
		if time.Now().After(deadline) {
			t.Fatalf("admin never answered: %s\n%s", body, p.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The file appears: the source recovers and the proxy becomes ready.
	for i := 1; i <= 3; i++ {
		start(t, "echo", "-name", "echo-"+string(rune('0'+i)), "-listen", "127.0.0.1:910"+string(rune('0'+i)))
	}
	writeFile(t, filepath.Join(dir, "services.yaml"), `services:
  - name: echo.demo
    endpoints: [{address: 127.0.0.1, port: 9101}]
`)
	for {
		code, body := getJSON(t, "http://127.0.0.1:15000/ready", nil)
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline.Add(waitLimit)) {
			t.Fatalf("/ready = %d %s after the services file appeared", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitDial(t, "127.0.0.1:9101")
	if c := dial(t, proxyAddr); c.backend != "echo-1" {
		t.Errorf("connection reached %s, want echo-1", c.backend)
	}
	if !strings.Contains(p.output(), "services.yaml") {
		t.Errorf("the source failure log does not name the missing file:\n%s", p.output())
	}
}

func TestHelpTeaches(t *testing.T) {
	out, err := exec.Command(filepath.Join(bin, "outrigger"), "run", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("run --help: %v\n%s", err, out)
	}
	for _, want := range []string{"OUTRIGGER_CONFIG", "OUTRIGGER_LOG_LEVEL", "SIGHUP", "drain.timeout", "docs/configuration.md"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("run --help does not mention %s:\n%s", want, out)
		}
	}
	cmd := exec.Command(filepath.Join(bin, "outrigger"), "run")
	cmd.Env = append(os.Environ(), "OUTRIGGER_CONFIG=")
	out, err = cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "pass -c FILE") {
		t.Errorf("run with no config: %v %s; want exit 1 saying how to pass a config", err, out)
	}
}
