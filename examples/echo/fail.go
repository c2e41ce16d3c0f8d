package main

import (
	"flag"
	"net/http"
	"sync/atomic"
)

// failEvery makes an HTTP-mode backend flaky on purpose, for tests of
// outlier detection and retries: every N-th request (counted from the
// first) is answered 503 instead of the JSON echo; 1 fails them all.
var failEvery = flag.Int("fail-every", 0, "http mode: answer every N-th request with 503 (1: every request; 0: none)")

// failing wraps h so that every n-th request gets 503 and a body naming
// the backend; n < 1 returns h unchanged.
func failing(h http.Handler, name string, n int) http.Handler {
	if n < 1 {
		return h
	}
	var count atomic.Uint64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if count.Add(1)%uint64(n) != 0 {
			h.ServeHTTP(w, r)
			return
		}
		w.Header().Set("X-Echo-Name", name)
		http.Error(w, name+": failing on purpose (-fail-every)", http.StatusServiceUnavailable)
	})
}
