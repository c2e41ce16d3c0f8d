// Package h1 parses HTTP/1.1 message heads and scans chunked bodies for the
// proxy's forwarding fast path, strictly and without allocating.
//
// Place in the data flow: the HTTP listener's per-connection loop reads a
// client's bytes into its buffer and calls ParseRequest; the parsed Request
// holds slices into that buffer, valid until the buffer is reused. The
// response from an endpoint is parsed the same way with ParseResponse, and
// chunked bodies in either direction are relayed as they are, with
// ChunkedScanner finding where they end.
//
// Strictness: whatever net/http's parser refuses, this parser refuses too
// (the proxy's differential and fuzz tests check it against
// http.ReadRequest), and it refuses more: a bare LF as line ending, any
// Transfer-Encoding other than a single "chunked", Content-Length together
// with Transfer-Encoding, obsolete line folding, more than the caller's
// field slots, and (ChunkedScanner) trailer fields that frame or route the
// message. A request line whose version is not exactly HTTP/1.1 is not
// parsed at all (ErrUnsupported): the caller hands it to net/http. In an
// HTTP/1.0 response, Transfer-Encoding is ignored as net/http ignores it,
// and flagged (FaultyFraming) so that the connection is not reused.
//
// Concurrency: the functions are pure; a ChunkedScanner belongs to one
// goroutine.
package h1

import (
	"bytes"
	"errors"
)

// ErrNeedMore means the head is not complete yet: read more bytes and
// parse again from the start.
var ErrNeedMore = errors.New("h1: incomplete message head")

// ErrUnsupported means the request line is not an HTTP/1.1 request line
// (HTTP/1.0, the HTTP/2 preface, garbage): the caller hands the bytes to a
// general parser.
var ErrUnsupported = errors.New("h1: not an HTTP/1.1 request line")

// Error is a message the parser refuses, with the status to answer (400,
// 431 or 501). Every Error value is preallocated.
type Error struct {
	Status int
	Reason string
}

func (e *Error) Error() string { return "h1: " + e.Reason }

// The refusals. Reasons are short and fixed: they go into response bodies.
var (
	ErrBareLF          = &Error{400, "bare LF line ending"}
	ErrRequestLine     = &Error{400, "malformed request line"}
	ErrMethod          = &Error{400, "invalid method"}
	ErrTarget          = &Error{400, "invalid request target"}
	ErrObsFold         = &Error{400, "obsolete line folding"}
	ErrFieldName       = &Error{400, "invalid header field name"}
	ErrFieldValue      = &Error{400, "invalid header field value"}
	ErrContentLength   = &Error{400, "invalid Content-Length"}
	ErrDupLength       = &Error{400, "differing Content-Length values"}
	ErrLengthAndTE     = &Error{400, "both Transfer-Encoding and Content-Length"}
	ErrTransferCoding  = &Error{501, "unsupported transfer coding"}
	ErrNoHost          = &Error{400, "missing Host header"}
	ErrDupHost         = &Error{400, "more than one Host header"}
	ErrHost            = &Error{400, "invalid Host header"}
	ErrHeadTooLarge    = &Error{431, "request header fields too large"}
	ErrTooManyFields   = &Error{431, "too many header fields"}
	ErrStatusLine      = &Error{502, "malformed status line"}
	ErrChunkSize       = &Error{400, "invalid chunk size line"}
	ErrChunkData       = &Error{400, "chunk data not followed by CRLF"}
	ErrTrailer         = &Error{400, "invalid trailer field"}
	ErrTrailerTooLarge = &Error{431, "trailer section too large"}
	ErrTrailerField    = &Error{400, "forbidden trailer field"}
	ErrTrailerKey      = &Error{400, "bad trailer key"}
)

// Field is one header field line: its name as sent and its value without
// surrounding whitespace, both slices of the parsed buffer.
type Field struct{ Name, Value []byte }

// Head is what the request and response parsers share: the fields and the
// framing and connection facts the proxy acts on.
type Head struct {
	// Fields are the header field lines in order, slices of the buffer.
	Fields []Field
	// ContentLength is the body length, -1 when there is no
	// Content-Length field.
	ContentLength int64
	// Chunked: Transfer-Encoding is "chunked" (the only coding accepted).
	Chunked bool
	// Close: Connection lists "close".
	Close bool
	// KeepAlive: Connection lists "keep-alive" (HTTP/1.0 responses).
	KeepAlive bool
	// ConnUpgrade: Connection lists "upgrade".
	ConnUpgrade bool
	// ConnOther: Connection lists a token other than close, keep-alive and
	// upgrade, naming a field the proxy must remove (RFC 9110 §7.6.1).
	ConnOther bool
	// Upgrade: an Upgrade field is present.
	Upgrade bool
	// Expect: an Expect field is present.
	Expect bool
	// TETrailers: TE lists "trailers".
	TETrailers bool
	// Trailer: a Trailer field is present.
	Trailer bool
	// FaultyFraming: an HTTP/1.0 response with Transfer-Encoding (RFC
	// 9112 §6.1). The field is ignored, as net/http does (the body is
	// framed by Content-Length, else by the connection's close), and the
	// connection must close after the message.
	FaultyFraming bool

	badTE      bool // a Transfer-Encoding other than one "chunked"
	badTrailer bool // Trailer declares Content-Length, Transfer-Encoding or Trailer
}

