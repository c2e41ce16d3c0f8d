package proxy

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestAdmin(t *testing.T) {
	var ready atomic.Bool
	a := NewAdmin("127.0.0.1:0", AdminOptions{
		Ready: func() (bool, []string) {
			if ready.Load() {
				return true, nil
			}
			return false, []string{"upstream orders.shop: waiting for its first discovery answer"}
		},
		Config:    func() any { return map[string]any{"admin": map[string]string{"listen": "127.0.0.1:0"}} },
		Endpoints: func() any { return []map[string]any{{"service": "orders.shop", "ready": 2}} },
	})
	if a.Addr() != nil {
		t.Errorf("Addr() = %v before Listen", a.Addr())
	}
	if err := a.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	base := "http://" + a.Addr().String()
	do := func(method, path string) (int, http.Header, any) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: Content-Type %q", method, path, ct)
		}
		var v any
		if method != http.MethodHead {
			if err := json.Unmarshal(body, &v); err != nil {
				t.Errorf("%s %s: body %q: %v", method, path, body, err)
			}
		}
		return resp.StatusCode, resp.Header, v
	}

	type step struct {
		method, path string
		code         int
		body         string // JSON; "" skips the body check
		allow        string
	}
	check := func(steps ...step) {
		t.Helper()
		for _, s := range steps {
			code, h, v := do(s.method, s.path)
			if code != s.code {
				t.Errorf("%s %s: status %d, want %d", s.method, s.path, code, s.code)
			}
			if s.body != "" {
				var want any
				if err := json.Unmarshal([]byte(s.body), &want); err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(v, want); diff != "" {
					t.Errorf("%s %s: body (-got +want):\n%s", s.method, s.path, diff)
				}
			}
			if got := h.Get("Allow"); got != s.allow {
				t.Errorf("%s %s: Allow %q, want %q", s.method, s.path, got, s.allow)
			}
		}
	}

	check(
		step{"GET", "/ready", 503, `{"ready":false,"reasons":["upstream orders.shop: waiting for its first discovery answer"]}`, ""},
		step{"GET", "/live", 200, `{"live":true}`, ""},
		step{"GET", "/config", 200, `{"admin":{"listen":"127.0.0.1:0"}}`, ""},
		step{"GET", "/endpoints", 200, `[{"service":"orders.shop","ready":2}]`, ""},
		step{"HEAD", "/live", 200, "", ""},
		step{"GET", "/nope", 404, `{"error":"not found: /nope (try /ready, /live, /config, /endpoints)"}`, ""},
		step{"POST", "/ready", 405, `{"error":"method POST not allowed"}`, "GET, HEAD"},
		step{"DELETE", "/config", 405, "", "GET, HEAD"},
	)
	ready.Store(true)
	check(step{"GET", "/ready", 200, `{"ready":true}`, ""})
	a.SetDraining()
	check(
		step{"GET", "/ready", 503, `{"ready":false,"reasons":["draining"]}`, ""},
		step{"GET", "/live", 200, `{"live":true}`, ""},
	)
}

// Missing callbacks: ready by default, 404 for what is not available, and a
// value that does not render is a 500 JSON error.
func TestAdminWithoutCallbacks(t *testing.T) {
	a := NewAdmin("127.0.0.1:0", AdminOptions{Endpoints: func() any { return func() {} }})
	if err := a.Serve(context.Background()); err == nil {
		t.Error("Serve before Listen returned nil")
	}
	if err := a.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for path, want := range map[string]struct {
		code int
		body string
	}{
		"/ready":     {200, `"ready": true`},
		"/config":    {404, `"config is not available"`},
		"/endpoints": {500, `"rendering JSON: json: unsupported type: func()"`},
	} {
		resp, err := client.Get("http://" + a.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want.code || !strings.Contains(string(body), want.body) {
			t.Errorf("GET %s = %d %s, want %d with %s", path, resp.StatusCode, body, want.code, want.body)
		}
	}
}

// Views answer JSON with the request in hand; Handlers serve as they are,
// a path ending in "/" its subtree.
func TestAdminViewsAndHandlers(t *testing.T) {
	a := NewAdmin("127.0.0.1:0", AdminOptions{
		Views: map[string]func(*http.Request) (int, any){
			"/why": func(r *http.Request) (int, any) {
				return http.StatusOK, map[string]string{"host": r.URL.Query().Get("host")}
			},
		},
		Handlers: map[string]http.Handler{
			"/metrics": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "m 1\n") }),
			"/debug/pprof/": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, "pprof "+r.URL.Path)
			}),
		},
	})
	if err := a.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx) }()
	defer func() { cancel(); <-served }()
	base := "http://" + a.Addr().String()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for _, tc := range []struct {
		method, path string
		code         int
		body         string
	}{
		{"GET", "/why?host=a.example", 200, "{\n  \"host\": \"a.example\"\n}"},
		{"POST", "/why", 405, ""},
		{"GET", "/metrics", 200, "m 1\n"},
		{"GET", "/debug/pprof/heap", 200, "pprof /debug/pprof/heap"},
		{"GET", "/nope", 404, ""},
	} {
		req, _ := http.NewRequest(tc.method, base+tc.path, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || (tc.body != "" && strings.TrimSpace(string(b)) != strings.TrimSpace(tc.body)) {
			t.Errorf("%s %s = %d %q, want %d %q", tc.method, tc.path, resp.StatusCode, b, tc.code, tc.body)
		}
		if tc.code == 404 && !strings.Contains(string(b), "/metrics") {
			t.Errorf("404 hint %q does not list /metrics", b)
		}
	}
}
