package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Client is a raw HTTP/2 client connection (h2c with prior knowledge,
// RFC 9113 §3.3) built on x/net/http2's Framer, so that a test controls
// every frame: it can reset one stream, withhold flow-control credit from
// another, and see GOAWAY and RST_STREAM as they arrive.
//
// Connection-level flow-control credit is returned for every DATA frame at
// once; stream-level credit only for streams opened with autoWindow.
type h2Client struct {
	t  *testing.T
	nc net.Conn

	wmu  sync.Mutex // guards fr's writing side, henc and hbuf
	fr   *http2.Framer
	henc *hpack.Encoder
	hbuf bytes.Buffer
	next uint32 // next stream ID

	mu      sync.Mutex
	streams map[uint32]*h2Stream
	goaway  chan struct{} // closed when the proxy sends GOAWAY
	gotAway bool
	readErr error
	done    chan struct{} // closed when the read loop ends
}

// h2Stream is one request's response as the client saw it.
type h2Stream struct {
	id         uint32
	autoWindow bool

	mu       sync.Mutex
	status   string
	body     bytes.Buffer
	received int64
	endOK    bool          // END_STREAM arrived
	rst      http2.ErrCode // RST_STREAM code, if one arrived
	reset    bool
	progress chan struct{} // cap 1: signalled on every frame
	ended    chan struct{} // closed at END_STREAM or RST_STREAM
}

func dialH2(t *testing.T, addr string) *h2Client {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, waitLimit)
	if err != nil {
		t.Fatal(err)
	}
	c := &h2Client{t: t, nc: nc, next: 1, streams: map[uint32]*h2Stream{},
		goaway: make(chan struct{}), done: make(chan struct{})}
	c.fr = http2.NewFramer(nc, nc)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.henc = hpack.NewEncoder(&c.hbuf)
	if _, err := io.WriteString(nc, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	c.wmu.Lock()
	err = c.fr.WriteSettings()
	if err == nil {
		// Lots of connection credit up front: only stream windows limit.
		err = c.fr.WriteWindowUpdate(0, 1<<30)
	}
	c.wmu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	go c.readLoop()
	t.Cleanup(func() {
		nc.Close()
		<-c.done
	})
	return c
}

func (c *h2Client) readLoop() {
	defer close(c.done)
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.mu.Lock()
			c.readErr = err
			for _, s := range c.streams {
				s.finish(false, 0, false)
			}
			c.mu.Unlock()
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.write(func() error { return c.fr.WriteSettingsAck() })
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				c.write(func() error { return c.fr.WritePing(true, f.Data) })
			}
		case *http2.GoAwayFrame:
			c.mu.Lock()
			if !c.gotAway {
				c.gotAway = true
				close(c.goaway)
			}
			c.mu.Unlock()
		case *http2.MetaHeadersFrame:
			if s := c.stream(f.StreamID); s != nil {
				s.mu.Lock()
				if st := f.PseudoValue("status"); st != "" && !strings.HasPrefix(st, "1") {
					s.status = st
				}
				s.mu.Unlock()
				s.signal()
				if f.StreamEnded() {
					s.finish(true, 0, false)
				}
			}
		case *http2.DataFrame:
			n := len(f.Data())
			if s := c.stream(f.StreamID); s != nil {
				s.mu.Lock()
				s.body.Write(f.Data())
				s.received += int64(n)
				s.mu.Unlock()
				s.signal()
				if n > 0 {
					c.write(func() error {
						if s.autoWindow {
							if err := c.fr.WriteWindowUpdate(s.id, uint32(n)); err != nil {
								return err
							}
						}
						return c.fr.WriteWindowUpdate(0, uint32(n))
					})
				}
				if f.StreamEnded() {
					s.finish(true, 0, false)
				}
			}
		case *http2.RSTStreamFrame:
			if s := c.stream(f.StreamID); s != nil {
				s.finish(false, f.ErrCode, true)
			}
		}
	}
}

// write runs one framer write under the write lock; errors end the test's
// use of the connection (the reader sees them too).
func (c *h2Client) write(f func() error) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return f()
}

func (c *h2Client) stream(id uint32) *h2Stream {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.streams[id]
}

