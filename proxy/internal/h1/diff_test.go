package h1

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// verdict is what a parser made of one request: refused, or its method,
// target, fields and body framing, and the decoded body length.
type verdict struct {
	ok      bool
	method  string
	target  string
	host    string
	header  http.Header // canonical names, Host excluded
	length  int64       // -1: chunked
	close   bool
	body    int64 // decoded body bytes; -1 when the body is refused or incomplete
	handoff bool  // ours only: not parsed (ErrUnsupported or a non-origin target)
}

// netHTTPVerdict is net/http's: http.ReadRequest plus the checks its
// server adds (a Host field is required in HTTP/1.1 and must be one valid
// value), and the body read to its end.
func netHTTPVerdict(raw []byte) verdict {
	br := bufio.NewReader(bytes.NewReader(raw))
	r, err := http.ReadRequest(br)
	if err != nil {
		return verdict{}
	}
	// ReadRequest drops the Host fields the server checks; read them
	// again with the same textproto reader.
	tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(raw)))
	tp.ReadLine()
	mh, _ := tp.ReadMIMEHeader()
	hosts := mh["Host"]
	if r.ProtoAtLeast(1, 1) && len(hosts) != 1 {
		return verdict{}
	}
	for _, h := range hosts {
		// httpguts.ValidHostHeader, whose table parse.go copies.
		for i := 0; i < len(h); i++ {
			if !validHostByte[h[i]] {
				return verdict{}
			}
		}
	}
	v := verdict{ok: true, method: r.Method, target: r.RequestURI, host: r.Host, close: r.Close, length: r.ContentLength}
	if slices.Equal(r.TransferEncoding, []string{"chunked"}) {
		v.length = -1
	}
	v.header = r.Header.Clone()
	delete(v.header, "Host")
	n, err := io.Copy(io.Discard, r.Body)
	v.body = n
	if err != nil {
		v.body = -1
	}
	return v
}

// ourVerdict is ParseRequest's, with the engine's target check (a path
// that is not simple is parsed with url.ParseRequestURI) and the body
// framed by ContentLength or ChunkedScanner.
func ourVerdict(raw []byte) verdict {
	var fields [maxTestFields]Field
	var req Request
	n, err := ParseRequest(raw, 1<<20, fields[:], &req)
	if err == ErrUnsupported {
		return verdict{handoff: true}
	}
	if err != nil {
		return verdict{}
	}
	if req.Target[0] != '/' {
		return verdict{handoff: true}
	}
	if _, err := url.ParseRequestURI(string(req.Target)); err != nil {
		return verdict{}
	}
	v := verdict{ok: true, method: string(req.Method), target: string(req.Target), host: string(req.Host),
		close: req.Close, length: req.ContentLength, header: http.Header{}}
	for _, f := range req.Fields {
		k := http.CanonicalHeaderKey(string(f.Name))
		// net/http moves Host and Transfer-Encoding out of the header
		// (framing is compared on its own), keeps one Content-Length, and
		// moves Trailer into Request.Trailer when the body is chunked.
		if k == "Host" || k == "Transfer-Encoding" || (k == "Content-Length" && len(v.header[k]) > 0) ||
			(k == "Trailer" && req.Chunked) {
			continue
		}
		v.header[k] = append(v.header[k], string(f.Value))
	}
	rest := raw[n:]
	switch {
	case req.Chunked:
		v.length = -1
		var s ChunkedScanner
		_, done, err := s.Scan(rest)
		v.body = s.Data
		if err != nil || !done {
			v.body = -1
		}
	case req.ContentLength > 0:
		v.body = req.ContentLength
		if int64(len(rest)) < req.ContentLength {
			v.body = -1
		}
	default:
		v.length = 0 // net/http: a request without framing has no body
	}
	return v
}

const maxTestFields = 128

