package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.uber.org/goleak"

	"github.com/outrigger-mesh/outrigger/resilience"
)

// retryHead has an http listener whose routes send to web.shop and
// api.shop (the second route has its own retry at line 8) and a tcp
// listener; the upstreams map follows from line 10.
const retryHead = `discovery: [{name: local, file: {path: s.yaml}}]
outbound:
  - {name: o, listen: 127.0.0.1:9001, service: orders.shop}
  - name: w
    listen: 127.0.0.1:9002
    protocol: http
    routes:
      - {match: {path: {value: /pay}}, backends: [{service: api.shop}], retry: {attempts: 3, on: [reset]}}
      - {backends: [{service: web.shop}]}
upstreams:
`

func TestParseConfigRetry(t *testing.T) {
	cfg := mustParse(t, retryHead+`  web.shop:
    retry:
      attempts: 4
      per_try_timeout: 200ms
      timeout: 2s
      backoff: {base: 10ms, max: 100ms}
      on: [connect-failure, reset, gateway-error, 429, unavailable]
      max_replay_body: 1024
      budget: {percent: 50, min_per_second: 0}
  api.shop:
    retry: {}
`)
	runs, err := retryRuns(nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]resilience.RetryConfig{}
	for svc, r := range runs {
		got[svc] = r.retry.Policy.Config()
		if r.retry.Budget == nil {
			t.Errorf("%s has no budget", svc)
		}
	}
	want := map[string]resilience.RetryConfig{
		"web.shop": {Attempts: 4, PerTryTimeout: 200 * time.Millisecond, Timeout: 2 * time.Second,
			On:          []string{"connect-failure", "reset", "gateway-error", "429", "unavailable"},
			BackoffBase: 10 * time.Millisecond, BackoffMax: 100 * time.Millisecond, MaxReplayBody: 1024},
		// An empty block: one retry on the failures where nothing was processed.
		"api.shop": {Attempts: 2, On: []string{"connect-failure", "refused-stream"},
			BackoffBase: 25 * time.Millisecond, BackoffMax: 250 * time.Millisecond, MaxReplayBody: 64 << 10},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("service policies (-got +want):\n%s", diff)
	}
	routes, err := routeRetries(cfg.Outbound[1])
	if err != nil {
		t.Fatal(err)
	}
	if len(routes) != 2 || routes[1] != nil || routes[0] == nil {
		t.Fatalf("route policies %v, want one for the first route only", routes)
	}
	if diff := cmp.Diff(routes[0].Config(), resilience.RetryConfig{Attempts: 3, On: []string{"reset"},
		BackoffBase: 25 * time.Millisecond, BackoffMax: 250 * time.Millisecond, MaxReplayBody: 64 << 10}); diff != "" {
		t.Errorf("route policy (-got +want):\n%s", diff)
	}
	// A reload with the same blocks keeps every setting (and so its
	// budget's counts); a changed block gets a new one.
	again, err := retryRuns(runs, mustParse(t, strings.Replace(retryHead, "attempts: 3", "attempts: 2", 1)+
		"  web.shop:\n    retry: {attempts: 4, per_try_timeout: 200ms, timeout: 2s, backoff: {base: 10ms, max: 100ms},"+
		" on: [connect-failure, reset, gateway-error, 429, unavailable], max_replay_body: 1024, budget: {percent: 50, min_per_second: 0}}\n"+
		"  api.shop:\n    retry: {attempts: 3}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if again["web.shop"] != runs["web.shop"] || again["api.shop"] == runs["api.shop"] {
		t.Errorf("after a reload web.shop kept %v (want true), api.shop kept %v (want false)",
			again["web.shop"] == runs["web.shop"], again["api.shop"] == runs["api.shop"])
	}
}

// /config shows a retry block with every default filled in.
func TestRetryConfigViewShowsDefaults(t *testing.T) {
	cfg := mustParse(t, retryHead+"  web.shop:\n    retry: {on: [503]}\n")
	var b strings.Builder
	for _, v := range []any{cfg.Upstreams["web.shop"].Retry, cfg.Outbound[1].Routes[0].Retry} {
		fmt.Fprintf(&b, "%s\n", mustJSON(t, v))
	}
	want := `{"attempts":2,"backoff":{"base":"25ms","max":"250ms"},"on":["503"],"max_replay_body":65536,"budget":{"percent":20,"min_per_second":10}}
{"attempts":3,"backoff":{"base":"25ms","max":"250ms"},"on":["reset"],"max_replay_body":65536}
`
	if b.String() != want {
		t.Errorf("retry blocks as /config shows them:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestParseConfigRetryErrors(t *testing.T) {
	const f = "o.yaml"
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{name: "attempts and durations", yaml: "  web.shop:\n    retry:\n      attempts: 11\n      per_try_timeout: 5s\n      timeout: 1s\n      backoff: {base: 1s, max: 10ms}\n",
			want: []string{
				f + `:13: upstreams.'web.shop'.retry.attempts: 11 is out of range 1..10 (1: no retries)`,
				f + `:16: upstreams.'web.shop'.retry.backoff.max: 10ms is less than base (1s)`,
				f + `:14: upstreams.'web.shop'.retry.per_try_timeout: 5s is longer than timeout (1s), which bounds all attempts`,
			}},
		{name: "conditions", yaml: "  web.shop:\n    retry: {on: [reset, 200, gateway_error]}\n",
			want: []string{
				f + `:12: upstreams.'web.shop'.retry.on[1]: status 200: only 4xx and 5xx statuses can be retried`,
				f + `:12: upstreams.'web.shop'.retry.on[2]: unknown retry condition "gateway_error" (want connect-failure, refused-stream, reset, 5xx, gateway-error, an HTTP status like 503, or a gRPC status like unavailable)`,
			}},
		{name: "budget", yaml: "  web.shop:\n    retry:\n      budget: {percent: 0, min_per_second: -1}\n      max_replay_body: -5\n",
			want: []string{
				f + `:14: upstreams.'web.shop'.retry.max_replay_body: -5 is negative (0 keeps no body)`,
				f + `:13: upstreams.'web.shop'.retry.budget.percent: 0 is out of range (0, 100] (to stop retries, set attempts: 1)`,
				f + `:13: upstreams.'web.shop'.retry.budget.min_per_second: -1 is out of range 0..1000000`,
			}},
		{name: "bad duration", yaml: "  web.shop:\n    retry: {per_try_timeout: soon}\n",
			want: []string{f + `:12: upstreams.'web.shop'.retry.per_try_timeout: invalid duration "soon": write it like 500ms, 5s or 1m`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig(f, []byte(retryHead+tc.yaml))
			if err == nil {
				t.Fatalf("no error for\n%s", tc.yaml)
			}
			if diff := cmp.Diff(strings.Split(err.Error(), "\n"), tc.want, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
				t.Errorf("errors (-got +want):\n%s", diff)
			}
		})
	}
	// A route's retry has no budget of its own.
	_, err := ParseConfig(f, []byte(strings.Replace(retryHead, "on: [reset]}", "on: [reset], budget: {percent: 10}}", 1)))
	want := f + `:8: outbound[1].routes[0].retry.budget: a retry budget is per upstream service: set it under upstreams.<service>.retry.budget`
	if err == nil || err.Error() != want {
		t.Errorf("route budget: %v\nwant: %s", err, want)
	}
}

// A changed retry block updates the listeners that send to the service in
// place; its balancer is not rebuilt.
func TestDiffConfigRetry(t *testing.T) {
	base := diffBase + "upstreams:\n  web.shop:\n    retry: {attempts: 2}\n"
	for _, tc := range []struct {
		name, from, to string
		want           diffView
	}{
		{name: "unchanged, other spelling", from: "retry: {attempts: 2}", to: "retry:\n      attempts: 2"},
		{name: "attempts changed", from: "attempts: 2", to: "attempts: 3", want: diffView{Updated: []string{"web"}}},
		{name: "block removed", from: "    retry: {attempts: 2}\n", to: "    circuit_breaker: {}\n",
			want: diffView{ServicesStop: []string{"web.shop"}, ServicesStart: map[string]string{"web.shop": "round_robin"}, Updated: []string{"web"}}},
		{name: "route retry added", from: "backends: [{service: api.shop}]}", to: "backends: [{service: api.shop}], retry: {attempts: 2}}",
			want: diffView{Updated: []string{"web"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(base, tc.from) {
				t.Fatalf("case edits text that is not there: %q", tc.from)
			}
			d := diffConfig(mustParse(t, base), mustParse(t, strings.Replace(base, tc.from, tc.to, 1)))
			if diff := cmp.Diff(view(d), tc.want, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("diff (-got +want):\n%s", diff)
			}
		})
	}
}

// A reload turns retries on for a running HTTP listener: before it, every
// other request gets the flaky endpoint's 503; after it, none does, and
// the balancer (with its endpoints' state) is the same.
func TestReloadAppliesRetries(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	var flakyN atomic.Int64
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		flakyN.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer flaky.Close()
	var goodN atomic.Int64
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		goodN.Add(1)
		io.WriteString(w, "ok")
	}))
	defer good.Close()
	ep := func(u string) string {
		host, port, _ := net.SplitHostPort(strings.TrimPrefix(u, "http://"))
		return fmt.Sprintf("{address: %s, port: %s}", host, port)
	}
	services := fmt.Sprintf("services:\n  - name: b.test\n    endpoints: [%s, %s]\n", ep(flaky.URL), ep(good.URL))
	addr := freePort(t)
	config := func(upstreams string) string {
		return rigConfig(fmt.Sprintf("  - {name: web, listen: %q, protocol: http, service: b.test}\n", addr)) + upstreams
	}
	r := startRig(t, config(""), services)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	statuses := func() map[int]int {
		got := map[int]int{}
		for range 6 {
			resp, err := client.Get("http://" + addr + "/")
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			got[resp.StatusCode]++
		}
		return got
	}
	if got := statuses(); got[503] != 3 || got[200] != 3 {
		t.Fatalf("without retries: statuses %v, want 3 of 503 and 3 of 200", got)
	}
	r.p.mu.Lock()
	bal := r.p.balancers["b.test"]
	r.p.mu.Unlock()

	if st := r.reload(config("upstreams:\n  b.test:\n    retry: {attempts: 2, on: [503], backoff: {base: 1ms}}\n")); st.Generation != 2 || len(st.LastError) != 0 {
		t.Fatalf("status after the reload: %+v", st)
	}
	before, goodBefore := flakyN.Load(), goodN.Load()
	if got := statuses(); got[200] != 6 {
		t.Errorf("with retries: statuses %v, want 6 of 200", got)
	}
	if n, g := flakyN.Load()-before, goodN.Load()-goodBefore; n == 0 || g != 6 {
		t.Errorf("after the reload the flaky endpoint got %d requests, the good one %d; want some, each retried on the good one (6)", n, g)
	}
	r.p.mu.Lock()
	same := r.p.balancers["b.test"] == bal
	r.p.mu.Unlock()
	if !same {
		t.Error("a retry change rebuilt the service's balancer")
	}
	if !strings.Contains(r.logs.String(), "listeners updated in place: web") {
		t.Errorf("no in-place update in the reload summary")
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The example in docs/configuration.md's Retries section is valid and
// turns retries on for the service and the route.
func TestDocsRetryExampleIsValid(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "### Retries (`retry`)")
	_, example, ok2 := strings.Cut(section, "```yaml\n")
	example, _, ok3 := strings.Cut(example, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatalf("no example in the Retries section")
	}
	cfg := mustParse(t, "discovery: [{name: local, file: {path: s.yaml}}]\n"+example)
	runs, err := retryRuns(nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	routes, err := routeRetries(cfg.Outbound[0])
	if err != nil {
		t.Fatal(err)
	}
	if r := runs["orders.shop"]; r == nil || !r.retry.Policy.Enabled() || len(routes) != 1 || !routes[0].Enabled() {
		t.Errorf("example: service %+v, routes %v; want both retrying", r, routes)
	}
}
