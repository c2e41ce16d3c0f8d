package e2e

import (
	"net"
	"net/http"
	"testing"
)

// A route rate limit from the config file, through the real binary: with
// burst 3 and a refill of one token per 1000s, exactly 3 of 8 requests
// reach the backend and the rest get 429 with Retry-After and the
// rate_limited cause. Ports 9660-9679 are this file's.
func TestLimitsRateLimit429(t *testing.T) {
	for _, port := range []string{"15000", "9660", "9661"} {
		ln, err := net.Listen("tcp", "127.0.0.1:"+port)
		if err != nil {
			t.Fatalf("port %s is taken by another process (%v); stop it and run the tests again", port, err)
		}
		ln.Close()
	}
	startEcho(t, "limited", "127.0.0.1:9661", "-mode", "http")
	startResilience(t, `outbound:
  - name: web
    listen: 127.0.0.1:9660
    protocol: http
    routes:
      - name: all
        backends: [{service: limited.e2e}]
        rate_limit: {rate: 0.001, burst: 3}
`, `services:
  - name: limited.e2e
    endpoints:
      - {id: limited, address: 127.0.0.1, port: 9661}
`)
	client := &http.Client{Timeout: waitLimit}
	var got []string
	for range 8 {
		resp, a, _ := get(t, client, "http://127.0.0.1:9660/")
		got = append(got, resp.Status+" "+resp.Header.Get("X-Outrigger-Error")+" "+resp.Header.Get("Retry-After")+" "+a.Name)
	}
	want := []string{"200 OK   limited", "200 OK   limited", "200 OK   limited"}
	for range 5 {
		want = append(want, "429 Too Many Requests rate_limited 1000 ")
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("request %d: %q, want %q", i, got[i], want[i])
		}
	}
}
