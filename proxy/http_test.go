package proxy

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/outrigger-mesh/outrigger/proxy/route"
)

// whoami answers with its name.
func whoami(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, name)
	})
}

// Requests on one keep-alive client connection are balanced one by one over
// three endpoints, and the proxy reuses one upstream connection per
// endpoint.
func TestHTTPBalancesEachRequestOverOneClientConnection(t *testing.T) {
	var addrs []netip.AddrPort
	var backends []*httpBackend
	for _, name := range []string{"a", "b", "c"} {
		b := startHTTPBackend(t, whoami(name))
		backends = append(backends, b)
		addrs = append(addrs, b.addr)
	}
	up := newFakeUpstream(t, addrs...)
	p := startHTTPProxy(t, HTTPConfig{}, routeAll(t, "web.shop"), Upstreams{"web.shop": up}, ServerConfig{})
	c := newClient(t, false)

	got := map[string]int{}
	for range 30 {
		resp, body := c.get(t, "http://"+p.addr+"/")
		if resp.StatusCode != 200 {
			t.Fatalf("status %s body %q", resp.Status, body)
		}
		got[body]++
	}
	if diff := cmp.Diff(got, map[string]int{"a": 10, "b": 10, "c": 10}); diff != "" {
		t.Errorf("requests per endpoint (-got +want):\n%s", diff)
	}
	if n := c.dials.Load(); n != 1 {
		t.Errorf("client dialed %d connections, want 1 (keep-alive)", n)
	}
	for i, b := range backends {
		if n := b.conns.Load(); n != 1 {
			t.Errorf("backend %d accepted %d connections, want 1 (pooled upstream)", i, n)
		}
	}
	for _, d := range assertDonesMatchPicks(t, up) {
		if d.info.Err != nil {
			t.Errorf("Done(%v) err %v, want nil", d.addr, d.info.Err)
		}
	}
}

// The real balancer works as the upstream too.
func TestHTTPWithRealBalancer(t *testing.T) {
	a, b := startHTTPBackend(t, whoami("a")), startHTTPBackend(t, whoami("b"))
	bal := startBalancer(t, "web.shop", a.addr, b.addr)
	p := startHTTPProxy(t, HTTPConfig{}, routeAll(t, "web.shop"), Upstreams{"web.shop": bal}, ServerConfig{})
	c := newClient(t, false)
	got := map[string]int{}
	for range 10 {
		_, body := c.get(t, "http://"+p.addr+"/")
		got[body]++
	}
	if diff := cmp.Diff(got, map[string]int{"a": 5, "b": 5}); diff != "" {
		t.Errorf("requests per endpoint (-got +want):\n%s", diff)
	}
}

// Bodies stream both ways: a 10 MB chunked request and a 10 MB chunked
// response arrive intact, and so do the response's trailers.
func TestHTTPStreamsLargeChunkedBodiesAndTrailers(t *testing.T) {
	const size = 10 << 20
	type request struct {
		sum []byte
		n   int64
		te  []string
	}
	reqs := make(chan request, 1)
	be := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		reqs <- request{h.Sum(nil), n, r.TransferEncoding}
		w.Header().Set("Trailer", "X-Sum")
		out := sha256.New()
		// No Content-Length: the response is chunked.
		if _, err := io.Copy(io.MultiWriter(w, out), stream(7, size, sha256.New())); err != nil {
			return
		}
		w.Header().Set("X-Sum", fmt.Sprintf("%x", out.Sum(nil)))
	}))
	up := newFakeUpstream(t, be.addr)
	p := startHTTPProxy(t, HTTPConfig{}, routeAll(t, "web.shop"), Upstreams{"web.shop": up}, ServerConfig{})
	c := newClient(t, false)

	sent := sha256.New()
	// An io.Reader of unknown length makes the client send chunked.
	req, _ := http.NewRequest("POST", "http://"+p.addr+"/upload", io.MultiReader(stream(3, size, sent)))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	recv := sha256.New()
	n, err := io.Copy(recv, resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	gotReq := <-reqs
	if gotReq.n != size || !bytes.Equal(gotReq.sum, sent.Sum(nil)) {
		t.Errorf("backend got %d bytes (sum match %v), want %d", gotReq.n, bytes.Equal(gotReq.sum, sent.Sum(nil)), size)
	}
	if !cmp.Equal(gotReq.te, []string{"chunked"}) {
		t.Errorf("backend request Transfer-Encoding %q, want chunked", gotReq.te)
	}
	if n != size {
		t.Errorf("client got %d bytes, want %d", n, size)
	}
	if !cmp.Equal(resp.TransferEncoding, []string{"chunked"}) {
		t.Errorf("response Transfer-Encoding %q, want chunked", resp.TransferEncoding)
	}
	if got, want := resp.Trailer.Get("X-Sum"), fmt.Sprintf("%x", recv.Sum(nil)); got != want {
		t.Errorf("trailer X-Sum %q, want %q", got, want)
	}
	assertDonesMatchPicks(t, up)
}

