package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/outrigger-mesh/outrigger/proxy/route"
)

// One grpc-go ClientConn to the proxy (one HTTP/2 connection) has its unary
// calls balanced one by one over three backends, and the proxy multiplexes
// them over one upstream connection per backend.
func TestGRPCUnaryBalancedOverOneClientConn(t *testing.T) {
	var backends []*grpcBackend
	var addrs []netip.AddrPort
	for _, name := range []string{"a", "b", "c"} {
		b := startGRPCBackend(t, name)
		backends = append(backends, b)
		addrs = append(addrs, b.addr)
	}
	up := newFakeUpstream(t, addrs...)
	p := startGRPCProxy(t, HTTPConfig{}, routeAll(t, "grpc.shop"), Upstreams{"grpc.shop": up})
	var dials atomic.Int64
	cc := dialGRPC(t, p.addr, &dials)
	hc := healthpb.NewHealthClient(cc)

	seen := map[string]int{}
	for range 30 {
		var hdr metadata.MD
		resp, err := hc.Check(callCtx(t), &healthpb.HealthCheckRequest{}, grpc.Header(&hdr))
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("status %v, want SERVING", resp.GetStatus())
		}
		seen[strings.Join(hdr.Get("x-backend"), ",")]++
	}
	if diff := cmp.Diff(seen, map[string]int{"a": 10, "b": 10, "c": 10}); diff != "" {
		t.Errorf("calls per backend seen by the client (-got +want):\n%s", diff)
	}
	for _, b := range backends {
		if n := b.calls.Load(); n != 10 {
			t.Errorf("backend %s served %d calls, want 10", b.name, n)
		}
		if n := b.conns.Load(); n != 1 {
			t.Errorf("backend %s accepted %d connections, want 1 (multiplexed)", b.name, n)
		}
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("client dialed %d connections, want 1", n)
	}
	for _, d := range assertDonesMatchPicks(t, up) {
		if d.info.Err != nil {
			t.Errorf("Done(%v) err %v, want nil", d.addr, d.info.Err)
		}
	}
}