// agree reports how ours and net/http's verdicts disagree, or "". Ours may
// refuse what net/http accepts, and may hand off anything; it may not
// accept what net/http refuses, nor read an accepted request differently.
func agree(ours, theirs verdict) string {
	switch {
	case ours.handoff || !ours.ok:
		return ""
	case !theirs.ok:
		return "we accept what net/http refuses"
	}
	switch {
	case ours.method != theirs.method:
		return fmt.Sprintf("method %q, net/http %q", ours.method, theirs.method)
	case ours.target != theirs.target:
		return fmt.Sprintf("target %q, net/http %q", ours.target, theirs.target)
	case ours.host != theirs.host:
		return fmt.Sprintf("host %q, net/http %q", ours.host, theirs.host)
	case ours.length != theirs.length:
		return fmt.Sprintf("length %d, net/http %d", ours.length, theirs.length)
	case ours.close != theirs.close:
		return fmt.Sprintf("close %v, net/http %v", ours.close, theirs.close)
	case ours.body >= 0 && theirs.body >= 0 && ours.body != theirs.body:
		return fmt.Sprintf("body %d bytes, net/http %d", ours.body, theirs.body)
	case ours.body >= 0 && theirs.body < 0:
		return "we accept a body net/http refuses"
	}
	if fmt.Sprint(ours.header) != fmt.Sprint(theirs.header) {
		return fmt.Sprintf("header %v, net/http %v", ours.header, theirs.header)
	}
	return ""
}

func req(lines ...string) string { return strings.Join(lines, "\r\n") + "\r\n\r\n" }

// differentialCases are requests well-formed and not, the smuggling shapes
// of RFC 9112 §11.2 among them.
var differentialCases = []struct {
	name, raw string
	accept    bool // ours accepts (parses without error or handoff)
}{
	{"simple", req("GET / HTTP/1.1", "Host: a"), true},
	{"fields", req("GET /p?q=1 HTTP/1.1", "Host: a:80", "X-A:  v \t", "X-A: w", "Accept: */*"), true},
	{"length body", req("POST / HTTP/1.1", "Host: a", "Content-Length: 5") + "hello", true},
	{"leading zero length", req("POST / HTTP/1.1", "Host: a", "Content-Length: 05") + "hello", true},
	{"equal lengths", req("POST / HTTP/1.1", "Host: a", "Content-Length: 5", "Content-Length: 5") + "hello", true},
	{"chunked", req("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked") + "5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\n", true},
	{"chunked any case", req("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: Chunked") + "0\r\n\r\n", true},
	{"close", req("GET / HTTP/1.1", "Host: a", "Connection: keep-alive, Close"), true},
	{"obs-text value", req("GET / HTTP/1.1", "Host: a", "X: \x80\xff"), true},
	{"non-ascii target", req("GET /a\x80b HTTP/1.1", "Host: a"), true},
	{"escaped target", req("GET /a%2Fb%20c HTTP/1.1", "Host: a"), true},
	{"empty host", req("GET / HTTP/1.1", "Host: "), true},

	{"length and chunked", req("POST / HTTP/1.1", "Host: a", "Content-Length: 5", "Transfer-Encoding: chunked") + "0\r\n\r\n", false},
	{"differing lengths", req("POST / HTTP/1.1", "Host: a", "Content-Length: 5", "Content-Length: 6") + "hello!", false},
	{"length list", req("POST / HTTP/1.1", "Host: a", "Content-Length: 5, 5") + "hello", false},
	{"signed length", req("POST / HTTP/1.1", "Host: a", "Content-Length: +5") + "hello", false},
	{"empty length", req("POST / HTTP/1.1", "Host: a", "Content-Length: "), false},
	{"hex length", req("POST / HTTP/1.1", "Host: a", "Content-Length: 0x5") + "hello", false},
	{"gzip coding", req("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: gzip") + "x", false},
	{"chunked twice", req("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked", "Transfer-Encoding: chunked") + "0\r\n\r\n", false},
	{"coding list", req("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: gzip, chunked") + "0\r\n\r\n", false},
	{"chunked then identity", req("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked, identity") + "0\r\n\r\n", false},
	{"space before colon", req("POST / HTTP/1.1", "Host: a", "Transfer-Encoding : chunked") + "0\r\n\r\n", false},
	{"obs-fold", req("GET / HTTP/1.1", "Host: a", "X: a", " b"), false},
	{"obs-fold first", req("GET / HTTP/1.1", " X: a", "Host: a"), false},
	{"NUL in value", req("GET / HTTP/1.1", "Host: a", "X: a\x00b"), false},
	{"CR in value", req("GET / HTTP/1.1", "Host: a", "X: a\rb"), false},
	{"vertical tab", req("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: \x0bchunked") + "0\r\n\r\n", false},
	{"bare LF", "GET / HTTP/1.1\nHost: a\n\n", false},
	{"bare LF in field", "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", false},
	{"two hosts", req("GET / HTTP/1.1", "Host: a", "Host: b"), false},
	{"no host", req("GET / HTTP/1.1"), false},
	{"bad host", req("GET / HTTP/1.1", "Host: a b"), false},
	{"bad method", req("G(T / HTTP/1.1", "Host: a"), false},
	{"two spaces", req("GET  / HTTP/1.1", "Host: a"), false},
	{"space in target", req("GET /a b HTTP/1.1", "Host: a"), false},
	{"bad escape", req("GET /a%zz HTTP/1.1", "Host: a"), false},
	{"empty line first", "\r\n" + req("GET / HTTP/1.1", "Host: a"), false},
	{"no colon", req("GET / HTTP/1.1", "Host: a", "X"), false},
	{"empty name", req("GET / HTTP/1.1", "Host: a", ": x"), false},

	{"Trailer declares Content-Length", req("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked", "Trailer: Content-Length") + "0\r\nContent-Length: 5\r\n\r\n", false},
	{"Trailer declares Transfer-Encoding", req("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked", "Trailer: X, transfer-encoding") + "0\r\n\r\n", false},
	{"Trailer declares Trailer", req("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked", "Trailer: Trailer") + "0\r\n\r\n", false},
	{"Trailer declares Content-Length without chunked", req("POST / HTTP/1.1", "Host: a", "Content-Length: 1", "Trailer: Content-Length") + "x", true},
	{"chunk-size line of spaces", req("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked") + "5" + strings.Repeat(" ", 8000) + "\r\nhello\r\n0\r\n\r\n", true},
	// net/http accepts these trailers; ours refuses the body (see
	// TestChunkedScannerRefusesForbiddenTrailers).
	{"Content-Length trailer", req("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked") + "0\r\nContent-Length: 100\r\n\r\n", true},
	{"Transfer-Encoding trailer", req("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked") + "0\r\ntransfer-encoding: chunked\r\n\r\n", true},
	{"Host trailer", req("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked") + "0\r\nX: 1\r\nHOST: evil\r\n\r\n", true},
	{"long trailer name", req("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked") + "0\r\nTransfer-Encoding-X: 1\r\n\r\n", true},

	{"HTTP/1.0", req("GET / HTTP/1.0"), false},
	{"preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", false},
	{"absolute form", req("GET http://a/ HTTP/1.1", "Host: b"), false},
	{"asterisk", req("OPTIONS * HTTP/1.1", "Host: a"), false},
}