// A 10 MB body with Content-Length goes both ways intact.
func TestHTTPStreamsLargeBodiesWithLength(t *testing.T) {
	const size = 10 << 20
	be := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != size {
			http.Error(w, "length", 400)
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(size))
		io.Copy(w, r.Body) // echo
	}))
	up := newFakeUpstream(t, be.addr)
	p := startHTTPProxy(t, HTTPConfig{}, routeAll(t, "web.shop"), Upstreams{"web.shop": up}, ServerConfig{})
	c := newClient(t, false)
	sent := sha256.New()
	body := new(bytes.Buffer)
	io.Copy(body, stream(5, size, sent))
	resp, err := c.Post("http://"+p.addr+"/", "application/octet-stream", body)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	recv := sha256.New()
	n, _ := io.Copy(recv, resp.Body)
	if resp.StatusCode != 200 || resp.ContentLength != size || n != size || !bytes.Equal(recv.Sum(nil), sent.Sum(nil)) {
		t.Errorf("status %d, Content-Length %d, got %d bytes, sums equal %v", resp.StatusCode, resp.ContentLength, n,
			bytes.Equal(recv.Sum(nil), sent.Sum(nil)))
	}
}

// "Expect: 100-continue" goes end to end: the client gets 100 Continue only
// once the endpoint asked for the body, and an endpoint that answers
// without reading gets no body.
func TestHTTPExpectContinue(t *testing.T) {
	be := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Expect") != "100-continue" {
			http.Error(w, "no expect", 400)
			return
		}
		if r.URL.Path == "/reject" {
			http.Error(w, "go away", http.StatusForbidden)
			return
		}
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}))
	up := newFakeUpstream(t, be.addr)
	p := startHTTPProxy(t, HTTPConfig{}, routeAll(t, "web.shop"), Upstreams{"web.shop": up}, ServerConfig{})

	t.Run("accepted", func(t *testing.T) {
		c := p.dial(t)
		br := newLineReader(c)
		io.WriteString(c, rawRequest("POST /ok HTTP/1.1", "Host: x", "Content-Length: 5", "Expect: 100-continue"))
		if line := br.line(t); line != "HTTP/1.1 100 Continue" {
			t.Fatalf("first line %q, want 100 Continue", line)
		}
		br.line(t) // blank line after the 1xx
		io.WriteString(c, "hello")
		// The upstream's own 100 Continue may be forwarded too; RFC 9110
		// §15.2 has clients read any number of 1xx before the final answer.
		var resp *http.Response
		for i := 0; ; i++ {
			var err error
			if resp, err = http.ReadResponse(br.Reader, nil); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode >= 200 {
				break
			}
			if resp.StatusCode != http.StatusContinue || i > 0 {
				t.Fatalf("interim response %d: %s, want at most one more 100 Continue", i+1, resp.Status)
			}
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != "hello" {
			t.Errorf("got %s %q, want 200 hello", resp.Status, b)
		}
	})
	t.Run("rejected", func(t *testing.T) {
		c := p.dial(t)
		br := newLineReader(c)
		io.WriteString(c, rawRequest("POST /reject HTTP/1.1", "Host: x", "Content-Length: 5", "Expect: 100-continue"))
		if line := br.line(t); line != "HTTP/1.1 403 Forbidden" {
			t.Fatalf("first line %q, want 403 without 100 Continue", line)
		}
	})
	assertDonesMatchPicks(t, up)
}