// Server-streaming, client-streaming and bidirectional calls stream through
// the proxy message by message: each step waits for the other side's
// previous message, so any buffering on the way would hang the call.
func TestGRPCStreamingCalls(t *testing.T) {
	be := startGRPCBackend(t, "a")
	up := newFakeUpstream(t, be.addr)
	p := startGRPCProxy(t, HTTPConfig{}, routeAll(t, "grpc.shop"), Upstreams{"grpc.shop": up})
	cc := dialGRPC(t, p.addr, nil)

	t.Run("server streaming", func(t *testing.T) {
		be.health.SetServingStatus("orders", healthpb.HealthCheckResponse_SERVING)
		w, err := healthpb.NewHealthClient(cc).Watch(callCtx(t), &healthpb.HealthCheckRequest{Service: "orders"})
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range []healthpb.HealthCheckResponse_ServingStatus{
			healthpb.HealthCheckResponse_SERVING,
			healthpb.HealthCheckResponse_NOT_SERVING,
			healthpb.HealthCheckResponse_SERVING,
		} {
			if i > 0 {
				// The backend sends the next update only now, after the
				// client received the previous one.
				be.health.SetServingStatus("orders", want)
			}
			resp, err := w.Recv()
			if err != nil {
				t.Fatalf("update %d: %v", i, err)
			}
			if resp.GetStatus() != want {
				t.Errorf("update %d: %v, want %v", i, resp.GetStatus(), want)
			}
		}
	})

	t.Run("client streaming", func(t *testing.T) {
		s, err := cc.NewStream(callCtx(t), &grpc.StreamDesc{ClientStreams: true}, "/outrigger.test.Test/Sum")
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range []string{"x", "yy", "zzz"} {
			if err := s.SendMsg([]byte(m)); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.CloseSend(); err != nil {
			t.Fatal(err)
		}
		var out []byte
		if err := s.RecvMsg(&out); err != nil {
			t.Fatal(err)
		}
		if string(out) != "xyyzzz" {
			t.Errorf("sum %q, want %q", out, "xyyzzz")
		}
		if err := s.RecvMsg(&out); err != io.EOF {
			t.Errorf("after the response: %v, want EOF", err)
		}
		if got := s.Trailer().Get("x-count"); !cmp.Equal(got, []string{"3"}) {
			t.Errorf("trailer x-count %q, want 3", got)
		}
	})

	t.Run("bidirectional", func(t *testing.T) {
		s, err := cc.NewStream(callCtx(t), &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, "/outrigger.test.Test/Chat")
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range []string{"ping", "again", strings.Repeat("big", 100_000)} {
			if err := s.SendMsg([]byte(m)); err != nil {
				t.Fatal(err)
			}
			var out []byte
			if err := s.RecvMsg(&out); err != nil {
				t.Fatal(err)
			}
			if string(out) != "echo:"+m {
				t.Errorf("reply of %d bytes %.20q…, want echo of the %d-byte %.20q…", len(out), out, len(m), m)
			}
		}
		if err := s.CloseSend(); err != nil {
			t.Fatal(err)
		}
		var out []byte
		if err := s.RecvMsg(&out); err != io.EOF {
			t.Errorf("after CloseSend: %v, want EOF", err)
		}
	})
	// The Watch never ends by itself: the client canceled it.
	var canceled int
	for _, d := range assertDonesMatchPicks(t, up) {
		switch {
		case errors.Is(d.info.Err, context.Canceled):
			canceled++
		case d.info.Err != nil:
			t.Errorf("Done err %v, want nil", d.info.Err)
		}
	}
	if canceled != 1 {
		t.Errorf("%d Done calls with context.Canceled, want 1 (the Watch)", canceled)
	}
}

// The backend's status code, message (percent-encoded on the wire), custom
// trailers and headers reach the client exactly, both in a trailers-only
// response and after data; Done reports the non-OK status.
func TestGRPCStatusAndTrailersIntact(t *testing.T) {
	be := startGRPCBackend(t, "a")
	up := newFakeUpstream(t, be.addr)
	p := startGRPCProxy(t, HTTPConfig{}, routeAll(t, "grpc.shop"), Upstreams{"grpc.shop": up})
	cc := dialGRPC(t, p.addr, nil)

	// Unary: trailers-only response.
	var hdr, trl metadata.MD
	var out []byte
	err := cc.Invoke(callCtx(t), "/outrigger.test.Test/Fail", []byte("q"), &out, grpc.Header(&hdr), grpc.Trailer(&trl))
	st := status.Convert(err)
	if st.Code() != codes.NotFound || st.Message() != failMessage {
		t.Errorf("status %v %q, want NotFound %q", st.Code(), st.Message(), failMessage)
	}
	if got := trl.Get("x-detail"); !cmp.Equal(got, []string{"shelf-7"}) {
		t.Errorf("trailer x-detail %q, want shelf-7 (trailers %v)", got, trl)
	}
	if got := append(hdr.Get("x-outrigger-error"), trl.Get("x-outrigger-error")...); len(got) != 0 {
		t.Errorf("x-outrigger-error %q on the backend's own status", got)
	}

	// Server streaming: two messages, then the status and a trailer.
	s, err := cc.NewStream(callCtx(t), &grpc.StreamDesc{ServerStreams: true}, "/outrigger.test.Test/Stream")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SendMsg([]byte("go")); err != nil {
		t.Fatal(err)
	}
	s.CloseSend()
	var got []string
	for {
		var m []byte
		if err = s.RecvMsg(&m); err != nil {
			break
		}
		got = append(got, string(m))
	}
	if st := status.Convert(err); st.Code() != codes.Aborted || st.Message() != "stopped after two" {
		t.Errorf("stream status %v %q, want Aborted %q", st.Code(), st.Message(), "stopped after two")
	}
	if !cmp.Equal(got, []string{"one", "two"}) {
		t.Errorf("stream messages %q, want one, two", got)
	}
	if h, _ := s.Header(); !cmp.Equal(h.Get("x-backend"), []string{"a"}) {
		t.Errorf("header x-backend %q, want a", h.Get("x-backend"))
	}
	if got := s.Trailer().Get("x-count"); !cmp.Equal(got, []string{"2"}) {
		t.Errorf("trailer x-count %q, want 2", got)
	}

	// And a call that succeeds.
	if err := cc.Invoke(callCtx(t), "/outrigger.test.Test/Echo", []byte("hi"), &out); err != nil || string(out) != "hi" {
		t.Errorf("Echo: %q, %v", out, err)
	}

	dones := assertDonesMatchPicks(t, up)
	var codesGot []int
	for _, d := range dones {
		var ge *GRPCStatusError
		switch {
		case d.info.Err == nil:
			codesGot = append(codesGot, 0)
		case errors.As(d.info.Err, &ge):
			codesGot = append(codesGot, ge.Code)
		default:
			t.Errorf("Done err %v, want nil or a *GRPCStatusError", d.info.Err)
		}
	}
	if diff := cmp.Diff(codesGot, []int{int(codes.NotFound), int(codes.Aborted), 0}); diff != "" {
		t.Errorf("Done statuses (-got +want):\n%s", diff)
	}
}

// Errors the proxy makes itself reach a gRPC client as gRPC statuses with
// the cause in the x-outrigger-error metadata; a plain HTTP request on the
// same listener still gets a plain HTTP error.
func TestGRPCProxyErrors(t *testing.T) {
	be := startGRPCBackend(t, "a")
	prefix := func(p, svc string) route.RouteConfig {
		return route.RouteConfig{Match: route.MatchConfig{Path: route.PathMatch{Value: p}}, Backends: []route.Backend{{Service: svc}}}
	}
	tab := mustTable(t,
		prefix("/outrigger.test.Test", "grpc.shop"),
		prefix("/outrigger.test.Empty", "empty.shop"),
		prefix("/outrigger.test.Unknown", "unknown.shop"),
		prefix("/outrigger.test.Dead", "dead.shop"),
	)
	ups := Upstreams{
		"grpc.shop":  newFakeUpstream(t, be.addr),
		"empty.shop": newFakeUpstream(t),
		"dead.shop":  newFakeUpstream(t, closedPort(t)),
	}
	p := startGRPCProxy(t, HTTPConfig{ResponseTimeout: 200 * time.Millisecond, MaxBodyBytes: 1000}, tab, ups)
	cc := dialGRPC(t, p.addr, nil)

	for _, tc := range []struct {
		method string
		in     []byte
		code   codes.Code
		cause  string
	}{
		{"/outrigger.test.Nowhere/Echo", nil, codes.Unimplemented, "no_route"},
		{"/outrigger.test.Empty/Echo", nil, codes.Unavailable, "no_endpoints"},
		{"/outrigger.test.Unknown/Echo", nil, codes.Unavailable, "no_endpoints"},
		{"/outrigger.test.Dead/Echo", nil, codes.Unavailable, "connect_failure"},
		{"/outrigger.test.Test/Block", nil, codes.DeadlineExceeded, "upstream_timeout"},
		{"/outrigger.test.Test/Echo", make([]byte, 5000), codes.ResourceExhausted, "body_too_large"},
	} {
		var hdr, trl metadata.MD
		var out []byte
		err := cc.Invoke(callCtx(t), tc.method, tc.in, &out, grpc.Header(&hdr), grpc.Trailer(&trl))
		st := status.Convert(err)
		cause := append(hdr.Get("x-outrigger-error"), trl.Get("x-outrigger-error")...)
		if st.Code() != tc.code || !cmp.Equal(cause, []string{tc.cause}) || !strings.HasPrefix(st.Message(), "outrigger: ") {
			t.Errorf("%s: %v %q x-outrigger-error %q, want %v, %q", tc.method, st.Code(), st.Message(), cause, tc.code, tc.cause)
		}
	}
	// The listener still serves the small requests of the table: the
	// errors did not break the client connection.
	var out []byte
	if err := cc.Invoke(callCtx(t), "/outrigger.test.Test/Echo", []byte("ok"), &out); err != nil || string(out) != "ok" {
		t.Errorf("Echo after the errors: %q, %v", out, err)
	}

	resp, body := newClient(t, false).get(t, "http://"+p.addr+"/nowhere")
	if resp.StatusCode != 404 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") || resp.Header.Get(ErrorHeader) != "no_route" {
		t.Errorf("plain HTTP on the gRPC listener: %s %q %q, want a text/plain 404 no_route", resp.Status, resp.Header.Get("Content-Type"), body)
	}
}