// Request is a parsed request head.
type Request struct {
	Head
	Method, Target []byte
	// Host is the Host field's value (required, exactly one).
	Host []byte
}

// Response is a parsed response head.
type Response struct {
	Head
	// Minor is the HTTP/1 minor version: 0 or 1.
	Minor  int
	Status int
	// Reason is the reason phrase, possibly empty.
	Reason []byte
}

// ParseRequest parses the request head at the start of b into req, using
// fields as the storage for req.Fields (more field lines than len(fields)
// are refused with 431). A head longer than maxHead bytes is refused with
// 431. It returns the head's length including the final CRLF, or
// ErrNeedMore, ErrUnsupported or an *Error.
func ParseRequest(b []byte, maxHead int, fields []Field, req *Request) (int, error) {
	line, next, err := nextLine(b, 0, maxHead)
	if err != nil {
		return 0, err
	}
	sp1 := bytes.IndexByte(line, ' ')
	sp2 := bytes.LastIndexByte(line, ' ')
	if sp1 < 0 || !bytes.Equal(line[sp2+1:], http11) {
		return 0, ErrUnsupported
	}
	if sp1 == sp2 {
		return 0, ErrRequestLine
	}
	*req = Request{Method: line[:sp1], Target: line[sp1+1 : sp2]}
	if !isToken(req.Method) {
		return 0, ErrMethod
	}
	if len(req.Target) == 0 {
		return 0, ErrTarget
	}
	for _, c := range req.Target {
		if c <= ' ' || c == 0x7f {
			return 0, ErrTarget
		}
	}
	n, err := parseFields(b, next, maxHead, fields, &req.Head, &req.Host, true, false)
	if err != nil {
		return 0, err
	}
	if req.Host == nil {
		return 0, ErrNoHost
	}
	return n, nil
}

// http11 is the only request version ParseRequest parses.
var http11 = []byte("HTTP/1.1")

// ParseResponse parses the response head at the start of b into resp, like
// ParseRequest. Malformed status lines and fields return an *Error whose
// Status is meaningless for a response (the proxy answers 502).
func ParseResponse(b []byte, maxHead int, fields []Field, resp *Response) (int, error) {
	line, next, err := nextLine(b, 0, maxHead)
	if err != nil {
		return 0, err
	}
	// HTTP/1.x SP 3DIGIT [SP reason]
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || (line[7] != '0' && line[7] != '1') || line[8] != ' ' {
		return 0, ErrStatusLine
	}
	*resp = Response{Minor: int(line[7] - '0')}
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return 0, ErrStatusLine
		}
		resp.Status = resp.Status*10 + int(c-'0')
	}
	if resp.Status < 100 {
		return 0, ErrStatusLine
	}
	if len(line) > 12 {
		if line[12] != ' ' {
			return 0, ErrStatusLine
		}
		resp.Reason = line[13:]
		for _, c := range resp.Reason {
			if (c < ' ' && c != '\t') || c == 0x7f {
				return 0, ErrStatusLine
			}
		}
	}
	return parseFields(b, next, maxHead, fields, &resp.Head, nil, false, resp.Minor == 0)
}

// nextLine returns the line starting at b[i] without its CRLF, and the
// index after the CRLF.
func nextLine(b []byte, i, maxHead int) (line []byte, next int, err error) {
	j := bytes.IndexByte(b[i:], '\n')
	if j < 0 {
		if len(b) > maxHead {
			return nil, 0, ErrHeadTooLarge
		}
		return nil, 0, ErrNeedMore
	}
	end := i + j
	if end+1 > maxHead {
		return nil, 0, ErrHeadTooLarge
	}
	if j == 0 || b[end-1] != '\r' {
		return nil, 0, ErrBareLF
	}
	return b[i : end-1], end + 1, nil
}