// TestParseRequestAgreesWithNetHTTP: what net/http refuses is refused;
// what both accept is read the same.
func TestParseRequestAgreesWithNetHTTP(t *testing.T) {
	for _, tc := range differentialCases {
		t.Run(tc.name, func(t *testing.T) {
			ours, theirs := ourVerdict([]byte(tc.raw)), netHTTPVerdict([]byte(tc.raw))
			if d := agree(ours, theirs); d != "" {
				t.Errorf("%s\n raw %q", d, tc.raw)
			}
			if got := ours.ok && !ours.handoff; got != tc.accept {
				t.Errorf("accepted %v, want %v (net/http accepts: %v)", got, tc.accept, theirs.ok)
			}
		})
	}
}

// Bodies: chunked framings net/http refuses are refused, and accepted ones
// decode to the same length.
func TestChunkedScannerAgreesWithNetHTTP(t *testing.T) {
	head := req("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked")
	for _, tc := range []struct {
		name, body string
		ok         bool
	}{
		{"two chunks", "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", true},
		{"trailers", "3\r\nabc\r\n0\r\nX-A: 1\r\nX-B: 2\r\n\r\n", true},
		{"extension", "3;name=\"v\";x\r\nabc\r\n0\r\n\r\n", true},
		{"upper hex", "A\r\n0123456789\r\n0\r\n\r\n", true},
		{"space after size", "3 \r\nabc\r\n0\r\n\r\n", true},
		{"bad size", "zz\r\nhello\r\n0\r\n\r\n", false},
		{"overflow", "fffffffffffffffff1\r\nhello\r\n0\r\n\r\n", false},
		{"bare LF size", "5\nhello\r\n0\r\n\r\n", false},
		{"data too long", "2\r\nhello\r\n0\r\n\r\n", false},
		{"data then LF", "5\r\nhello\n0\r\n\r\n", false},
		{"no size", "\r\nhello\r\n0\r\n\r\n", false},
		{"negative", "-5\r\nhello\r\n0\r\n\r\n", false},
		{"CTL in extension", "5;\x01\r\nhello\r\n0\r\n\r\n", false},
		{"folded trailer", "0\r\nX: a\r\n b\r\n\r\n", false},
		{"trailer without colon", "0\r\nX\r\n\r\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := []byte(head + tc.body)
			ours, theirs := ourVerdict(raw), netHTTPVerdict(raw)
			if d := agree(ours, theirs); d != "" {
				t.Errorf("%s", d)
			}
			if got := ours.body >= 0; got != tc.ok {
				t.Errorf("body accepted %v, want %v (net/http: %d bytes)", got, tc.ok, theirs.body)
			}
			// Split anywhere, the scanner ends at the same byte.
			var whole ChunkedScanner
			wn, wdone, werr := whole.Scan([]byte(tc.body))
			for cut := 1; cut < len(tc.body); cut++ {
				var s ChunkedScanner
				n1, done1, err1 := s.Scan([]byte(tc.body[:cut]))
				n, done, err := n1, done1, err1
				if err1 == nil && !done1 {
					n2, done2, err2 := s.Scan([]byte(tc.body[cut:]))
					n, done, err = n1+n2, done2, err2
				}
				if (err == nil) != (werr == nil) || done != wdone || (err == nil && n != wn) {
					t.Fatalf("cut at %d: n=%d done=%v err=%v; whole n=%d done=%v err=%v", cut, n, done, err, wn, wdone, werr)
				}
			}
		})
	}
}

