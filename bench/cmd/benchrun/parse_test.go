package main

import (
	"os"
	"strings"
	"testing"
)

func TestParseWrk(t *testing.T) {
	out := `Running 5s test @ http://127.0.0.1:18200/
  2 threads and 64 connections
  120000 requests in 5.00s, 140.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 3
Requests/sec:  23999.50
Transfer/sec:     28.00MB`
	m, ok, _, err := parseWrk(out)
	if err != nil || !ok || m["rps"] != 23999.50 || m["errors"] != 6 {
		t.Errorf("parseWrk = %v, %v, %v", m, ok, err)
	}
}

func TestParseH2load(t *testing.T) {
	out := `finished in 5.00s, 9286.40 req/s, 10.51MB/s
requests: 46432 total, 46560 started, 46432 done, 46430 succeeded, 2 failed, 0 errored, 0 timeout
status codes: 46432 2xx, 0 3xx, 0 4xx, 0 5xx
                     min         max         mean         sd        +/- sd
time for request:      245us     40.12ms     13.61ms      3.21ms    70.00%`
	m, ok, _, err := parseH2load(out)
	if err != nil || !ok || m["rps"] != 9286.40 || m["errors"] != 2 || m["mean_us"] != 13610 {
		t.Errorf("parseH2load = %v, %v, %v", m, ok, err)
	}
	if _, _, _, err := parseH2load("h2load: connect refused"); err == nil {
		t.Error("no error for output without results")
	}
}

func TestStatFieldsSkipsCommandWithSpaces(t *testing.T) {
	f := statFields("42 (my proc) S 1 42 42 0 -1 4194560 1 0 0 0 7 3 0 0 20 0 1 0")
	if len(f) < 13 || f[0] != "S" || f[1] != "1" || f[11] != "7" || f[12] != "3" {
		t.Errorf("statFields = %q", f)
	}
}

func TestSummaryMedianAndInvalidFallback(t *testing.T) {
	c := testCase{scenario: "B4", variant: "c=1", targets: []string{"direct", "outrigger"}}
	r := &results{Runs: []run{
		{Scenario: "B4", Variant: "c=1", Target: "direct", Valid: true, Metrics: map[string]float64{"p50_us": 100}},
		{Scenario: "B4", Variant: "c=1", Target: "direct", Valid: true, Metrics: map[string]float64{"p50_us": 300}},
		{Scenario: "B4", Variant: "c=1", Target: "direct", Valid: false, Metrics: map[string]float64{"p50_us": 9000}},
		{Scenario: "B4", Variant: "c=1", Target: "direct", Valid: true, Metrics: map[string]float64{"p50_us": 200}},
		{Scenario: "B4", Variant: "c=1", Target: "outrigger", Valid: false, Metrics: map[string]float64{"p50_us": 500}},
	}}
	r.summarize([]testCase{c})
	d, _ := r.get(key{"B4", "c=1", "direct"}, "p50_us")
	if d.Median != 200 || d.Min != 100 || d.Max != 300 || d.N != 3 || d.Invalid {
		t.Errorf("direct summary = %+v", d)
	}
	o, _ := r.get(key{"B4", "c=1", "outrigger"}, "p50_us")
	if o.Median != 500 || !o.Invalid {
		t.Errorf("outrigger summary = %+v, want the invalid run marked", o)
	}
	if got := r.cell(key{"B4", "c=1", "outrigger"}, column{"", "p50_us", "added", "%+.0f"}); got != "+300 †" {
		t.Errorf("added cell = %q", got)
	}
	if got := r.cell(key{"B4", "c=1", "direct"}, column{"", "p50_us", "", "%.0f"}); got != "200 (100–300)" {
		t.Errorf("cell = %q", got)
	}
}

func TestSlug(t *testing.T) {
	if got := slug("ghz 1000 req/s, c=16"); got != "ghz-1000-req-s-c-16" || strings.Contains(got, " ") {
		t.Errorf("slug = %q", got)
	}
}

func TestWriteDocsKeepsFindings(t *testing.T) {
	path := t.TempDir() + "/benchmarks.md"
	if err := writeDocs(path, "table one\n", "s1"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	s := strings.Replace(string(b), "## Latest results\n", "## Findings\n\nhand-written\n\n## Latest results\n", 1)
	os.WriteFile(path, []byte(s), 0o644)
	if err := writeDocs(path, "table two\n", "s2"); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(path)
	got := string(b)
	if !strings.Contains(got, "## Findings\n\nhand-written\n\n## Latest results\n\nFrom `bench/results/s2.json`.\n\ntable two\n") ||
		strings.Contains(got, "table one") || !strings.HasPrefix(got, "# Benchmarks\n") {
		t.Errorf("docs after second write:\n%s", got)
	}
}