// get opens a stream with a GET of path (END_STREAM on the headers).
func (c *h2Client) get(path string, autoWindow bool) *h2Stream {
	c.t.Helper()
	c.wmu.Lock()
	defer c.wmu.Unlock()
	s := &h2Stream{id: c.next, autoWindow: autoWindow, progress: make(chan struct{}, 1), ended: make(chan struct{})}
	c.next += 2
	c.mu.Lock()
	c.streams[s.id] = s
	c.mu.Unlock()
	c.hbuf.Reset()
	for _, hf := range []hpack.HeaderField{
		{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "http"},
		{Name: ":authority", Value: "h2.example"}, {Name: ":path", Value: path},
	} {
		c.henc.WriteField(hf)
	}
	err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: s.id, BlockFragment: c.hbuf.Bytes(),
		EndStream: true, EndHeaders: true})
	if err != nil {
		c.t.Fatalf("opening stream %d: %v", s.id, err)
	}
	return s
}

func (c *h2Client) reset(s *h2Stream, code http2.ErrCode) {
	c.t.Helper()
	if err := c.write(func() error { return c.fr.WriteRSTStream(s.id, code) }); err != nil {
		c.t.Fatal(err)
	}
}

// credit gives stream s n more bytes of flow-control window.
func (c *h2Client) credit(s *h2Stream, n uint32) {
	c.t.Helper()
	if err := c.write(func() error { return c.fr.WriteWindowUpdate(s.id, n) }); err != nil {
		c.t.Fatal(err)
	}
}

func (s *h2Stream) signal() {
	select {
	case s.progress <- struct{}{}:
	default:
	}
}

func (s *h2Stream) finish(ok bool, code http2.ErrCode, rst bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.ended:
		return
	default:
	}
	s.endOK, s.rst, s.reset = ok, code, rst
	close(s.ended)
}

// wait waits for the stream to end and returns its status and body.
func (s *h2Stream) wait(t *testing.T) (status, body string) {
	t.Helper()
	select {
	case <-s.ended:
	case <-time.After(waitLimit):
		t.Fatalf("stream %d did not end", s.id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.endOK {
		t.Fatalf("stream %d: no END_STREAM (reset %v, code %v; status %q, %d bytes)", s.id, s.reset, s.rst, s.status, s.received)
	}
	return s.status, s.body.String()
}

// waitHeaders waits for the response headers of s.
func (s *h2Stream) waitHeaders(t *testing.T) string {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		s.mu.Lock()
		st := s.status
		s.mu.Unlock()
		if st != "" {
			return st
		}
		select {
		case <-s.progress:
		case <-s.ended:
			t.Fatalf("stream %d ended before its headers", s.id)
		case <-deadline:
			t.Fatalf("no headers on stream %d", s.id)
		}
	}
}

// waitReceived waits until s received at least n body bytes.
func (s *h2Stream) waitReceived(t *testing.T, n int64) {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		s.mu.Lock()
		got := s.received
		s.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-s.progress:
		case <-s.ended:
			t.Fatalf("stream %d ended after %d of %d bytes", s.id, got, n)
		case <-deadline:
			t.Fatalf("stream %d: %d of %d bytes", s.id, got, n)
		}
	}
}

func (s *h2Stream) bytesReceived() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.received
}

// startH2Proxy runs an HTTP listener with h2c upstreams to be.
func startH2Proxy(t *testing.T, be netip.AddrPort, scfg ServerConfig) (*testProxy, *fakeUpstream) {
	t.Helper()
	up := newFakeUpstream(t, be)
	return startHTTPProxy(t, HTTPConfig{UpstreamProtocol: UpstreamH2C}, routeAll(t, "h2.test"), Upstreams{"h2.test": up}, scfg), up
}