// A head over the limit is 431, a head not yet complete is ErrNeedMore.
func TestParseRequestLimits(t *testing.T) {
	var fields [4]Field
	var r Request
	raw := []byte(req("GET / HTTP/1.1", "Host: a", "X-Big: "+strings.Repeat("x", 100)))
	if _, err := ParseRequest(raw, 64, fields[:], &r); err != ErrHeadTooLarge {
		t.Errorf("head over the limit: %v, want ErrHeadTooLarge", err)
	}
	if _, err := ParseRequest(raw[:40], 1000, fields[:], &r); err != ErrNeedMore {
		t.Errorf("partial head: %v, want ErrNeedMore", err)
	}
	if _, err := ParseRequest([]byte(strings.Repeat("G", 200)), 64, fields[:], &r); err != ErrHeadTooLarge {
		t.Errorf("request line over the limit: %v, want ErrHeadTooLarge", err)
	}
	many := req("GET / HTTP/1.1", "Host: a", "A: 1", "B: 2", "C: 3", "D: 4")
	if _, err := ParseRequest([]byte(many), 1000, fields[:], &r); err != ErrTooManyFields {
		t.Errorf("5 fields in 4 slots: %v, want ErrTooManyFields", err)
	}
	ok := req("GET / HTTP/1.1", "Host: a")
	if n, err := ParseRequest([]byte(ok+"GET /next"), 1000, fields[:], &r); err != nil || n != len(ok) {
		t.Errorf("pipelined: n=%d err=%v, want %d", n, err, len(ok))
	}
}

// ParseRequest allocates nothing.
func TestParseRequestAllocs(t *testing.T) {
	raw := []byte(req("POST /api/items?x=1 HTTP/1.1", "Host: shop.example.com", "User-Agent: test",
		"Accept: */*", "Content-Length: 5", "Connection: keep-alive, X-Hop", "X-Hop: 1") + "hello")
	var fields [maxTestFields]Field
	var r Request
	if n := testing.AllocsPerRun(100, func() {
		if _, err := ParseRequest(raw, 1<<16, fields[:], &r); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("%v allocations per parse, want 0", n)
	}
}

// FuzzParseRequest: never panic, never accept what net/http refuses, and
// read what both accept the same way.
func FuzzParseRequest(f *testing.F) {
	for _, tc := range differentialCases {
		f.Add([]byte(tc.raw))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		ours, theirs := ourVerdict(raw), netHTTPVerdict(raw)
		if d := agree(ours, theirs); d != "" {
			t.Errorf("%s\n raw %q", d, raw)
		}
	})
}