// Proxy errors carry X-Outrigger-Error; the endpoint's own errors do not.
func TestHTTPProxyErrors(t *testing.T) {
	release := newGate(t)
	slow := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release.ch
	}))
	t.Cleanup(release.open) // before the backend's Close waits for the handler
	appErr := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "app says no", http.StatusServiceUnavailable)
	}))
	dead := newFakeUpstream(t, closedPort(t))
	empty := newFakeUpstream(t)
	slowUp := newFakeUpstream(t, slow.addr)
	appUp := newFakeUpstream(t, appErr.addr)
	tab := mustTable(t,
		route.RouteConfig{Match: route.MatchConfig{Path: route.PathMatch{Value: "/dead"}}, Backends: []route.Backend{{Service: "dead.shop"}}},
		route.RouteConfig{Match: route.MatchConfig{Path: route.PathMatch{Value: "/empty"}}, Backends: []route.Backend{{Service: "empty.shop"}}},
		route.RouteConfig{Match: route.MatchConfig{Path: route.PathMatch{Value: "/slow"}}, Backends: []route.Backend{{Service: "slow.shop"}}},
		route.RouteConfig{Match: route.MatchConfig{Path: route.PathMatch{Value: "/app"}}, Backends: []route.Backend{{Service: "app.shop"}}},
		route.RouteConfig{Match: route.MatchConfig{Path: route.PathMatch{Value: "/unknown"}}, Backends: []route.Backend{{Service: "unknown.shop"}}},
	)
	ups := Upstreams{"dead.shop": dead, "empty.shop": empty, "slow.shop": slowUp, "app.shop": appUp}
	p := startHTTPProxy(t, HTTPConfig{ResponseTimeout: 200 * time.Millisecond}, tab, ups, ServerConfig{})
	c := newClient(t, false)

	for _, tc := range []struct {
		path   string
		status int
		cause  string
	}{
		{"/nowhere", 404, "no_route"},
		{"/dead", 502, "connect_failure"},
		{"/empty", 503, "no_endpoints"},
		{"/unknown", 503, "no_endpoints"},
		{"/slow", 504, "upstream_timeout"},
		{"/app", 503, ""},
	} {
		resp, body := c.get(t, "http://"+p.addr+tc.path)
		if resp.StatusCode != tc.status || resp.Header.Get(ErrorHeader) != tc.cause {
			t.Errorf("%s: %d %s=%q body %q, want %d %q", tc.path, resp.StatusCode, ErrorHeader,
				resp.Header.Get(ErrorHeader), body, tc.status, tc.cause)
		}
		if tc.cause != "" && !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
			t.Errorf("%s: Content-Type %q, want text/plain", tc.path, resp.Header.Get("Content-Type"))
		}
	}
	// The dead service's only endpoint was tried ConnectAttempts times
	// (the fake picks it again: it has no other), each failure reported.
	for _, d := range assertDonesMatchPicks(t, dead) {
		var de *DialError
		if !errors.As(d.info.Err, &de) {
			t.Errorf("dead endpoint Done err %v, want a *DialError", d.info.Err)
		}
	}
	if calls, _, _ := empty.stats(); calls != 1 {
		t.Errorf("empty upstream picked %d times, want 1", calls)
	}
	for _, d := range assertDonesMatchPicks(t, slowUp) {
		if d.info.Err == nil {
			t.Error("slow endpoint Done err nil, want the timeout")
		}
	}
	for _, d := range assertDonesMatchPicks(t, appUp) {
		var se *StatusError
		if !errors.As(d.info.Err, &se) || se.Code != 503 {
			t.Errorf("app endpoint Done err %v, want StatusError 503", d.info.Err)
		}
	}
}

// A dial failure is retried on another endpoint: the client never sees it.
func TestHTTPRetriesConnectFailureOnAnotherEndpoint(t *testing.T) {
	be := startHTTPBackend(t, whoami("live"))
	dead := closedPort(t)
	up := newFakeUpstream(t, dead, be.addr)
	p := startHTTPProxy(t, HTTPConfig{}, routeAll(t, "web.shop"), Upstreams{"web.shop": up}, ServerConfig{})
	c := newClient(t, false)
	for range 4 {
		req, _ := http.NewRequest("POST", "http://"+p.addr+"/", strings.NewReader("payload"))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "live" {
			t.Fatalf("got %s %q, want 200 live", resp.Status, b)
		}
	}
	var failed, ok int
	for _, d := range assertDonesMatchPicks(t, up) {
		switch {
		case d.addr == dead && d.info.Err != nil:
			failed++
		case d.addr == be.addr && d.info.Err == nil:
			ok++
		default:
			t.Errorf("unexpected Done %v %v", d.addr, d.info.Err)
		}
	}
	if ok != 4 || failed == 0 {
		t.Errorf("%d good and %d failed attempts, want 4 and some", ok, failed)
	}
}

