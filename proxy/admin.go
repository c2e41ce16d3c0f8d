package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// AdminOptions are the admin server's dependencies. The callbacks are called
// from HTTP handler goroutines, concurrently, and must be safe for that and
// quick; a nil callback makes its route answer 404.
type AdminOptions struct {
	// Logger receives the admin server's logs; nil discards them.
	Logger *slog.Logger
	// Ready reports the readiness of the whole process, with the reasons it
	// is not ready.
	Ready func() (ready bool, reasons []string)
	// Config returns the effective config, rendered as JSON.
	Config func() any
	// Endpoints returns per-upstream endpoint status, rendered as JSON.
	Endpoints func() any
	// Views are more JSON routes by path ("/upstreams", "/why"): each
	// gets the request (for its query) and returns a status and a value
	// rendered as JSON. GET and HEAD only, as the routes above.
	Views map[string]func(r *http.Request) (int, any)
	// Handlers are routes served as they are, any method ("/metrics"
	// in Prometheus text format). A path ending in "/" serves its
	// subtree ("/debug/pprof/").
	Handlers map[string]http.Handler
}

// Admin is the admin HTTP server: /ready, /live, /config, /endpoints, all
// JSON. Only GET and HEAD are allowed.
type Admin struct {
	// set at construction
	addr string
	opts AdminOptions
	log  *slog.Logger

	ln       net.Listener // set by Listen
	draining atomic.Bool
}

// NewAdmin returns an admin server for addr (host:port; port 0 picks one).
// It binds nothing until Listen.
func NewAdmin(addr string, opts AdminOptions) *Admin {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Admin{addr: addr, opts: opts, log: log}
}

// Listen binds the admin address.
func (a *Admin) Listen() error {
	if a.ln != nil {
		return errors.New("admin: Listen called twice")
	}
	ln, err := net.Listen("tcp", a.addr)
	if err != nil {
		return err
	}
	a.ln = ln
	return nil
}

// Addr returns the bound address, or nil before Listen.
func (a *Admin) Addr() net.Addr {
	if a.ln == nil {
		return nil
	}
	return a.ln.Addr()
}

// SetDraining makes /ready answer 503 {"ready":false,"reasons":["draining"]}
// from now on, whatever AdminOptions.Ready says: the first step of a drain,
// so load balancers and Kubernetes stop sending before the listeners close.
func (a *Admin) SetDraining() { a.draining.Store(true) }

// Serve answers requests until ctx ends, then shuts the server down
// gracefully (in-flight requests get 5s) and returns nil. Listen must have
// succeeded.
func (a *Admin) Serve(ctx context.Context) error {
	if a.ln == nil {
		return errors.New("admin: Serve called before Listen")
	}
	srv := &http.Server{
		Handler:           a,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(a.ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("admin: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	<-served // http.ErrServerClosed
	return nil
}

type readyBody struct {
	Ready   bool     `json:"ready"`
	Reasons []string `json:"reasons,omitempty"`
}

type errorBody struct {
	Error string `json:"error"`
}

// ServeHTTP routes the admin API.
func (a *Admin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var get func() (int, any)
	switch r.URL.Path {
	case "/ready":
		get = a.ready
	case "/live":
		get = func() (int, any) { return http.StatusOK, map[string]bool{"live": true} }
	case "/config":
		get = a.render(a.opts.Config, "config")
	case "/endpoints":
		get = a.render(a.opts.Endpoints, "endpoints")
	default:
		if h := a.handler(r.URL.Path); h != nil {
			h.ServeHTTP(w, r)
			return
		}
		if v := a.opts.Views[r.URL.Path]; v != nil {
			get = func() (int, any) { return v(r) }
			break
		}
		writeJSON(w, http.StatusNotFound, errorBody{Error: "not found: " + r.URL.Path +
			" (try " + strings.Join(a.paths(), ", ") + ")"})
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: "method " + r.Method + " not allowed"})
		return
	}
	code, v := get()
	writeJSON(w, code, v)
}

func (a *Admin) ready() (int, any) {
	if a.draining.Load() {
		return http.StatusServiceUnavailable, readyBody{Reasons: []string{"draining"}}
	}
	if a.opts.Ready == nil {
		return http.StatusOK, readyBody{Ready: true}
	}
	ok, reasons := a.opts.Ready()
	if ok {
		return http.StatusOK, readyBody{Ready: true}
	}
	if len(reasons) == 0 {
		reasons = []string{"not ready"}
	}
	return http.StatusServiceUnavailable, readyBody{Reasons: reasons}
}

func (a *Admin) render(f func() any, what string) func() (int, any) {
	return func() (int, any) {
		if f == nil {
			return http.StatusNotFound, errorBody{Error: what + " is not available"}
		}
		return http.StatusOK, f()
	}
}

// writeJSON writes v indented, or a 500 JSON error if v does not marshal.
func writeJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		code = http.StatusInternalServerError
		body, _ = json.Marshal(errorBody{Error: "rendering JSON: " + err.Error()})
	}
	body = append(body, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write(body)
}

// handler returns the Handlers entry for path: exact, else the longest
// subtree ("/debug/pprof/") that holds it.
func (a *Admin) handler(path string) http.Handler {
	if h, ok := a.opts.Handlers[path]; ok {
		return h
	}
	var best string
	for p := range a.opts.Handlers {
		if strings.HasSuffix(p, "/") && strings.HasPrefix(path, p) && len(p) > len(best) {
			best = p
		}
	}
	if best == "" {
		return nil
	}
	return a.opts.Handlers[best]
}

// paths lists the routes the admin server answers, for a 404's hint.
func (a *Admin) paths() []string {
	ps := []string{"/ready", "/live", "/config", "/endpoints"}
	for p := range a.opts.Views {
		ps = append(ps, p)
	}
	for p := range a.opts.Handlers {
		ps = append(ps, p)
	}
	slices.Sort(ps[4:])
	return ps
}
