package proxy

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// RequestRecord.BytesOut counts the response body bytes the client got,
// the head (and chunk framing) excluded, on both engines alike: a
// Content-Length body, a chunked one relayed over several reads, one
// large enough for splice on the fast path, one delimited by the
// endpoint's close, and none for HEAD.
func TestRecordBytesOut(t *testing.T) {
	const (
		clSize    = 1000
		chunk     = 16 << 10
		chunks    = 5
		largeSize = 1 << 20 // well past spliceMin after the first read
		eofSize   = 70000
	)
	be := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/cl":
			w.Header().Set("Content-Length", strconv.Itoa(clSize))
			w.Write(bytes.Repeat([]byte("c"), clSize))
		case "/chunked":
			for range chunks {
				w.Write(bytes.Repeat([]byte("k"), chunk))
				w.(http.Flusher).Flush()
			}
		case "/large":
			w.Header().Set("Content-Length", strconv.Itoa(largeSize))
			w.Write(bytes.Repeat([]byte("l"), largeSize))
		case "/eof":
			c, bw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			bw.WriteString("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
			bw.Write(bytes.Repeat([]byte("e"), eofSize))
			bw.Flush()
		}
	}))
	for _, engine := range []struct {
		name string
		cfg  HTTPConfig
	}{{"fast path", HTTPConfig{}}, {"net/http", HTTPConfig{NetHTTPOnly: true}}} {
		t.Run(engine.name, func(t *testing.T) {
			rec := &recorder{}
			cfg := engine.cfg
			cfg.Name, cfg.Listen = "test", "127.0.0.1:0"
			srv := NewServer(ServerConfig{}, Options{}, NewHTTPListener(cfg, routeAll(t, "web.shop"),
				Upstreams{"web.shop": newFakeUpstream(t, be.addr)}, Options{Observer: rec}))
			if err := srv.Listen(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			served := make(chan error, 1)
			go func() { served <- srv.Serve(ctx) }()
			defer func() { cancel(); <-served }()
			base := "http://" + srv.Addrs()["test"].String()

			c := newClient(t, false)
			reqs := []struct {
				method, path string
				want         int64
			}{
				{"GET", "/cl", clSize},
				{"GET", "/chunked", chunk * chunks},
				{"GET", "/large", largeSize},
				{"GET", "/eof", eofSize},
				{"HEAD", "/cl", 0},
			}
			var want []int64
			for _, r := range reqs {
				req, _ := http.NewRequest(r.method, base+r.path, nil)
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				n, err := io.Copy(io.Discard, bufio.NewReader(resp.Body))
				resp.Body.Close()
				if err != nil || n != r.want {
					t.Fatalf("%s %s: read %d bytes (%v), want %d", r.method, r.path, n, err, r.want)
				}
				if r.path == "/chunked" && len(resp.TransferEncoding) == 0 {
					t.Errorf("/chunked came with Content-Length %d: the test needs a chunked response", resp.ContentLength)
				}
				want = append(want, r.want)
			}
			c.CloseIdleConnections()
			got := rec.all()
			for deadline := time.Now().Add(waitLimit); len(got) < len(reqs) && time.Now().Before(deadline); got = rec.all() {
				time.Sleep(time.Millisecond)
			}
			var bytesOut []int64
			for _, r := range got {
				bytesOut = append(bytesOut, r.BytesOut)
			}
			if diff := cmp.Diff(bytesOut, want); diff != "" {
				t.Errorf("BytesOut of /cl, /chunked, /large, /eof, HEAD /cl (-got +want):\n%s", diff)
			}
		})
	}
}