// Many streams on one client connection: the client resets one, the
// backend resets another; the proxy passes each reset on to its own
// stream only, and every other stream completes whole.
func TestH2StreamResetsStayOnTheirStream(t *testing.T) {
	release := newGate(t)
	entered := make(chan string, 32)
	canceled := make(chan string, 4)
	be := startH2CBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "start:"+r.URL.Path+";")
		http.NewResponseController(w).Flush()
		entered <- r.URL.Path
		if r.URL.Path == "/backend-reset" {
			// RST_STREAM from the endpoint, mid-body.
			panic(http.ErrAbortHandler)
		}
		select {
		case <-release.ch:
			io.WriteString(w, "end")
		case <-r.Context().Done():
			canceled <- r.URL.Path
		}
	}))
	p, up := startH2Proxy(t, be.addr, ServerConfig{})
	c := dialH2(t, p.addr)

	const others = 8
	var normal []*h2Stream
	for i := range others {
		normal = append(normal, c.get(fmt.Sprintf("/s%d", i), true))
	}
	byClient := c.get("/client-reset", true)
	byBackend := c.get("/backend-reset", true)
	for range others + 2 {
		select {
		case <-entered:
		case <-time.After(waitLimit):
			t.Fatal("not every stream reached the backend")
		}
	}

	byClient.waitHeaders(t)
	c.reset(byClient, http2.ErrCodeCancel)
	select {
	case path := <-canceled:
		if path != "/client-reset" {
			t.Fatalf("backend request %s canceled, want /client-reset", path)
		}
	case <-time.After(waitLimit):
		t.Fatal("the client's RST_STREAM did not cancel the request at the backend")
	}

	select {
	case <-byBackend.ended:
	case <-time.After(waitLimit):
		t.Fatal("the backend's reset stream did not end at the client")
	}
	byBackend.mu.Lock()
	if byBackend.endOK || !byBackend.reset {
		t.Errorf("backend-reset stream ended with END_STREAM %v, RST_STREAM %v (%v): a truncated body must not look complete",
			byBackend.endOK, byBackend.reset, byBackend.rst)
	}
	byBackend.mu.Unlock()

	release.open()
	for i, s := range normal {
		status, body := s.wait(t)
		if want := fmt.Sprintf("start:/s%d;end", i); status != "200" || body != want {
			t.Errorf("stream %d: %s %q, want 200 %q", s.id, status, body, want)
		}
	}
	// The connection is still good for new streams.
	if status, body := c.get("/after", true).wait(t); status != "200" || body != "start:/after;end" {
		t.Errorf("new stream after the resets: %s %q", status, body)
	}
	select {
	case <-c.goaway:
		t.Error("the proxy sent GOAWAY to the client")
	default:
	}
	assertDonesMatchPicks(t, up)
}

// oneConnListener hands out one connection, then blocks until closed.
type oneConnListener struct {
	c      chan net.Conn
	closed chan struct{}
	once   sync.Once
	addr   net.Addr
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.c:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}
func (l *oneConnListener) Close() error   { l.once.Do(func() { close(l.closed) }); return nil }
func (l *oneConnListener) Addr() net.Addr { return l.addr }

// perConnH2Backend serves each accepted connection with its own h2c-only
// http.Server, so that one connection can be shut down (GOAWAY, then close
// once its streams are done) while new connections are still served.
type perConnH2Backend struct {
	addr netip.AddrPort
	mu   sync.Mutex
	srvs []*http.Server
	wg   sync.WaitGroup
}

type connIndexKey struct{}

func startPerConnH2Backend(t *testing.T, h http.Handler) *perConnH2Backend {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &perConnH2Backend{addr: netip.MustParseAddrPort(ln.Addr().String())}
	b.wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			idx := len(b.srvs) + 1
			srv := &http.Server{Handler: h, Protocols: new(http.Protocols),
				ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
					return context.WithValue(ctx, connIndexKey{}, idx)
				}}
			srv.Protocols.SetUnencryptedHTTP2(true)
			b.srvs = append(b.srvs, srv)
			b.mu.Unlock()
			ol := &oneConnListener{c: make(chan net.Conn, 1), closed: make(chan struct{}), addr: ln.Addr()}
			ol.c <- nc
			b.wg.Go(func() { srv.Serve(ol) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		for _, s := range b.srvs {
			s.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
	})
	return b
}

func (b *perConnH2Backend) conns() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.srvs)
}

func (b *perConnH2Backend) server(i int) *http.Server {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.srvs[i-1]
}

