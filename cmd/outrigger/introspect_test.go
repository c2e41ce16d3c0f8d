package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/outrigger-mesh/outrigger/balancer"
	"github.com/outrigger-mesh/outrigger/proxy"
	"github.com/outrigger-mesh/outrigger/resilience"
)

// introRig runs a process with an http listener "web" whose routes send
// /b to b.test, /c to c.test and /split 90/10 to both, and a tcp listener
// "raw" to b.test. b.test has a live backend (b-live), a not-ready one
// (b-down) and one nothing listens on (b-dead), with circuit breakers;
// c.test has two live backends with outlier detection.
func introRig(t *testing.T) (r *reloadRig, live string) {
	t.Helper()
	live, dead := helloBackend(t), freePort(t)
	c1, c2 := helloBackend(t), helloBackend(t)
	ep := func(id, addr, extra string) string {
		host, port, _ := net.SplitHostPort(addr)
		return fmt.Sprintf("{id: %s, address: %s, port: %s%s}", id, host, port, extra)
	}
	services := fmt.Sprintf("services:\n  - name: b.test\n    endpoints: [%s, %s, %s]\n  - name: c.test\n    endpoints: [%s, %s]\n",
		ep("b-live", live, ""), ep("b-down", freePort(t), ", state: not_ready"), ep("b-dead", dead, ""),
		ep("c-1", c1, ""), ep("c-2", c2, ""))
	r = startRig(t, rigConfig(`  - name: web
    listen: "127.0.0.1:0"
    protocol: http
    balancer: least_conn
    routes:
      - {name: b, match: {hosts: [shop.test], path: {value: /b}}, backends: [{service: b.test}]}
      - {name: c, match: {path: {value: /c}, methods: [GET]}, backends: [{service: c.test}]}
      - {name: split, match: {path: {type: Exact, value: /split}}, backends: [{service: b.test, weight: 90}, {service: c.test, weight: 10}]}
      - {name: moved, match: {path: {value: /old}}, redirect: {path: /new, code: 301}}
  - {name: raw, listen: "`+freePort(t)+`", service: b.test, balancer: least_conn}
upstreams:
  b.test:
    circuit_breaker: {consecutive_failures: 1, open: 1m}
  c.test:
    outlier_detection: {consecutive_5xx: 1, base_ejection_time: 1m}
`), services)
	return r, live
}

func (r *reloadRig) admin(t *testing.T, path string, v any) int {
	t.Helper()
	resp, err := http.Get("http://" + r.p.admin.Addr().String() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("%s: %v in %s", path, err, body)
		}
	}
	return resp.StatusCode
}

