package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outrigger-mesh/outrigger/proxy"
)

// Every outrigger_ metric the registry exposes has a row in
// docs/metrics.md and nothing else does; the Grafana dashboard queries
// only metrics that exist.
func TestMetricsDocumented(t *testing.T) {
	m := newMetrics(&stateCollector{version: "dev"})
	m.ObserveRequest(&proxy.RequestRecord{Listener: "l", Method: "GET", Status: 502, Cause: "connect_failure"})
	conn := &proxy.ConnRecord{Listener: "l", Reason: "eof"}
	m.ConnOpened(conn)
	m.ConnClosed(conn)
	// The state collector's families, whatever their values: from its
	// descriptions (a scrape shows only those with series).
	exposed := map[string]bool{}
	for name := range scrape(t, m) {
		if strings.HasPrefix(name, "outrigger_") {
			exposed[name] = true
		}
	}
	descs := make(chan *prometheus.Desc, 100)
	(&stateCollector{}).Describe(descs)
	close(descs)
	fqName := regexp.MustCompile(`fqName: "([a-z_]+)"`)
	for d := range descs {
		m := fqName.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("no name in %s", d)
		}
		exposed[m[1]] = true
	}

	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, match := range regexp.MustCompile("(?m)^\\| `(outrigger_[a-z_]+)` \\|").FindAllSubmatch(doc, -1) {
		documented[string(match[1])] = true
	}
	if d := cmp.Diff(sortedKeys(exposed), sortedKeys(documented)); d != "" {
		t.Errorf("metrics exposed (-) and documented in docs/metrics.md (+):\n%s", d)
	}

	dash, err := os.ReadFile("../../examples/grafana/outrigger.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range regexp.MustCompile(`outrigger_[a-z_]+`).FindAll(dash, -1) {
		n := string(name)
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")
		if !exposed[n] && !exposed[base] {
			t.Errorf("the dashboard queries %s, which is not exposed", n)
		}
	}
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
