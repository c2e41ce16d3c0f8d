package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/outrigger-mesh/outrigger/proxy/route"
)

// timeoutHead is an http listener whose routes start at line 7.
const timeoutHead = `discovery: [{name: local, file: {path: s.yaml}}]
outbound:
  - name: w
    listen: 127.0.0.1:9002
    protocol: http
    routes:
`

func TestParseConfigRouteTimeout(t *testing.T) {
	cfg := mustParse(t, timeoutHead+`      - {match: {path: {value: /slow}}, backends: [{service: api.shop}], timeout: 250ms}
      - {backends: [{service: web.shop}]}
`)
	rc, err := cfg.Outbound[0].routeConfig()
	if err != nil {
		t.Fatal(err)
	}
	table, err := route.New(rc)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]time.Duration, 2) // in config order
	for _, rt := range table.Routes() {
		got[rt.Index] = rt.Config.Timeout
	}
	if diff := cmp.Diff(got, []time.Duration{250 * time.Millisecond, 0}); diff != "" {
		t.Errorf("route timeouts in the table (-got +want):\n%s", diff)
	}
}

func TestParseConfigRouteTimeoutErrors(t *testing.T) {
	const f = "o.yaml"
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{name: "bad duration", yaml: "      - {backends: [{service: web.shop}], timeout: soon}\n",
			want: []string{f + `:7: outbound[0].routes[0].timeout: invalid duration "soon": write it like 500ms, 5s or 1m`}},
		{name: "negative", yaml: "      - {backends: [{service: web.shop}]}\n      - name: neg\n        backends: [{service: web.shop}]\n        timeout: -1s\n",
			want: []string{f + `:10: outbound[0].routes[1].timeout: must not be negative`}},
		{name: "no backends", yaml: "      - {fixed: {status: 200}, timeout: 1s}\n",
			want: []string{f + `:7: outbound[0].routes[0].timeout: applies only to a route with backends`}},
		{name: "per-try longer", yaml: "      - backends: [{service: web.shop}]\n        timeout: 1s\n        retry: {per_try_timeout: 2s}\n",
			want: []string{f + `:9: outbound[0].routes[0].retry.per_try_timeout: 2s is longer than the route's timeout (1s), which bounds all attempts`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig(f, []byte(timeoutHead+tc.yaml))
			if err == nil {
				t.Fatalf("no error for\n%s", tc.yaml)
			}
			if diff := cmp.Diff(strings.Split(err.Error(), "\n"), tc.want, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
				t.Errorf("errors (-got +want):\n%s", diff)
			}
		})
	}
}

// The route example in docs/configuration.md is valid and sets a route
// timeout.
func TestDocsRoutesExampleIsValid(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "#### Routes")
	_, example, ok2 := strings.Cut(section, "```yaml\n")
	example, _, ok3 := strings.Cut(example, "```")
	if !ok || !ok2 || !ok3 || !strings.HasPrefix(example, "routes:\n") {
		t.Fatalf("no routes example in the Routes section")
	}
	cfg := mustParse(t, "discovery: [{name: local, file: {path: s.yaml}}]\noutbound:\n  - name: w\n    listen: 127.0.0.1:9002\n    protocol: http\n"+
		strings.ReplaceAll("\n"+example, "\n", "\n    ")[1:])
	if got := cfg.Outbound[0].Routes[0].Timeout.D(); got != 2*time.Second {
		t.Errorf("the example's first route has timeout %v, want 2s", got)
	}
}