// 413 when the body is over MaxBodyBytes: at once from Content-Length, and
// when a chunked body crosses the limit.
func TestHTTPBodyTooLarge(t *testing.T) {
	var reached sync.Map
	be := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Store(r.URL.Path, true)
		io.Copy(io.Discard, r.Body)
	}))
	up := newFakeUpstream(t, be.addr)
	p := startHTTPProxy(t, HTTPConfig{MaxBodyBytes: 1000}, routeAll(t, "web.shop"), Upstreams{"web.shop": up}, ServerConfig{})

	status, closed := rawExchange(t, p.addr, rawRequest("POST /length HTTP/1.1", "Host: x", "Content-Length: 1001")+strings.Repeat("x", 1001))
	if status != 413 || !closed {
		t.Errorf("Content-Length over the limit: %d closed=%v, want 413 and closed", status, closed)
	}
	if _, ok := reached.Load("/length"); ok {
		t.Error("a request with Content-Length over the limit reached the endpoint")
	}

	c := newClient(t, false)
	req, _ := http.NewRequest("POST", "http://"+p.addr+"/chunked", io.MultiReader(strings.NewReader(strings.Repeat("x", 5000))))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 || resp.Header.Get(ErrorHeader) != "body_too_large" {
		t.Errorf("chunked over the limit: %s %q, want 413 body_too_large", resp.Status, resp.Header.Get(ErrorHeader))
	}

	req, _ = http.NewRequest("POST", "http://"+p.addr+"/small", strings.NewReader(strings.Repeat("x", 1000)))
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("body at the limit: %s, want 200", resp.Status)
	}
	assertDonesMatchPicks(t, up)
}

// Hop-by-hop fields are removed; X-Forwarded-For, -Proto, -Host and Via
// are set, and extended only from a trusted peer.
func TestHTTPForwardingHeaders(t *testing.T) {
	got := make(chan http.Header, 1)
	var gotHost string
	be := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotHost = r.Host
		got <- r.Header.Clone()
		w.Header().Set("Connection", "X-Resp-Hop")
		w.Header().Set("X-Resp-Hop", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-App", "yes")
	}))
	up := newFakeUpstream(t, be.addr)
	send := func(t *testing.T, p *testProxy) (http.Header, *http.Response) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+p.addr+"/", nil)
		req.Host = "shop.example.com"
		req.Header.Set("Connection", "X-Hop")
		req.Header.Set("X-Hop", "secret")
		req.Header.Set("Keep-Alive", "timeout=5")
		req.Header.Set("Proxy-Authorization", "Basic Zm9vOmJhcg==")
		req.Header.Set("Proxy-Connection", "keep-alive")
		req.Header.Set("Te", "trailers, deflate")
		req.Header.Set("Upgrade", "h2c")
		req.Header.Set("X-Forwarded-For", "203.0.113.9")
		req.Header.Set("X-Forwarded-Proto", "https")
		req.Header.Set("X-Forwarded-Host", "public.example.com")
		req.Header.Set("Via", "1.1 edge")
		req.Header.Set("X-Keep", "kept")
		resp, err := newClient(t, false).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return <-got, resp
	}
	check := func(t *testing.T, h http.Header, want map[string]string) {
		t.Helper()
		for _, hop := range []string{"X-Hop", "Keep-Alive", "Proxy-Authorization", "Proxy-Connection", "Upgrade", "Connection"} {
			if v, ok := h[hop]; ok {
				t.Errorf("hop-by-hop %s: %q reached the endpoint", hop, v)
			}
		}
		for k, v := range want {
			if got := strings.Join(h.Values(k), ", "); got != v {
				t.Errorf("%s = %q, want %q", k, got, v)
			}
		}
	}

	t.Run("untrusted", func(t *testing.T) {
		p := startHTTPProxy(t, HTTPConfig{}, routeAll(t, "web.shop"), Upstreams{"web.shop": up}, ServerConfig{})
		h, resp := send(t, p)
		check(t, h, map[string]string{
			"X-Forwarded-For":   "127.0.0.1",
			"X-Forwarded-Proto": "http",
			"X-Forwarded-Host":  "shop.example.com",
			"Via":               "1.1 edge, 1.1 outrigger",
			"Te":                "trailers",
			"X-Keep":            "kept",
		})
		if gotHost != "shop.example.com" {
			t.Errorf("endpoint saw Host %q, want the client's", gotHost)
		}
		for _, hop := range []string{"X-Resp-Hop", "Keep-Alive"} {
			if v, ok := resp.Header[hop]; ok {
				t.Errorf("response hop-by-hop %s: %q reached the client", hop, v)
			}
		}
		if resp.Header.Get("X-App") != "yes" || resp.Header.Get("Via") != "1.1 outrigger" {
			t.Errorf("response X-App %q Via %q", resp.Header.Get("X-App"), resp.Header.Get("Via"))
		}
	})
	t.Run("trusted", func(t *testing.T) {
		cfg := HTTPConfig{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
		p := startHTTPProxy(t, cfg, routeAll(t, "web.shop"), Upstreams{"web.shop": up}, ServerConfig{})
		h, _ := send(t, p)
		check(t, h, map[string]string{
			"X-Forwarded-For":   "203.0.113.9, 127.0.0.1",
			"X-Forwarded-Proto": "https",
			"X-Forwarded-Host":  "public.example.com",
		})
	})
}