// failUntil picks from b until it gets the endpoint id and finishes that
// pick with done; other picks finish as successes.
func failUntil(t *testing.T, b *balancer.Balancer, id string, done balancer.DoneInfo) {
	t.Helper()
	for range 1000 {
		res, err := b.Pick(nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Endpoint.ID == id {
			res.Done(done)
			return
		}
		res.Done(balancer.DoneInfo{Outcome: resilience.Response(200)})
	}
	t.Fatalf("%s never picked", id)
}

func (r *reloadRig) balancer(svc string) *balancer.Balancer {
	_, bals := r.p.snapshotState()
	return bals[svc]
}

// The tests decode the JSON as a client would, with states as strings.
type testWhy struct {
	whyPage
	Services []testService `json:"services"`
}

type testService struct {
	Service  string        `json:"service"`
	Weight   uint32        `json:"weight"`
	Percent  float64       `json:"percent"`
	Upstream *testUpstream `json:"upstream"`
}

type testUpstream struct {
	Service    string         `json:"service"`
	Policy     string         `json:"policy"`
	PickerSize int            `json:"picker_size"`
	WouldPick  []string       `json:"would_pick"`
	PickRule   string         `json:"pick_rule"`
	UsedBy     []string       `json:"used_by"`
	Sources    []upstreamFrom `json:"sources"`
	Endpoints  []struct {
		ID       string `json:"id"`
		Address  string `json:"address"`
		State    string `json:"state"`
		Eligible bool   `json:"eligible"`
		Breaker  *struct {
			State string `json:"state"`
		} `json:"breaker"`
		Excluded []balancer.Exclusion `json:"excluded"`
	} `json:"endpoints"`
}

// excluded returns each endpoint's exclusion reasons from a /why service.
func excluded(up *testUpstream) map[string][]string {
	m := map[string][]string{}
	for _, e := range up.Endpoints {
		var rs []string
		for _, x := range e.Excluded {
			rs = append(rs, x.Reason)
		}
		m[e.ID] = rs
	}
	return m
}

func whyQuery(kv ...string) string {
	q := url.Values{}
	for i := 0; i < len(kv); i += 2 {
		q.Add(kv[i], kv[i+1])
	}
	return "/why?" + q.Encode()
}

func TestWhyNamesExclusionReasons(t *testing.T) {
	r, _ := introRig(t)
	// A real breaker opens: b-dead's one pick fails with a reset.
	failUntil(t, r.balancer("b.test"), "local/b-dead", balancer.DoneInfo{Err: errors.New("connection reset by peer")})
	// A real ejection: c-2 answers 503 once.
	failUntil(t, r.balancer("c.test"), "local/c-2", balancer.DoneInfo{Outcome: resilience.Response(503)})
	r.waitFor("picker rebuilt", func() bool {
		return r.balancer("b.test").Explain().PickerSize == 1 && r.balancer("c.test").Explain().PickerSize == 1
	})

	var page testWhy
	if code := r.admin(t, whyQuery("listener", "web", "host", "shop.test", "path", "/b/x?y=1", "method", "POST"), &page); code != 200 {
		t.Fatalf("/why = %d %+v", code, page)
	}
	if page.Route == nil || page.Route.Matched == nil || page.Route.Matched.Name != "b" || page.Request.Query != "y=1" {
		t.Fatalf("route %+v, request %+v; want b matched and query y=1", page.Route, page.Request)
	}
	if len(page.Services) != 1 || page.Services[0].Upstream == nil {
		t.Fatalf("services %+v, want b.test", page.Services)
	}
	up := page.Services[0].Upstream
	want := map[string][]string{"local/b-live": nil, "local/b-down": {balancer.ReasonNotReady}, "local/b-dead": {balancer.ReasonBreakerOpen}}
	if diff := cmp.Diff(excluded(up), want); diff != "" {
		t.Errorf("b.test exclusions (-got +want):\n%s", diff)
	}
	for _, e := range up.Endpoints {
		if e.ID == "local/b-dead" && (e.Excluded[0].Until == nil || !e.Excluded[0].Until.After(time.Now())) {
			t.Errorf("breaker_open until %v, want later than now", e.Excluded[0].Until)
		}
	}
	if diff := cmp.Diff(up.WouldPick, []string{"local/b-live"}); diff != "" {
		t.Errorf("would pick (-got +want):\n%s", diff)
	}
	if len(up.Sources) != 1 || up.Sources[0] != (upstreamFrom{Name: "local", Endpoints: 3, Ready: 2, Healthy: true}) {
		t.Errorf("sources %+v, want local with 3 endpoints, 2 ready", up.Sources)
	}
	if !strings.Contains(page.Verdict, "route b → b.test (100%): would pick local/b-live") {
		t.Errorf("verdict %q", page.Verdict)
	}

	// c-2 is ejected; the listener is the only HTTP one, so it may be
	// left out.
	page = testWhy{}
	r.admin(t, whyQuery("path", "/c"), &page)
	if page.Listener.Name != "web" || page.Listener.Chosen != "the only HTTP listener" {
		t.Errorf("listener %+v, want web as the only HTTP listener", page.Listener)
	}
	// No host: only routes for any host are candidates (b is not), in
	// precedence order: Exact, then longer prefixes first.
	var before []string
	for _, tr := range page.Route.FailedBefore {
		before = append(before, tr.Name)
	}
	if diff := cmp.Diff(before, []string{"split", "moved"}); diff != "" || page.Route.NotConsidered != 1 {
		t.Errorf("failed before c (-got +want):\n%s; not considered %d, want 1", diff, page.Route.NotConsidered)
	}
	if diff := cmp.Diff(excluded(page.Services[0].Upstream), map[string][]string{"local/c-1": nil, "local/c-2": {balancer.ReasonEjected}}); diff != "" {
		t.Errorf("c.test exclusions (-got +want):\n%s", diff)
	}

	// The tcp listener goes straight to its service.
	page = testWhy{}
	r.admin(t, whyQuery("listener", "raw"), &page)
	if page.Route != nil || len(page.Services) != 1 || page.Services[0].Service != "b.test" || !strings.HasPrefix(page.Verdict, "tcp listener raw") {
		t.Errorf("tcp listener: %+v", page)
	}
}

func TestWhyNoRouteWeightedSplitAndErrors(t *testing.T) {
	r, _ := introRig(t)
	var page testWhy
	r.admin(t, whyQuery("host", "shop.test", "path", "/nowhere"), &page)
	if page.Route == nil || page.Route.Matched != nil || page.Route.Action != "no_route" ||
		!strings.Contains(page.Verdict, "404 no_route") || len(page.Services) != 0 {
		t.Errorf("no route: %+v", page)
	}
	var failed []string
	for _, tr := range page.Route.FailedBefore {
		failed = append(failed, tr.Name+": "+tr.Failed)
	}
	wantFailed := []string{
		`b: path "/nowhere" is not under prefix "/b"`,
		`split: path "/nowhere" is not exactly "/split"`,
		`moved: path "/nowhere" is not under prefix "/old"`,
		`c: path "/nowhere" is not under prefix "/c"`,
	}
	if diff := cmp.Diff(failed, wantFailed); diff != "" {
		t.Errorf("tried (-got +want):\n%s", diff)
	}

	page = testWhy{}
	r.admin(t, whyQuery("path", "/split"), &page)
	var split []string
	for _, s := range page.Services {
		split = append(split, fmt.Sprintf("%s %d %g%% %v", s.Service, s.Weight, s.Percent, s.Upstream != nil))
	}
	if diff := cmp.Diff(split, []string{"b.test 90 90% true", "c.test 10 10% true"}); diff != "" {
		t.Errorf("split (-got +want):\n%s", diff)
	}

	page = testWhy{}
	r.admin(t, whyQuery("path", "/old"), &page)
	if page.Route.Action != "redirect" || page.Route.Redirect == nil || page.Route.Redirect.Code != 301 || len(page.Services) != 0 {
		t.Errorf("redirect: %+v", page.Route)
	}

	// A header condition and a method: c wants GET.
	page = testWhy{}
	r.admin(t, whyQuery("path", "/c", "method", "DELETE", "header", "X-A: 1"), &page)
	if page.Route.Matched != nil || !slices.ContainsFunc(page.Route.FailedBefore, func(tr whyTrial) bool {
		return tr.Name == "c" && tr.Failed == `method "DELETE" is not GET`
	}) || page.Request.Headers["X-A"][0] != "1" {
		t.Errorf("DELETE /c: %+v", page)
	}

	for _, q := range []string{whyQuery("listener", "nope"), whyQuery("header", "novalue")} {
		var e errorView
		if code := r.admin(t, q, &e); code != http.StatusBadRequest || e.Error == "" {
			t.Errorf("%s = %d %+v, want 400 with an error", q, code, e)
		}
	}
}

func TestUpstreamsAndRoutesViews(t *testing.T) {
	r, live := introRig(t)
	var ups struct {
		Upstreams []testUpstream `json:"upstreams"`
	}
	if code := r.admin(t, "/upstreams", &ups); code != 200 {
		t.Fatalf("/upstreams = %d", code)
	}
	var got []string
	for _, u := range ups.Upstreams {
		var eps []string
		for _, e := range u.Endpoints {
			eps = append(eps, fmt.Sprintf("%s %s eligible=%v breaker=%v", e.ID, e.State, e.Eligible, e.Breaker != nil))
		}
		got = append(got, fmt.Sprintf("%s %s size=%d used_by=%v: %s", u.Service, u.Policy, u.PickerSize, u.UsedBy, strings.Join(eps, ", ")))
	}
	want := []string{
		"b.test least_conn size=2 used_by=[web raw]: local/b-dead ready eligible=true breaker=true, " +
			"local/b-down not_ready eligible=false breaker=true, local/b-live ready eligible=true breaker=true",
		"c.test least_conn size=2 used_by=[web]: local/c-1 ready eligible=true breaker=false, local/c-2 ready eligible=true breaker=false",
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("/upstreams (-got +want):\n%s", diff)
	}
	for _, e := range ups.Upstreams[0].Endpoints {
		if e.ID == "local/b-live" && e.Address != live {
			t.Errorf("b-live address %s, want %s", e.Address, live)
		}
	}

	var routes routesPage
	if code := r.admin(t, "/routes", &routes); code != 200 {
		t.Fatalf("/routes = %d", code)
	}
	if len(routes.Listeners) != 1 || routes.Listeners[0].Listener != "web" {
		t.Fatalf("/routes listeners %+v, want web only (raw is tcp)", routes.Listeners)
	}
	var order []string
	for _, rv := range routes.Listeners[0].Routes {
		order = append(order, fmt.Sprintf("%d %s[%d] %s %s", rv.Precedence, rv.Name, rv.Index, rv.Action, strings.Join(rv.Conditions, "; ")))
	}
	wantOrder := []string{
		"1 b[0] backends host shop.test; path Prefix /b",
		"2 split[2] backends any host; path Exact /split",
		"3 moved[3] redirect any host; path Prefix /old",
		"4 c[1] backends any host; path Prefix /c; method GET",
	}
	if diff := cmp.Diff(order, wantOrder); diff != "" {
		t.Errorf("/routes order (-got +want):\n%s", diff)
	}
	split := routes.Listeners[0].Routes[1]
	if diff := cmp.Diff(split.Backends, []backendShare{{"b.test", 90, 90}, {"c.test", 10, 10}}); diff != "" {
		t.Errorf("split backends (-got +want):\n%s", diff)
	}
	if rd := routes.Listeners[0].Routes[2].Redirect; rd == nil || rd.Code != 301 || rd.Path != "/new" {
		t.Errorf("redirect %+v", rd)
	}
}

func TestPprofLoopbackOnly(t *testing.T) {
	h := introspectHandlers()["/debug/pprof/"]
	for _, tc := range []struct {
		remote string
		code   int
	}{{"127.0.0.1:5000", 200}, {"[::1]:5000", 200}, {"[::ffff:127.0.0.1]:5000", 200}, {"10.0.0.1:5000", 403}, {"[2001:db8::1]:80", 403}} {
		req, _ := http.NewRequest("GET", "/debug/pprof/", nil)
		req.RemoteAddr = tc.remote
		w := &recorder{h: http.Header{}}
		h.ServeHTTP(w, req)
		if w.code != tc.code {
			t.Errorf("from %s: %d, want %d", tc.remote, w.code, tc.code)
		}
	}
	// Over the real admin socket (loopback): the index and a profile.
	r, _ := introRig(t)
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline"} {
		resp, err := http.Get("http://" + r.p.admin.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(body) == 0 {
			t.Errorf("%s = %d, %d bytes", path, resp.StatusCode, len(body))
		}
	}
}

type recorder struct {
	h    http.Header
	code int
}

func (r *recorder) Header() http.Header { return r.h }
func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = 200
	}
	return len(b), nil
}
func (r *recorder) WriteHeader(code int) { r.code = code }