// The endpoint shuts its connection down gracefully (GOAWAY): the stream
// in flight on it finishes, streams racing the GOAWAY are retried or fail
// cleanly, and new streams go over a new upstream connection; the client's
// connection to the proxy is not affected.
func TestH2UpstreamGoAway(t *testing.T) {
	release := newGate(t)
	entered := make(chan struct{}, 1)
	be := startPerConnH2Backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		idx := r.Context().Value(connIndexKey{}).(int)
		if r.URL.Path == "/slow" {
			w.WriteHeader(http.StatusOK)
			io.WriteString(w, "slow-start;")
			http.NewResponseController(w).Flush()
			entered <- struct{}{}
			<-release.ch
		}
		fmt.Fprintf(w, "conn %d", idx)
	}))
	p, up := startH2Proxy(t, be.addr, ServerConfig{})
	c := dialH2(t, p.addr)

	slow := c.get("/slow", true)
	select {
	case <-entered:
	case <-time.After(waitLimit):
		t.Fatal("the slow request did not reach the backend")
	}
	if status, body := c.get("/quick", true).wait(t); status != "200" || body != "conn 1" {
		t.Fatalf("before the GOAWAY: %s %q", status, body)
	}

	shutdown := make(chan error, 1)
	go func() { shutdown <- be.server(1).Shutdown(context.Background()) }()

	// Streams racing the GOAWAY: each is answered, by the endpoint or as
	// a clean proxy error, never left hanging or reset.
	var racing []*h2Stream
	for range 5 {
		racing = append(racing, c.get("/quick", true))
	}
	for _, s := range racing {
		status, body := s.wait(t)
		if status != "200" && status != "502" && status != "503" {
			t.Errorf("stream racing the GOAWAY: %s %q", status, body)
		}
	}

	// The in-flight stream is below the GOAWAY's last stream ID: it
	// finishes (RFC 9113 §6.8), and only then does the endpoint close.
	select {
	case err := <-shutdown:
		t.Fatalf("endpoint shutdown finished (%v) while a stream was in flight", err)
	default:
	}
	release.open()
	if status, body := slow.wait(t); status != "200" || body != "slow-start;conn 1" {
		t.Errorf("in-flight stream: %s %q, want 200 %q", status, body, "slow-start;conn 1")
	}
	select {
	case err := <-shutdown:
		if err != nil {
			t.Fatalf("endpoint shutdown: %v", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("endpoint shutdown did not finish")
	}

	// New streams use a new upstream connection.
	for range 3 {
		status, body := c.get("/quick", true).wait(t)
		if status != "200" || body == "conn 1" || !strings.HasPrefix(body, "conn ") {
			t.Errorf("after the GOAWAY: %s %q, want 200 from a new upstream connection", status, body)
		}
	}
	if n := be.conns(); n < 2 {
		t.Errorf("backend saw %d connections, want a second one after the GOAWAY", n)
	}
	select {
	case <-c.goaway:
		t.Error("the proxy sent GOAWAY to the client")
	default:
	}
	assertDonesMatchPicks(t, up)
}

// A client that reads one large response slowly: the proxy holds to the
// client's flow-control window, does not read the whole body from the
// endpoint meanwhile (bounded memory), and other streams on the same
// connection keep completing.
func TestH2FlowControlSlowReader(t *testing.T) {
	const total = 24 << 20
	// bound is far above what flow control and socket buffers hold on the
	// way (the upstream HTTP/2 stream window is 4 MiB in net/http), and
	// far below total: a proxy that buffers the body crosses it.
	const bound = 12 << 20
	var written atomic.Int64
	// The body is bytes 0..250 repeated; chunks are slices of one buffer.
	period := make([]byte, 32<<10+251)
	for i := range period {
		period[i] = byte(i % 251)
	}
	pattern := func(off, n int) []byte {
		if n <= 32<<10 {
			return period[off%251 : off%251+n]
		}
		return bytes.Repeat(period[:251], n/251+1)[:n]
	}
	be := startH2CBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/big" {
			io.WriteString(w, "small "+r.URL.Path)
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(total))
		for off := 0; off < total; off += 32 << 10 {
			if _, err := w.Write(pattern(off, 32<<10)); err != nil {
				return
			}
			written.Add(32 << 10)
		}
	}))
	p, _ := startH2Proxy(t, be.addr, ServerConfig{})
	c := dialH2(t, p.addr)

	big := c.get("/big", false)
	// The client granted the default 65535-byte stream window and nothing
	// more: the proxy may send that much and must stop there.
	big.waitReceived(t, 65535)
	for i := range 10 {
		path := fmt.Sprintf("/small%d", i)
		if status, body := c.get(path, true).wait(t); status != "200" || body != "small "+path {
			t.Fatalf("stream beside the slow one: %s %q", status, body)
		}
	}
	if got := big.bytesReceived(); got != 65535 {
		t.Errorf("slow stream received %d bytes with a 65535-byte window", got)
	}
	// Wait until the endpoint is held back, or has written more than a
	// bounded proxy lets it.
	last, still := int64(-1), 0
	for still < 20 {
		n := written.Load()
		if n > bound {
			t.Fatalf("endpoint wrote %d bytes while the client read 65535: the proxy buffers the body", n)
		}
		if n == last {
			still++
		} else {
			last, still = n, 0
		}
		time.Sleep(10 * time.Millisecond)
	}

	t.Logf("endpoint held back after writing %d bytes", last)
	// Now read it all, in window-sized steps, and check every byte.
	for got := big.bytesReceived(); got < total; got = big.bytesReceived() {
		c.credit(big, 1<<20)
		big.waitReceived(t, min(got+1<<20, total))
	}
	status, body := big.wait(t)
	if status != "200" || len(body) != total || !bytes.Equal([]byte(body), pattern(0, total)) {
		t.Fatalf("slow stream: %s, %d bytes (want %d, pattern intact %v)", status, len(body), total, bytes.Equal([]byte(body), pattern(0, total)))
	}
}
