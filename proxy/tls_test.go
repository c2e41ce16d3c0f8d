package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCertificate is a server certificate for name, issued by its own
// test CA, generated for the test.
type testCertificate struct {
	tls     tls.Certificate
	pool    *x509.CertPool // holds the issuing CA
	serial  *big.Int
	certPEM []byte // leaf only
	keyPEM  []byte // PKCS #8
}

var testCA = struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}{}

func init() {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "outrigger test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	cert, _ := x509.ParseCertificate(der)
	testCA.cert, testCA.key = cert, key
	testCA.pool = x509.NewCertPool()
	testCA.pool.AddCert(cert)
}

func testCert(t testing.TB, name string, validity time.Duration) *testCertificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, testCA.cert, &key.PublicKey, testCA.key)
	if err != nil {
		t.Fatal(err)
	}
	pk8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	c := &testCertificate{
		pool:    testCA.pool,
		serial:  serial,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk8}),
	}
	c.tls, err = tls.X509KeyPair(c.certPEM, c.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// write saves the pair as dir/tls.crt and dir/tls.key, each by rename as
// careful writers do, and returns their paths.
func (c *testCertificate) write(t testing.TB, dir string) TLSFiles {
	t.Helper()
	f := TLSFiles{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")}
	for path, b := range map[string][]byte{f.CertFile: c.certPEM, f.KeyFile: c.keyPEM} {
		if err := os.WriteFile(path+".tmp", b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func TestLoadKeyPair(t *testing.T) {
	dir := t.TempDir()
	a := testCert(t, "a.test", time.Hour)
	b := testCert(t, "b.test", time.Hour)
	good := a.write(t, dir)
	if c, err := LoadKeyPair(good); err != nil || c.Leaf.SerialNumber.Cmp(a.serial) != 0 {
		t.Fatalf("LoadKeyPair(good) = %v, %v", c, err)
	}
	put := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	otherKey := put("b.key", b.keyPEM)
	garbage := put("garbage.pem", []byte("not pem\n"))
	for _, tc := range []struct {
		name    string
		files   TLSFiles
		key     bool   // the key file is at fault
		errIs   error  // or nil
		message string // part of the message
	}{
		{"missing cert", TLSFiles{filepath.Join(dir, "nope.crt"), good.KeyFile}, false, fs.ErrNotExist, "nope.crt"},
		{"missing key", TLSFiles{good.CertFile, filepath.Join(dir, "nope.key")}, true, fs.ErrNotExist, "nope.key"},
		{"swapped", TLSFiles{good.KeyFile, good.CertFile}, false, nil, "swapped"},
		{"cert not pem", TLSFiles{garbage, good.KeyFile}, false, nil, "no PEM certificate"},
		{"key not pem", TLSFiles{good.CertFile, garbage}, true, nil, "no PEM private key"},
		{"mismatch", TLSFiles{good.CertFile, otherKey}, true, nil, "does not belong to the certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadKeyPair(tc.files)
			var ce *CertError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a *CertError", err)
			}
			if ce.Key != tc.key {
				t.Errorf("error blames the key file: %v, want %v (%v)", ce.Key, tc.key, err)
			}
			if tc.errIs != nil && !errors.Is(err, tc.errIs) {
				t.Errorf("error %v is not %v", err, tc.errIs)
			}
			if !strings.Contains(err.Error(), tc.message) {
				t.Errorf("error %q does not say %q", err, tc.message)
			}
		})
	}
}

// handshakeSerial dials addr with TLS (trusting the test CA) and returns
// the serial number of the certificate the server presented.
func handshakeSerial(t *testing.T, addr, name string) *big.Int {
	t.Helper()
	d := &net.Dialer{Timeout: waitLimit}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{RootCAs: testCA.pool, ServerName: name, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatalf("TLS dial %s: %v", addr, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber
}

// tlsServer accepts on loopback and completes handshakes with cfg until
// the test ends.
func tlsServer(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

// TestCertFilesReload: a pair saved over the old one is served to the next
// handshake; a broken save keeps the old one; Reload works without Run.
func TestCertFilesReload(t *testing.T) {
	dir := t.TempDir()
	a := testCert(t, "svc.test", time.Hour)
	files := a.write(t, dir)
	src, err := NewCertFiles(files, Options{})
	if err != nil {
		t.Fatal(err)
	}
	addr := tlsServer(t, serverTLSConfig(src, alpnHTTP))
	if got := handshakeSerial(t, addr, "svc.test"); got.Cmp(a.serial) != 0 {
		t.Fatalf("served serial %v, want %v", got, a.serial)
	}

	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- src.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	// A new pair, saved by rename: served without any signal.
	b := testCert(t, "svc.test", time.Hour)
	b.write(t, dir)
	waitServed(t, addr, b.serial)

	// A key that does not match: the pair in use stays, Reload says why.
	c := testCert(t, "svc.test", time.Hour)
	if err := os.WriteFile(files.KeyFile, c.keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	var ce *CertError
	if err := src.Reload(); !errors.As(err, &ce) || !ce.Key {
		t.Fatalf("Reload with a mismatched key: %v", err)
	}
	if got := handshakeSerial(t, addr, "svc.test"); got.Cmp(b.serial) != 0 {
		t.Fatalf("after a bad save: served serial %v, want the previous %v", got, b.serial)
	}
	// Completing the pair fixes it.
	if err := os.WriteFile(files.CertFile, c.certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	waitServed(t, addr, c.serial)
}

// waitServed handshakes until the server presents serial; the reload runs
// after a file event, so there is nothing to wait on but the result.
func waitServed(t *testing.T, addr string, serial *big.Int) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		got := handshakeSerial(t, addr, "svc.test")
		if got.Cmp(serial) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still serving serial %v after %v, want %v", got, waitLimit, serial)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