// /why tells what admission control would answer now: a route whose rate
// limit has no token left is answered 429 before any pick, and a route
// whose breaker is open 503 circuit_open.
func TestWhyNamesAdmissionRefusals(t *testing.T) {
	live := helloBackend(t)
	host, port, _ := net.SplitHostPort(live)
	web := freePort(t)
	r := startRig(t, rigConfig(`  - name: web
    listen: "`+web+`"
    protocol: http
    routes:
      - {name: limited, match: {path: {value: /limited}}, backends: [{service: b.test}], rate_limit: {rate: 0.001, burst: 1}}
      - {name: guarded, match: {path: {value: /guarded}}, backends: [{service: b.test}], circuit_breaker: {consecutive_failures: 1, open: 1m}}
      - {name: free, backends: [{service: b.test}]}
`), fmt.Sprintf("services:\n  - name: b.test\n    endpoints: [{address: %s, port: %s}]\n", host, port))

	var page testWhy
	r.admin(t, whyQuery("path", "/limited"), &page)
	if page.Route.Admission == nil || !page.Route.Admission.RateLimit || page.Route.Admission.RateLimited ||
		!strings.Contains(page.Verdict, "would pick") {
		t.Errorf("before any request: %q %+v", page.Verdict, page.Route.Admission)
	}
	resp, err := http.Get("http://" + web + "/limited") // takes the one token
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	page = testWhy{}
	r.admin(t, whyQuery("path", "/limited"), &page)
	if page.Route.Admission == nil || !page.Route.Admission.RateLimited || !strings.Contains(page.Verdict, "429 rate_limited") {
		t.Errorf("after the token was taken: %q %+v", page.Verdict, page.Route.Admission)
	}

	page = testWhy{}
	r.admin(t, whyQuery("path", "/guarded"), &page)
	if page.Route.Admission == nil || page.Route.Admission.Breaker != "closed" {
		t.Errorf("guarded route: %+v, want its breaker closed", page.Route.Admission)
	}
	page = testWhy{}
	r.admin(t, whyQuery("path", "/free"), &page)
	if page.Route.Admission != nil {
		t.Errorf("a route without limits shows admission %+v", page.Route.Admission)
	}
	if got := routeRefusal(proxy.RouteAdmissionView{Breaker: "open"}); !strings.Contains(got, "503 circuit_open") {
		t.Errorf("open breaker: %q", got)
	}
	if got := routeRefusal(proxy.RouteAdmissionView{InFlight: 3, MaxRequests: 3}); !strings.Contains(got, "503 overflow") {
		t.Errorf("full route: %q", got)
	}
	for _, tc := range []struct {
		v    proxy.ServiceAdmissionView
		want string // "" admits
	}{
		{proxy.ServiceAdmissionView{InFlight: 2, MaxRequests: 3, Connections: 9}, ""},
		{proxy.ServiceAdmissionView{InFlight: 3, MaxRequests: 3}, "3 requests in flight of max_requests 3"},
		{proxy.ServiceAdmissionView{Connections: 4, MaxConnections: 5}, ""},
		{proxy.ServiceAdmissionView{Connections: 5, MaxConnections: 5}, "5 connections open of max_connections 5: a request that finds no idle pooled connection"},
	} {
		if got := serviceRefusal(tc.v); (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("serviceRefusal(%+v) = %q, want %q", tc.v, got, tc.want)
		}
	}
}
