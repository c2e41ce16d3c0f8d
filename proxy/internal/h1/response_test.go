package h1

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// Trailer fields that frame or route a message (RFC 9110 §6.5.1) are
// refused wherever they are in the trailer section, in any case and however
// the bytes are split between Scan calls; longer names that start the same
// are not.
func TestChunkedScannerRefusesForbiddenTrailers(t *testing.T) {
	for _, tc := range []struct {
		trailer string
		refused bool
	}{
		{"Content-Length: 100", true},
		{"transfer-encoding: chunked", true},
		{"HOST: evil", true},
		{"X-A: 1\r\nHost: evil", true},
		{"Hosts: 1", false},
		{"Content-Length-X: 1", false},
		{"Transfer-Encoding-X: 1", false},
		{"X-Host: 1", false},
	} {
		raw := "5\r\nhello\r\n0\r\n" + tc.trailer + "\r\n\r\n"
		for split := 0; split <= len(raw); split++ {
			var s ChunkedScanner
			_, done, err := s.Scan([]byte(raw[:split]))
			if err == nil && !done {
				_, done, err = s.Scan([]byte(raw[split:]))
			}
			if tc.refused && err != ErrTrailerField {
				t.Fatalf("trailer %q split at %d: done %v, err %v; want %v", tc.trailer, split, done, err, ErrTrailerField)
			}
			if !tc.refused && (err != nil || !done) {
				t.Fatalf("trailer %q split at %d: done %v, err %v; want accepted", tc.trailer, split, done, err)
			}
		}
	}
}

// A chunk-size line is bounded however its bytes are spent: digits,
// whitespace or extensions.
func TestChunkedScannerBoundsSizeLine(t *testing.T) {
	for _, line := range []string{
		"5" + strings.Repeat(" ", maxChunkLine),
		"5" + strings.Repeat("\t", maxChunkLine/2) + ";" + strings.Repeat("x", maxChunkLine/2),
		"5;" + strings.Repeat("x", maxChunkLine),
	} {
		var s ChunkedScanner
		if _, _, err := s.Scan([]byte(line + "\r\nhello\r\n0\r\n\r\n")); err != ErrChunkSize {
			t.Errorf("chunk-size line of %d bytes: %v, want %v", len(line), err, ErrChunkSize)
		}
	}
}

// RFC 9112 §6.1: an HTTP/1.0 response with Transfer-Encoding has faulty
// framing. As net/http, ParseResponse ignores the field (the body is
// framed by Content-Length, else by the close), and says so.
func TestParseResponseHTTP10TransferEncoding(t *testing.T) {
	for _, tc := range []struct {
		raw    string
		length int64
	}{
		{"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", -1},
		{"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: gzip\r\n\r\n", -1},
		{"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc", 3},
	} {
		var fields [8]Field
		var r Response
		if _, err := ParseResponse([]byte(tc.raw), 1<<16, fields[:], &r); err != nil {
			t.Fatalf("%q: %v", tc.raw, err)
		}
		if r.Chunked || !r.FaultyFraming || r.ContentLength != tc.length {
			t.Errorf("%q: chunked %v, faulty framing %v, length %d; want false, true, %d", tc.raw, r.Chunked, r.FaultyFraming, r.ContentLength, tc.length)
		}
		resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(tc.raw)), nil)
		if err != nil || len(resp.TransferEncoding) != 0 || resp.ContentLength != tc.length {
			t.Errorf("%q: net/http reads it differently now: %v", tc.raw, err)
		}
	}
	var fields [8]Field
	var r Response
	raw := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	if _, err := ParseResponse([]byte(raw), 1<<16, fields[:], &r); err != nil || !r.Chunked || r.FaultyFraming {
		t.Errorf("HTTP/1.1 chunked response: chunked %v, faulty framing %v, %v", r.Chunked, r.FaultyFraming, err)
	}
}

// responseCases seed FuzzParseResponse.
var responseCases = []string{
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx",
	"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"HTTP/1.1 204 No Content\r\n\r\n",
	"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Content-Length\r\n\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nhello",
	"HTTP/1.1 200\r\n\r\n",
}

// FuzzParseResponse: never panic; never accept a response head net/http
// refuses; agree on status and framing.
func FuzzParseResponse(f *testing.F) {
	for _, s := range responseCases {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var fields [128]Field
		var r Response
		n, err := ParseResponse(raw, 1<<16, fields[:], &r)
		if err != nil {
			return
		}
		if n > len(raw) {
			t.Fatalf("n %d > len %d", n, len(raw))
		}
		resp, herr := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), nil)
		if herr != nil {
			t.Fatalf("we accept what net/http refuses (%v): %q", herr, raw)
		}
		defer io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != r.Status {
			t.Fatalf("status %d, net/http %d: %q", r.Status, resp.StatusCode, raw)
		}
		if r.Status < 200 || r.Status == 204 || r.Status == 304 {
			return // no body
		}
		if chunked := slices.Equal(resp.TransferEncoding, []string{"chunked"}); chunked != r.Chunked {
			t.Fatalf("chunked %v, net/http %v: %q", r.Chunked, chunked, raw)
		}
		if !r.Chunked && r.ContentLength != resp.ContentLength {
			t.Fatalf("length %d, net/http %d: %q", r.ContentLength, resp.ContentLength, raw)
		}
	})
}
