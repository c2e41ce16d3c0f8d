package h1

// Limits of the chunked framing, as net/http's (internal.chunkedReader):
// a chunk-size line of at most maxChunkLine bytes and a size of at most 16
// hex digits. MaxTrailerBytes bounds the trailer section.
const (
	maxChunkLine    = 4096
	MaxTrailerBytes = 64 << 10
)

// chunk scanner states
const (
	csSize       = iota // chunk-size digits
	csSizeWS            // whitespace after the digits
	csExt               // chunk extensions, up to CR
	csSizeLF            // the LF of the size line
	csData              // remain bytes of data
	csDataCR            // CR after data
	csDataLF            // LF after data
	csTrailName         // start or name of a trailer line
	csTrailValue        // value of a trailer line, up to CR
	csTrailLF           // LF of a trailer line
	csEndLF             // LF of the final empty line
	csDone
)

// ChunkedScanner follows a chunked body (RFC 9112 §7.1) through the bytes
// given to Scan, so that it can be relayed as it is: chunk extensions and
// trailer fields included. It refuses what net/http refuses (bad sizes,
// data not followed by CRLF, over-long lines) and also bare LF line endings
// and trailer lines that are not field lines, and trailer fields that
// must not be trailers because they frame or route the message
// (Content-Length, Transfer-Encoding, Host: RFC 9110 §6.5.1; a recipient
// that merged them into the header would read the message differently).
// The zero value is ready for a new body.
type ChunkedScanner struct {
	state   uint8
	digits  uint8
	colon   bool     // the trailer line has its colon
	line    int      // bytes of the current size or trailer line so far
	trailer int      // bytes of the trailer section so far
	name    [17]byte // the trailer line's name so far, lower case (its first 17 bytes)
	size    uint64   // chunk size being parsed
	remain  uint64   // data bytes left in the current chunk
	// Data counts the data bytes seen so far (not framing).
	Data int64
}

// Scan consumes the body's bytes at the start of b. It returns how many
// bytes of b belong to the body and whether the body ended within them;
// after the end, the rest of b is the next message. An error is an
// *Error; the scanner is then unusable.
func (s *ChunkedScanner) Scan(b []byte) (n int, done bool, err error) {
	for n < len(b) {
		if s.state == csData {
			k := uint64(len(b) - n)
			if k > s.remain {
				k = s.remain
			}
			n += int(k)
			s.remain -= k
			s.Data += int64(k)
			if s.remain == 0 {
				s.state = csDataCR
			}
			continue
		}
		c := b[n]
		n++
		switch s.state {
		case csSize:
			s.line++
			if v, ok := hexVal(c); ok {
				if s.digits == 16 {
					return n, false, ErrChunkSize
				}
				s.digits++
				s.size = s.size<<4 | uint64(v)
				continue
			}
			if s.digits == 0 {
				return n, false, ErrChunkSize
			}
			switch c {
			case ' ', '\t':
				s.state = csSizeWS
			case ';':
				s.state = csExt
			case '\r':
				s.state = csSizeLF
			default:
				return n, false, ErrChunkSize
			}
		case csSizeWS:
			s.line++
			if s.line > maxChunkLine {
				return n, false, ErrChunkSize
			}
			switch c {
			case ' ', '\t':
			case '\r':
				s.state = csSizeLF
			default:
				// RFC 9112 §7.1.1 allows BWS before ";", but net/http
				// refuses it (it cuts at ";" and parses the size with
				// what precedes), and an endpoint behind us may be
				// net/http: refuse what it would.
				return n, false, ErrChunkSize
			}
		case csExt:
			s.line++
			if s.line > maxChunkLine {
				return n, false, ErrChunkSize
			}
			if c == '\r' {
				s.state = csSizeLF
			} else if (c < ' ' && c != '\t') || c == 0x7f {
				return n, false, ErrChunkSize
			}
		case csSizeLF:
			if c != '\n' {
				return n, false, ErrChunkSize
			}
			if s.size > 1<<62 {
				return n, false, ErrChunkSize
			}
			s.line, s.digits = 0, 0
			if s.size == 0 {
				s.state = csTrailName
			} else {
				s.remain, s.size, s.state = s.size, 0, csData
			}
		case csDataCR:
			if c != '\r' {
				return n, false, ErrChunkData
			}
			s.state = csDataLF
		case csDataLF:
			if c != '\n' {
				return n, false, ErrChunkData
			}
			s.state = csSize
		case csTrailName:
			s.trailer++
			if s.trailer > MaxTrailerBytes {
				return n, false, ErrTrailerTooLarge
			}
			switch {
			case c == '\r' && s.line == 0:
				s.state = csEndLF
			case c == ':' && s.line > 0:
				if s.line <= len(s.name) && forbiddenTrailer(s.name[:s.line]) {
					return n, false, ErrTrailerField
				}
				s.state = csTrailValue
			case tokenByte[c]:
				if s.line < len(s.name) {
					s.name[s.line] = lower(c)
				}
				s.line++
			default: // obs-fold, no name, bad name byte
				return n, false, ErrTrailer
			}
		case csTrailValue:
			s.trailer++
			if s.trailer > MaxTrailerBytes {
				return n, false, ErrTrailerTooLarge
			}
			if c == '\r' {
				s.state = csTrailLF
			} else if (c < ' ' && c != '\t') || c == 0x7f {
				return n, false, ErrTrailer
			}
		case csTrailLF:
			if c != '\n' {
				return n, false, ErrTrailer
			}
			s.line = 0
			s.state = csTrailName
		case csEndLF:
			if c != '\n' {
				return n, false, ErrTrailer
			}
			s.state = csDone
			return n, true, nil
		case csDone:
			return n - 1, true, nil
		}
	}
	return n, s.state == csDone, nil
}

// forbiddenTrailer reports whether name, in lower case, is a field that
// must not be a trailer.
func forbiddenTrailer(name []byte) bool {
	switch string(name) {
	case "content-length", "transfer-encoding", "host":
		return true
	}
	return false
}

// lower is c in lower case, for ASCII letters.
func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// Done reports whether the body has ended.
func (s *ChunkedScanner) Done() bool { return s.state == csDone }

// hexVal is the value of a hex digit.
func hexVal(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
