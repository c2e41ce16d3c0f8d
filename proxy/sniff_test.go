package proxy

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want sniffKind
	}{
		{"", sniffMore},
		// TLS: content type 22, version 3.x; two bytes decide.
		{"\x16", sniffMore},
		{"\x16\x03", sniffTLS},
		{"\x16\x03\x01\x02\x00\x01", sniffTLS},
		{"\x16\x03\x04", sniffTLS},
		{"\x16\x02", sniffOther},
		{"\x16\x00\x00", sniffOther},
		{"\x17\x03\x03", sniffOther}, // application data, not a handshake
		// HTTP/2 preface: only the whole of it.
		{"P", sniffMore},
		{"PR", sniffMore},
		{"PRI ", sniffMore},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r", sniffMore},
		{http2Preface, sniffH2},
		{http2Preface + "\x00\x00\x12\x04", sniffH2},
		{"PRI * HTTP/1.1\r\n", sniffOther},
		{"PRI / HTTP/2.0\r\n\r\nSM\r\n\r\n", sniffOther},
		{"PRIX", sniffOther},
		// HTTP/1: method and space, as soon as the space arrives.
		{"G", sniffMore},
		{"GE", sniffMore},
		{"GET", sniffMore},
		{"GET ", sniffHTTP1},
		{"GET / HTTP/1.1\r\n", sniffHTTP1},
		{"POST ", sniffHTTP1},
		{"PO", sniffMore},
		{"PUT ", sniffHTTP1},
		{"PATCH ", sniffHTTP1},
		{"PROPFIND ", sniffHTTP1},
		{"PROPF", sniffMore},
		{"HEAD ", sniffHTTP1},
		{"DELETE ", sniffHTTP1},
		{"CONNECT ", sniffHTTP1},
		{"OPTIONS * HTTP/1.1\r\n", sniffHTTP1},
		{"TRACE ", sniffHTTP1},
		{"MKCALENDAR ", sniffHTTP1},
		{"GET\t", sniffOther},  // only SP separates (RFC 9112 §3)
		{"GETX ", sniffOther},  // not a known method
		{"get / ", sniffOther}, // methods are case-sensitive
		{"GX", sniffOther},
		{"X", sniffOther},
		{" GET ", sniffOther},
		// Typical client-speaks-first non-HTTP protocols.
		{"*1\r\n$4\r\nPING\r\n", sniffOther}, // Redis
		{"\x00\x00\x00\x08\x04\xd2\x16\x2f", sniffOther},
		{"SSH-2.0-OpenSSH_9.6\r\n", sniffOther},
		{"hello\n", sniffOther},
		// Server-speaks-first replies a client might send later.
		{"EHLO example.com\r\n", sniffOther},
	} {
		if got := classifyFirstBytes([]byte(tc.in)); got != tc.want {
			t.Errorf("classifyFirstBytes(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// TestSniffMax: every decision fits in the sniff buffer.
func TestSniffMax(t *testing.T) {
	for _, m := range httpMethods {
		if len(m) > sniffMax {
			t.Errorf("method %q is longer than sniffMax %d", m, sniffMax)
		}
		if m[len(m)-1] != ' ' || strings.Count(m, " ") != 1 {
			t.Errorf("method %q must end in its one space", m)
		}
	}
}

// checkClassifyInvariants checks, for every prefix of b: a decision is
// final (more bytes never change it), it is made within sniffMax bytes,
// and "more" is answered only when the bytes really are undecided — some
// completion is TLS, h2 or HTTP/1 while another is other.
func checkClassifyInvariants(t *testing.T, b []byte) {
	t.Helper()
	decided := sniffMore
	for i := 0; i <= len(b); i++ {
		k := classifyFirstBytes(b[:i])
		switch {
		case decided != sniffMore && k != decided:
			t.Fatalf("classifyFirstBytes(%q) = %v, but its prefix was already %v", b[:i], k, decided)
		case k == sniffMore && i >= sniffMax:
			t.Fatalf("classifyFirstBytes(%q) undecided after %d bytes", b[:i], i)
		case k == sniffMore:
			p := b[:i]
			if other := classifyFirstBytes(append(bytes.Clone(p), 0xff)); other != sniffOther {
				t.Fatalf("classifyFirstBytes(%q + 0xff) = %v, want other", p, other)
			}
			found := false
			for _, c := range completions {
				if bytes.HasPrefix([]byte(c), p) && classifyFirstBytes([]byte(c)) != sniffOther {
					found = true
				}
			}
			if !found {
				t.Fatalf("classifyFirstBytes(%q) = more, but no completion of it is TLS, h2 or HTTP/1", p)
			}
		case k == sniffSilent:
			t.Fatalf("classifyFirstBytes(%q) = silent; only sniff may say that", b[:i])
		}
		if decided == sniffMore {
			decided = k
		}
	}
}

// completions are the shortest inputs of each non-other kind.
var completions = append([]string{"\x16\x03", http2Preface}, httpMethods[:]...)

func FuzzClassify(f *testing.F) {
	for _, s := range completions {
		f.Add([]byte(s + "x"))
	}
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
	f.Add([]byte("\x16\x03\x01\x00\xc4\x01"))
	f.Add([]byte("SSH-2.0-x\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkClassifyInvariants(t, b)
	})
}

func TestClassifyInvariantsOnSeeds(t *testing.T) {
	for _, s := range completions {
		checkClassifyInvariants(t, []byte(s+"\r\n"))
		checkClassifyInvariants(t, []byte(s[:len(s)-1]+"\xff"))
	}
}

// sniffPair returns both ends of a loopback TCP connection.
func sniffPair(t *testing.T) (server, client *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

// stepConn reports the size of every read, so a test can send its next
// write only after the previous one was read: each write is then a read of
// its own, as a slow client's segments are.
type stepConn struct {
	net.Conn
	reads chan int
}

func (c *stepConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.reads <- n
	return n, err
}

func TestSniff(t *testing.T) {
	const long = time.Hour // a test that waited for it would hang, not pass
	for _, tc := range []struct {
		name    string
		writes  []string
		closeW  bool // half-close after the writes
		timeout time.Duration
		want    sniffKind
	}{
		// Decided as soon as the bytes allow, with the connection still
		// open and the timeout an hour away: sniff must not wait for more.
		{"http1 exactly", []string{"GET "}, false, long, sniffHTTP1},
		{"http1 split", []string{"G", "E", "T", " /"}, false, long, sniffHTTP1},
		{"tls two bytes", []string{"\x16\x03"}, false, long, sniffTLS},
		{"tls split", []string{"\x16", "\x03\x01"}, false, long, sniffTLS},
		{"h2 preface", []string{http2Preface[:3], http2Preface[3:10], http2Preface[10:]}, false, long, sniffH2},
		{"other one byte", []string{"X"}, false, long, sniffOther},
		{"other after two", []string{"G", "X"}, false, long, sniffOther},
		{"redis", []string{"*1\r\n$4\r\nPING\r\n"}, false, long, sniffOther},
		// EOF decides too.
		{"eof undecided", []string{"GE"}, true, long, sniffOther},
		{"eof nothing", nil, true, long, sniffSilent},
		// The timeout decides what never arrives.
		{"silent", nil, false, 20 * time.Millisecond, sniffSilent},
		{"stalled", []string{"PRI * HTTP/2.0\r\n"}, false, 20 * time.Millisecond, sniffOther},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server, client := sniffPair(t)
			sc := &stepConn{Conn: server, reads: make(chan int, 64)}
			type result struct {
				kind   sniffKind
				prefix []byte
				err    error
			}
			done := make(chan result, 1)
			go func() {
				k, p, err := sniff(sc, tc.timeout)
				done <- result{k, p, err}
			}()
			var sent []byte
			read := 0
			for _, w := range tc.writes {
				if _, err := client.Write([]byte(w)); err != nil {
					t.Fatal(err)
				}
				sent = append(sent, w...)
				for read < len(sent) {
					select {
					case n := <-sc.reads:
						read += n
					case <-time.After(waitLimit):
						t.Fatalf("sniff did not read %q within %v", w, waitLimit)
					}
				}
			}
			if tc.closeW {
				client.CloseWrite()
			}
			var r result
			select {
			case r = <-done:
			case <-time.After(waitLimit):
				t.Fatalf("sniff did not return within %v", waitLimit)
			}
			if r.err != nil {
				t.Fatalf("sniff: %v", r.err)
			}
			if r.kind != tc.want {
				t.Errorf("kind %v, want %v", r.kind, tc.want)
			}
			// Every write was read before the next was sent, so the prefix
			// is all of them.
			if string(r.prefix) != string(sent) {
				t.Errorf("prefix %q, want %q", r.prefix, sent)
			}
		})
	}
}

// TestSniffClearsDeadline: after a decision the connection reads normally,
// past the sniff timeout.
func TestSniffClearsDeadline(t *testing.T) {
	server, client := sniffPair(t)
	const timeout = 10 * time.Millisecond
	if _, err := client.Write([]byte("GET ")); err != nil {
		t.Fatal(err)
	}
	kind, _, err := sniff(server, timeout)
	if err != nil || kind != sniffHTTP1 {
		t.Fatalf("sniff = %v, %v", kind, err)
	}
	// Outlive the sniff deadline before the next bytes come.
	<-time.After(5 * timeout)
	if _, err := client.Write([]byte("/ HTTP/1.1\r\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := server.Read(buf)
	if err != nil || string(buf[:n]) != "/ HTTP/1.1\r\n" {
		t.Fatalf("read after sniff: %q, %v", buf[:n], err)
	}
}

// TestSniffReset: a connection closed under sniff is an error, with what
// was read.
func TestSniffClosedUnderIt(t *testing.T) {
	server, _ := sniffPair(t)
	server.Close()
	_, _, err := sniff(server, time.Hour)
	if err == nil {
		t.Fatal("sniff on a closed connection: no error")
	}
}

// TestSniffTLSReplay: a real ClientHello is recognized, and replaying the
// sniffed bytes lets crypto/tls finish the handshake.
func TestSniffTLSReplay(t *testing.T) {
	server, client := sniffPair(t)
	cert := testCert(t, "replay.test", time.Hour)
	hs := make(chan error, 1)
	go func() {
		c := tls.Client(client, &tls.Config{RootCAs: cert.pool, ServerName: "replay.test"})
		err := c.Handshake()
		if err == nil {
			_, err = io.WriteString(c, "hello")
		}
		hs <- err
	}()
	kind, prefix, err := sniff(server, time.Hour)
	if err != nil || kind != sniffTLS {
		t.Fatalf("sniff = %v, %v", kind, err)
	}
	tc := tls.Server(&prefixConn{Conn: server, prefix: prefix}, &tls.Config{Certificates: []tls.Certificate{cert.tls}})
	buf := make([]byte, 5)
	if _, err := io.ReadFull(tc, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("read through TLS: %q, %v", buf, err)
	}
	if err := <-hs; err != nil {
		t.Fatalf("client: %v", err)
	}
}