func TestGRPCPercentEncode(t *testing.T) {
	for in, want := range map[string]string{
		"plain text":     "plain text",
		"100%":           "100%25",
		"ü":              "%C3%BC",
		"tab\tnewline\n": "tab%09newline%0A",
	} {
		if got := grpcPercentEncode(in); got != want {
			t.Errorf("grpcPercentEncode(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHTTPConfigUpstreamProtocol(t *testing.T) {
	for _, tc := range []struct {
		cfg  HTTPConfig
		want string // effective protocol, or a substring of the error
		bad  bool
	}{
		{cfg: HTTPConfig{}, want: UpstreamHTTP1},
		{cfg: HTTPConfig{UpstreamProtocol: "h2c"}, want: UpstreamH2C},
		{cfg: HTTPConfig{GRPC: true}, want: UpstreamH2C},
		{cfg: HTTPConfig{GRPC: true, UpstreamProtocol: "h2c"}, want: UpstreamH2C},
		{cfg: HTTPConfig{GRPC: true, UpstreamProtocol: "http1"}, bad: true, want: `grpc needs upstream protocol "h2c"`},
		{cfg: HTTPConfig{UpstreamProtocol: "h2"}, bad: true, want: `upstream protocol "h2" is not "http1" or "h2c"`},
	} {
		tc.cfg.Name, tc.cfg.Listen = "a", "127.0.0.1:0"
		err := tc.cfg.Validate()
		switch {
		case tc.bad && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: error %v, want %q", tc.cfg, err, tc.want)
		case !tc.bad && err != nil:
			t.Errorf("%+v: %v", tc.cfg, err)
		case !tc.bad && tc.cfg.withDefaults().UpstreamProtocol != tc.want:
			t.Errorf("%+v: protocol %q, want %q", tc.cfg, tc.cfg.withDefaults().UpstreamProtocol, tc.want)
		}
	}
}

// A gRPC request reaches a plain net/http h2c endpoint with "TE: trailers"
// (which grpc-go servers do not check, so the grpc-go tests cannot see it),
// and the endpoint's hand-written gRPC response with its trailers reaches
// the client.
func TestGRPCForwardsTETrailers(t *testing.T) {
	te := make(chan []string, 1)
	be := startH2CBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		te <- r.Header.Values("Te")
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status, Grpc-Message, X-Custom")
		msg := []byte("hand-made")
		w.Write(append([]byte{0, 0, 0, 0, byte(len(msg))}, msg...))
		w.Header().Set("Grpc-Status", "0")
		w.Header().Set("X-Custom", "after")
	}))
	up := newFakeUpstream(t, be.addr)
	p := startGRPCProxy(t, HTTPConfig{}, routeAll(t, "grpc.shop"), Upstreams{"grpc.shop": up})
	cc := dialGRPC(t, p.addr, nil)
	var out []byte
	var trl metadata.MD
	if err := cc.Invoke(callCtx(t), "/any.Service/Method", []byte("q"), &out, grpc.Trailer(&trl)); err != nil {
		t.Fatal(err)
	}
	if string(out) != "hand-made" || !cmp.Equal(trl.Get("x-custom"), []string{"after"}) {
		t.Errorf("got %q trailer x-custom %q, want hand-made and after", out, trl.Get("x-custom"))
	}
	if got := <-te; !cmp.Equal(got, []string{"trailers"}) {
		t.Errorf("TE at the endpoint %q, want trailers", got)
	}
	for _, d := range assertDonesMatchPicks(t, up) {
		if d.info.Err != nil {
			t.Errorf("Done err %v, want nil", d.info.Err)
		}
	}
}