// A route's header operations, prefix rewrite and host rewrite apply;
// redirect and fixed routes answer without an upstream.
func TestHTTPRouteActions(t *testing.T) {
	type seen struct {
		path, rawQuery, host string
		h                    http.Header
	}
	got := make(chan seen, 1)
	be := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.URL.EscapedPath(), r.URL.RawQuery, r.Host, r.Header.Clone()}
		w.Header().Set("Server", "app")
		w.Header().Set("X-Internal", "leak")
	}))
	up := newFakeUpstream(t, be.addr)
	tab := mustTable(t,
		route.RouteConfig{
			Name:          "api",
			Match:         route.MatchConfig{Path: route.PathMatch{Value: "/api"}},
			Backends:      []route.Backend{{Service: "web.shop"}},
			RewritePrefix: "/v2",
			RewriteHost:   "internal.shop",
			RequestHeaders: route.HeaderOps{
				Set:    [][2]string{{"X-Route", "api"}},
				Add:    [][2]string{{"X-Tag", "two"}},
				Remove: []string{"X-Drop"},
			},
			ResponseHeaders: route.HeaderOps{Set: [][2]string{{"Server", "outrigger"}}, Remove: []string{"X-Internal"}},
		},
		route.RouteConfig{Match: route.MatchConfig{Path: route.PathMatch{Value: "/old"}},
			Redirect: &route.Redirect{Scheme: "https", Host: "new.example.com", Path: "/new", Code: 301}},
		route.RouteConfig{Match: route.MatchConfig{Path: route.PathMatch{Value: "/moved"}},
			Redirect: &route.Redirect{Port: 8443}},
		route.RouteConfig{Match: route.MatchConfig{Path: route.PathMatch{Value: "/teapot"}},
			Fixed:           &route.FixedResponse{Status: 418, Body: "short and stout"},
			ResponseHeaders: route.HeaderOps{Set: [][2]string{{"X-Fixed", "1"}}}},
	)
	p := startHTTPProxy(t, HTTPConfig{}, tab, Upstreams{"web.shop": up}, ServerConfig{})
	c := newClient(t, false)

	req, _ := http.NewRequest("GET", "http://"+p.addr+"/api/items%2Fx?q=1", nil)
	req.Header.Set("X-Drop", "gone")
	req.Header.Set("X-Tag", "one")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	s := <-got
	want := seen{path: "/v2/items%2Fx", rawQuery: "q=1", host: "internal.shop"}
	if s.path != want.path || s.rawQuery != want.rawQuery || s.host != want.host {
		t.Errorf("endpoint saw path %q query %q host %q, want %+v", s.path, s.rawQuery, s.host, want)
	}
	if s.h.Get("X-Route") != "api" || strings.Join(s.h.Values("X-Tag"), ",") != "one,two" || s.h.Get("X-Drop") != "" {
		t.Errorf("request header ops: X-Route %q X-Tag %q X-Drop %q", s.h.Get("X-Route"), s.h.Values("X-Tag"), s.h.Get("X-Drop"))
	}
	if resp.Header.Get("Server") != "outrigger" || resp.Header.Get("X-Internal") != "" {
		t.Errorf("response header ops: Server %q X-Internal %q", resp.Header.Get("Server"), resp.Header.Get("X-Internal"))
	}

	for _, tc := range []struct {
		url, host string
		status    int
		location  string
	}{
		{"/old/page?a=b", "shop.example.com", 301, "https://new.example.com/new?a=b"},
		{"/moved/x", "shop.example.com:8080", 302, "http://shop.example.com:8443/moved/x"},
	} {
		req, _ := http.NewRequest("GET", "http://"+p.addr+tc.url, nil)
		req.Host = tc.host
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status || resp.Header.Get("Location") != tc.location {
			t.Errorf("%s: %d Location %q, want %d %q", tc.url, resp.StatusCode, resp.Header.Get("Location"), tc.status, tc.location)
		}
	}
	resp, body := c.get(t, "http://"+p.addr+"/teapot")
	if resp.StatusCode != 418 || body != "short and stout" || resp.Header.Get("X-Fixed") != "1" ||
		resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("fixed: %d %q headers %v", resp.StatusCode, body, resp.Header)
	}
	if _, picks, _ := up.stats(); picks != 1 {
		t.Errorf("%d picks, want 1 (redirect and fixed do not pick)", picks)
	}
	assertDonesMatchPicks(t, up)
}
