package proxy

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// HTTP/1 over TLS is guarded against smuggling as cleartext is: an HTTP/1.0
// request (which the fast path hands to net/http) with Transfer-Encoding and
// keep-alive must not let a second request hidden in its body reach the
// endpoint, whether ALPN chose http/1.1 or nothing.
func TestTLSListenerRefusesSmuggling(t *testing.T) {
	var mu sync.Mutex
	var paths []string
	be := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		io.Copy(io.Discard, r.Body)
	}))
	up := newFakeUpstream(t, be.addr)
	cert := testCert(t, "front.test", time.Hour)
	for _, mode := range []string{"tls-only", "auto+tls"} {
		t.Run(mode, func(t *testing.T) {
			cfg := FrontConfig{TLS: StaticCert{&cert.tls}}
			var fb Upstream
			if mode == "auto+tls" {
				cfg.Sniff = &SniffConfig{Timeout: time.Second}
				fb = up
			}
			p := startFrontProxy(t, cfg, routeAll(t, "web.shop"), Upstreams{"web.shop": up}, fb)
			for _, alpn := range [][]string{{"http/1.1"}, nil} {
				raw, err := net.Dial("tcp", p.addr)
				if err != nil {
					t.Fatal(err)
				}
				c := tls.Client(raw, &tls.Config{RootCAs: testCA.pool, ServerName: "front.test", NextProtos: alpn})
				c.SetDeadline(time.Now().Add(3 * time.Second))
				io.WriteString(c, rawRequest("POST / HTTP/1.0", "Host: x", "Connection: keep-alive", "Transfer-Encoding: chunked")+
					"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
				br := bufio.NewReader(c)
				for i := 0; i < 2; i++ {
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						t.Logf("alpn %v response %d: %v", alpn, i, err)
						break
					}
					io.Copy(io.Discard, resp.Body)
					t.Logf("alpn %v response %d: %s", alpn, i, resp.Status)
				}
				c.Close()
			}
			mu.Lock()
			defer mu.Unlock()
			for _, p := range paths {
				if p == "/smuggled" {
					t.Errorf("smuggled request reached the endpoint over TLS (%s): %q", mode, paths)
					break
				}
			}
			paths = nil
		})
	}
}