// parseFields parses field lines from b[i] to the empty line. host, if
// not nil, receives the Host field (request: exactly one). http10: the
// message is HTTP/1.0, whose Transfer-Encoding is ignored (FaultyFraming).
func parseFields(b []byte, i, maxHead int, fields []Field, h *Head, host *[]byte, request, http10 bool) (int, error) {
	nf := 0
	h.ContentLength = -1
	var te bool
	for {
		line, next, err := nextLine(b, i, maxHead)
		if err != nil {
			return 0, err
		}
		i = next
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return 0, ErrObsFold
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return 0, ErrFieldName
		}
		name := line[:colon]
		if !isToken(name) {
			return 0, ErrFieldName
		}
		value := trimOWS(line[colon+1:])
		for _, c := range value {
			if (c < ' ' && c != '\t') || c == 0x7f {
				return 0, ErrFieldValue
			}
		}
		if nf == len(fields) {
			return 0, ErrTooManyFields
		}
		fields[nf] = Field{name, value}
		nf++
		if err := h.note(name, value, host, request, &te); err != nil {
			return 0, err
		}
	}
	h.Fields = fields[:nf]
	if te && http10 {
		// RFC 9112 §6.1: faulty framing. net/http ignores the
		// field in HTTP/1.0; the caller closes the connection.
		te, h.Chunked, h.badTE, h.FaultyFraming = false, false, false, true
	}
	if te && h.ContentLength >= 0 {
		return 0, ErrLengthAndTE
	}
	if h.badTE {
		return 0, ErrTransferCoding
	}
	if h.Chunked && h.badTrailer {
		// net/http refuses these declarations ("bad trailer key").
		return 0, ErrTrailerKey
	}
	return i, nil
}

// note records what the proxy needs to know about one field.
func (h *Head) note(name, value []byte, host *[]byte, request bool, te *bool) error {
	switch len(name) {
	case 2:
		if EqualFold(name, "te") {
			h.TETrailers = h.TETrailers || HasToken(value, "trailers")
		}
	case 4:
		if host != nil && EqualFold(name, "host") {
			if *host != nil {
				return ErrDupHost
			}
			for _, c := range value {
				if !validHostByte[c] {
					return ErrHost
				}
			}
			*host = value[:len(value):len(value)]
			if *host == nil {
				*host = []byte{}
			}
		}
	case 6:
		if EqualFold(name, "expect") {
			h.Expect = true
		}
	case 7:
		if EqualFold(name, "upgrade") {
			h.Upgrade = true
		} else if EqualFold(name, "trailer") {
			h.Trailer = true
			h.badTrailer = h.badTrailer || HasToken(value, "content-length") ||
				HasToken(value, "transfer-encoding") || HasToken(value, "trailer")
		}
	case 10:
		if EqualFold(name, "connection") {
			h.noteConnection(value)
		}
	case 14:
		if EqualFold(name, "content-length") {
			n, ok := parseLength(value)
			if !ok {
				return ErrContentLength
			}
			if h.ContentLength >= 0 && h.ContentLength != n {
				return ErrDupLength
			}
			h.ContentLength = n
		}
	case 17:
		if EqualFold(name, "transfer-encoding") {
			// Refused after the whole head parsed (parseFields), so
			// that a 400 for the head's syntax wins over 501.
			h.badTE = h.badTE || *te || !EqualFold(value, "chunked")
			*te = true
			h.Chunked = true
		}
	}
	return nil
}

// noteConnection records the tokens of a Connection field.
func (h *Head) noteConnection(v []byte) {
	for len(v) > 0 {
		var tok []byte
		tok, v = nextElement(v)
		switch {
		case len(tok) == 0:
		case EqualFold(tok, "close"):
			h.Close = true
		case EqualFold(tok, "keep-alive"):
			h.KeepAlive = true
		case EqualFold(tok, "upgrade"):
			h.ConnUpgrade = true
		default:
			h.ConnOther = true
		}
	}
}

// parseLength parses a Content-Length value: digits only, as net/http
// (leading zeros allowed, no sign, no list, not empty), at most 18 digits.
func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// nextElement splits the first element, trimmed of whitespace, off the
// comma-separated list v and returns it with the rest of the list.
func nextElement(v []byte) (elem, rest []byte) {
	if i := bytes.IndexByte(v, ','); i >= 0 {
		return trimOWS(v[:i]), v[i+1:]
	}
	return trimOWS(v), nil
}

// HasToken reports whether the comma-separated list v contains token,
// ignoring ASCII case and whitespace around elements.
func HasToken(v []byte, token string) bool {
	for len(v) > 0 {
		var tok []byte
		tok, v = nextElement(v)
		if EqualFold(tok, token) {
			return true
		}
	}
	return false
}

// EqualFold reports whether b equals s ignoring ASCII case; s must be
// lower case.
func EqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// EqualFoldBytes reports whether a and b are equal ignoring ASCII case.
func EqualFoldBytes(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// trimOWS removes spaces and tabs around b.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// isToken reports whether b is a non-empty token.
func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tokenByte[c] {
			return false
		}
	}
	return true
}

// tokenByte is RFC 9110 §5.6.2 tchar.
var tokenByte = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// validHostByte is net/http's (httpguts.ValidHostHeader): any byte of a
// uri-host or port.
var validHostByte = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!$%&()*+,-.:;=[]'_~" {
		t[c] = true
	}
	return t
}()

// HasTokenBytes is HasToken with a token of any case.
func HasTokenBytes(v, token []byte) bool {
	for len(v) > 0 {
		var tok []byte
		tok, v = nextElement(v)
		if EqualFoldBytes(tok, token) {
			return true
		}
	}
	return false
}

// EqualFoldString reports whether b and s are equal ignoring ASCII case.
func EqualFoldString(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
