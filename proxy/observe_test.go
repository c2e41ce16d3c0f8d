package proxy

import (
	"context"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/route"
)

// recorder is an Observer that keeps a copy of every record.
type recorder struct {
	mu   sync.Mutex
	recs []RequestRecord
}

func (r *recorder) ObserveRequest(rec *RequestRecord) {
	r.mu.Lock()
	r.recs = append(r.recs, *rec)
	r.mu.Unlock()
}

func (r *recorder) all() []RequestRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.recs)
}

// Both engines hand the Observer one record per request, with the route,
// service, endpoint, attempts, status and proxy error cause.
func TestObserverRecords(t *testing.T) {
	for _, engine := range []struct {
		name    string
		netHTTP bool
	}{{"fast path", false}, {"net/http", true}} {
		t.Run(engine.name, func(t *testing.T) {
			be := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/fail" {
					w.WriteHeader(503)
				}
				w.Write([]byte("hello"))
			}))
			dead := closedPort(t)
			tab := mustTable(t,
				route.RouteConfig{Name: "down", Match: route.MatchConfig{Path: route.PathMatch{Value: "/down"}}, Backends: []route.Backend{{Service: "dead.shop"}}},
				route.RouteConfig{Name: "all", Backends: []route.Backend{{Service: "web.shop"}}},
			)
			ups := Upstreams{"web.shop": newFakeUpstream(t, be.addr), "dead.shop": newFakeUpstream(t, dead)}
			rec := &recorder{}
			cfg := HTTPConfig{Name: "test", Listen: "127.0.0.1:0", NetHTTPOnly: engine.netHTTP, ConnectAttempts: 1}
			srv := NewServer(ServerConfig{}, Options{}, NewHTTPListener(cfg, tab, ups, Options{Observer: rec, ObserveDetail: true}))
			if err := srv.Listen(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			served := make(chan error, 1)
			go func() { served <- srv.Serve(ctx) }()
			defer func() { cancel(); <-served }()
			base := "http://" + srv.Addrs()["test"].String()

			c := newClient(t, false)
			for _, path := range []string{"/ok", "/fail", "/down"} {
				resp, _ := c.get(t, base+path)
				resp.Body.Close()
			}
			c.CloseIdleConnections()
			// A record is handed over after the response is written:
			// the client can have it before the observer does.
			got := rec.all()
			for deadline := time.Now().Add(10 * time.Second); len(got) < 3 && time.Now().Before(deadline); got = rec.all() {
				time.Sleep(time.Millisecond)
			}
			if len(got) != 3 {
				t.Fatalf("%d records, want 3: %+v", len(got), got)
			}
			want := []struct {
				route, service, cause, path string
				status, attempts            int
				endpoint                    netip.AddrPort
			}{
				{"all", "web.shop", "", "/ok", 200, 1, be.addr},
				{"all", "web.shop", "", "/fail", 503, 1, be.addr},
				{"down", "dead.shop", causeConnectFailure, "/down", 502, 1, dead},
			}
			for i, w := range want {
				r := got[i]
				if r.Listener != "test" || r.Route != w.route || r.Service != w.service || r.Cause != w.cause ||
					r.Status != w.status || r.Attempts != w.attempts || r.Endpoint != w.endpoint ||
					r.Method != "GET" || r.Path != w.path || r.Start.IsZero() || r.Duration <= 0 {
					t.Errorf("record %d = %+v, want %+v", i, r, w)
				}
			}
		})
	}
}

// A head the fast path refuses while parsing (a smuggling shape, a head
// too large) is observed too, with its status and cause.
func TestObserverSeesRefusedHeads(t *testing.T) {
	be := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	rec := &recorder{}
	cfg := HTTPConfig{Name: "test", Listen: "127.0.0.1:0", MaxHeaderBytes: 1 << 10}
	srv := NewServer(ServerConfig{}, Options{}, NewHTTPListener(cfg, routeAll(t, "web.shop"),
		Upstreams{"web.shop": newFakeUpstream(t, be.addr)}, Options{Observer: rec}))
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	defer func() { cancel(); <-served }()
	addr := srv.Addrs()["test"].String()

	rawExchange(t, addr, rawRequest("POST / HTTP/1.1", "Host: x", "Content-Length: 5", "Transfer-Encoding: chunked")+"0\r\n\r\n")
	rawExchange(t, addr, rawRequest("GET / HTTP/1.1", "Host: x", "X-Big: "+strings.Repeat("x", 16<<10)))
	got := rec.all()
	for deadline := time.Now().Add(10 * time.Second); len(got) < 2 && time.Now().Before(deadline); got = rec.all() {
		time.Sleep(time.Millisecond)
	}
	if len(got) != 2 || got[0].Status != 400 || got[0].Cause != causeBadRequest ||
		got[1].Status != 431 || got[1].Cause != causeHeadersTooLarge || got[0].Listener != "test" {
		t.Errorf("records %+v, want a 400 bad_request and a 431 headers_too_large", got)
	}
}
