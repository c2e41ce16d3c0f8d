package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/outrigger-mesh/outrigger/proxy/route"
)

// observed is what an endpoint saw of one request, and what the client
// got back.
type observed struct {
	Method, URI, Host string
	Header            []string // "Name: value", sorted
	Body              string
	Trailer           []string
	Status            int
	RespHeader        []string // minus Date
	RespBody          string
}

// The fast path and net/http's engine forward the same requests the same
// way: what the endpoint sees and what the client gets back agree.
func TestH1MatchesNetHTTPEngine(t *testing.T) {
	seen := make(chan observed, 1)
	be := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		o := observed{Method: r.Method, URI: r.RequestURI, Host: r.Host, Body: string(b)}
		for k, vs := range r.Header {
			for _, v := range vs {
				o.Header = append(o.Header, k+": "+v)
			}
		}
		// Names only: net/http's engine announces request trailers
		// but loses their values (the fast path relays them; see
		// TestH1ChunkedTrailersBothWays).
		for k := range r.Trailer {
			o.Trailer = append(o.Trailer, k)
		}
		slices.Sort(o.Header)
		slices.Sort(o.Trailer)
		seen <- o
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("X-Hop", "1")
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Add("X-Multi", "a")
		w.Header().Add("X-Multi", "b")
		switch r.URL.Path {
		case "/status":
			w.WriteHeader(503)
		case "/chunked":
			w.Header().Set("Trailer", "X-T")
			io.WriteString(w, "chunk")
			w.(http.Flusher).Flush()
			w.Header().Set("X-T", "t")
		}
		io.WriteString(w, "body")
	}))
	tab := mustTable(t,
		route.RouteConfig{
			Match:           route.MatchConfig{Path: route.PathMatch{Value: "/api"}},
			Backends:        []route.Backend{{Service: "web.shop"}},
			RewritePrefix:   "/v2",
			RewriteHost:     "internal",
			RequestHeaders:  route.HeaderOps{Set: [][2]string{{"X-Set", "s"}}, Add: [][2]string{{"X-Add", "a"}}, Remove: []string{"X-Remove"}},
			ResponseHeaders: route.HeaderOps{Set: [][2]string{{"X-Resp", "r"}}, Remove: []string{"X-Multi"}},
		},
		route.RouteConfig{Match: route.MatchConfig{Path: route.PathMatch{Value: "/fixed"}},
			Fixed:           &route.FixedResponse{Status: 200, Body: "fixed\n"},
			ResponseHeaders: route.HeaderOps{Set: [][2]string{{"X-F", "1"}}, Add: [][2]string{{"X-G", "2"}}}},
		route.RouteConfig{Match: route.MatchConfig{Path: route.PathMatch{Value: "/empty"}},
			Fixed: &route.FixedResponse{Status: 204}},
		route.RouteConfig{Match: route.MatchConfig{Path: route.PathMatch{Value: "/redirect"}},
			Redirect: &route.Redirect{Scheme: "https", Port: 8443}},
		route.RouteConfig{Match: route.MatchConfig{Path: route.PathMatch{Value: "/nobody"}},
			Backends: []route.Backend{{Service: "gone.shop"}}},
		route.RouteConfig{Match: route.MatchConfig{Hosts: []string{"shop"}}, Backends: []route.Backend{{Service: "web.shop"}}},
	)
	ups := Upstreams{"web.shop": StaticUpstream("web", be.addr)}
	fast := startHTTPProxy(t, HTTPConfig{}, tab, ups, ServerConfig{})
	slow := startHTTPProxy(t, HTTPConfig{NetHTTPOnly: true}, tab, ups, ServerConfig{})

	exchange := func(t *testing.T, p *testProxy, raw string) observed {
		t.Helper()
		c := p.dial(t)
		io.WriteString(c, raw)
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, req)
		for err == nil && resp.StatusCode < 200 {
			resp, err = http.ReadResponse(br, req) // past 100 Continue
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		var o observed
		select {
		case o = <-seen:
		default: // the proxy answered itself
		}
		o.Status, o.RespBody = resp.StatusCode, string(b)
		for k, vs := range resp.Header {
			if k == "Date" {
				continue
			}
			for _, v := range vs {
				o.RespHeader = append(o.RespHeader, k+": "+v)
			}
		}
		for k, vs := range resp.Trailer {
			o.RespHeader = append(o.RespHeader, "trailer "+k+": "+strings.Join(vs, ","))
		}
		slices.Sort(o.RespHeader)
		return o
	}
	for i, raw := range []string{
		rawRequest("GET / HTTP/1.1", "Host: shop"),
		rawRequest("GET /x/y?q=1&r=%20 HTTP/1.1", "Host: Shop.Example:8080", "Accept: */*", "User-Agent: t"),
		rawRequest("GET /api/items%2Fx?z HTTP/1.1", "Host: shop", "X-Remove: 1", "X-Set: old", "X-Add: first"),
		rawRequest("GET /api HTTP/1.1", "Host: shop"),
		rawRequest("GET /a%20b/c HTTP/1.1", "Host: shop"),
		rawRequest("GET /status HTTP/1.1", "Host: shop"),
		rawRequest("GET /chunked HTTP/1.1", "Host: shop", "TE: trailers"),
		rawRequest("HEAD / HTTP/1.1", "Host: shop"),
		rawRequest("GET / HTTP/1.1", "Host: shop", "Connection: X-A, close", "X-A: 1", "Keep-Alive: 1", "Proxy-Connection: x",
			"Proxy-Authorization: y", "Upgrade: z", "Forwarded: for=1", "X-Forwarded-For: 9.9.9.9", "X-Forwarded-Proto: https",
			"X-Forwarded-Host: h", "Via: 1.0 a", "Via: 1.1 b"),
		rawRequest("POST /p HTTP/1.1", "Host: shop", "Content-Length: 5") + "hello",
		rawRequest("POST /p HTTP/1.1", "Host: shop", "Transfer-Encoding: chunked", "Trailer: X-Rt") + "5\r\nhello\r\n0\r\nX-Rt: 1\r\n\r\n",
		rawRequest("PUT /p HTTP/1.1", "Host: shop", "Content-Length: 0"),
		rawRequest("GET /fixed HTTP/1.1", "Host: shop"),
		rawRequest("HEAD /fixed HTTP/1.1", "Host: shop"),
		rawRequest("GET /empty HTTP/1.1", "Host: shop"),
		rawRequest("GET /redirect/a%20b?x=1 HTTP/1.1", "Host: shop:80"),
		rawRequest("GET /nobody HTTP/1.1", "Host: shop"),
		rawRequest("GET / HTTP/1.1", "Host: elsewhere"),
		rawRequest("POST / HTTP/1.1", "Host: elsewhere", "Content-Length: 3") + "abc",
		rawRequest("HEAD /chunked HTTP/1.1", "Host: shop"),
		rawRequest("POST /p HTTP/1.1", "Host: shop", "Expect: 100-continue", "Content-Length: 5") + "hello",
	} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			got, want := exchange(t, fast, raw), exchange(t, slow, raw)
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("request %q: fast path vs net/http (-fast +net/http):\n%s", raw, diff)
			}
		})
	}
}
