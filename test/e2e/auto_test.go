package e2e

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// autoConfig replaces the demo's listeners with one auto listener on the
// demo's port 9000: HTTP is routed to web.demo, everything else goes to
// the echo backends (server-speaks-first: they greet on connect) as TCP.
const autoConfig = `admin: {listen: 127.0.0.1:15000}
drain: {timeout: 5s}
discovery:
  - {name: local, file: {path: services.yaml}}
outbound:
  - name: auto
    listen: 127.0.0.1:9000
    protocol: auto
    service: echo.demo
    sniff_timeout: 200ms
    routes:
      - {name: web, match: {path: {value: /}}, backends: [{service: web.demo}]}
    tls: {cert_file: tls/web.crt, key_file: tls/web.key}
`

// writeCert writes a self-signed certificate for 127.0.0.1 and its key
// under dir/tls and returns a pool trusting it.
func writeCert(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: "auto.demo"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pk8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "tls"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "tls", "web.crt"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, filepath.Join(dir, "tls", "web.key"), string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk8})))
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}

// One auto listener through the real binary: HTTP/1, h2c and HTTPS with
// ALPN h2 are routed to the web backends; a server-speaks-first protocol
// (the echo backends greet first) works after the sniff timeout; a
// client-speaks-first protocol that is not HTTP is forwarded with its
// first bytes intact.
func TestAutoListener(t *testing.T) {
	dir := demo(t)
	pool := writeCert(t, dir)
	writeFile(t, filepath.Join(dir, "outrigger.yaml"), autoConfig)
	startOutrigger(t, dir)

	// HTTP/1.1, balanced per request over both web backends.
	h1 := &http.Client{Timeout: waitLimit}
	seen := map[string]int{}
	for range 10 {
		resp, a, body := get(t, h1, "http://127.0.0.1:9000/shop")
		if resp.StatusCode != 200 || a.Path != "/shop" || a.Proto != "HTTP/1.1" {
			t.Fatalf("HTTP/1 through auto: %d %s", resp.StatusCode, body)
		}
		seen[a.Name]++
	}
	if len(seen) != 2 {
		t.Errorf("HTTP/1 requests reached %v; want web-1 and web-2", seen)
	}

	// h2c with prior knowledge.
	h2c := &http.Transport{Protocols: new(http.Protocols)}
	h2c.Protocols.SetUnencryptedHTTP2(true)
	defer h2c.CloseIdleConnections()
	resp, a, body := get(t, &http.Client{Transport: h2c, Timeout: waitLimit}, "http://127.0.0.1:9000/h2c")
	if resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" || !strings.HasPrefix(a.Name, "web-") {
		t.Fatalf("h2c through auto: %d %s %s", resp.StatusCode, resp.Proto, body)
	}

	// HTTPS, ALPN h2, terminated by the proxy with the configured cert.
	h2 := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, Protocols: new(http.Protocols)}
	h2.Protocols.SetHTTP2(true)
	defer h2.CloseIdleConnections()
	resp, a, body = get(t, &http.Client{Transport: h2, Timeout: waitLimit}, "https://127.0.0.1:9000/tls")
	if resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" || resp.TLS.NegotiatedProtocol != "h2" || a.Path != "/tls" {
		t.Fatalf("HTTPS h2 through auto: %d %s %s", resp.StatusCode, resp.Proto, body)
	}

	// Server speaks first: the client waits for the greeting, which comes
	// once the sniff timeout sends the connection on as TCP.
	c := dial(t, "127.0.0.1:9000")
	if !strings.HasPrefix(c.backend, "echo-") {
		t.Fatalf("greeting from %q, want an echo backend", c.backend)
	}
	c.roundTrip(t, "after the greeting")

	// Client speaks first, not HTTP: its bytes reach the backend first,
	// intact, and come back after the greeting.
	raw, err := net.DialTimeout("tcp", "127.0.0.1:9000", waitLimit)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(waitLimit))
	io.WriteString(raw, "HELO client\n")
	r := bufio.NewReader(raw)
	greeting, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(greeting, "echo-") {
		t.Fatalf("greeting %q, %v", greeting, err)
	}
	if line, err := r.ReadString('\n'); err != nil || line != "HELO client\n" {
		t.Fatalf("echo of the first bytes: %q, %v", line, err)
	}
}

// outrigger validate names the file at fault when a listener's key is not
// its certificate's.
func TestValidateTLSKeyMismatch(t *testing.T) {
	dir := t.TempDir()
	writeCert(t, dir)
	key := filepath.Join(dir, "tls", "web.key")
	os.Rename(key, filepath.Join(dir, "tls", "first.key"))
	writeCert(t, filepath.Join(dir, "other"))
	os.Rename(filepath.Join(dir, "other", "tls", "web.key"), key)
	writeFile(t, filepath.Join(dir, "services.yaml"), "services: []\n")
	cfgPath := filepath.Join(dir, "outrigger.yaml")
	writeFile(t, cfgPath, autoConfig)

	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(bin, "outrigger"), "validate", "-c", cfgPath).CombinedOutput()
	if err == nil {
		t.Fatalf("validate accepted a key of another certificate:\n%s", out)
	}
	want := cfgPath + ":13: outbound[0].tls.key_file: tls/web.key (" + key + "): this key does not belong to the certificate in " +
		filepath.Join(dir, "tls", "web.crt")
	if !strings.Contains(string(out), want) {
		t.Errorf("validate output:\n%s\nwant it to contain:\n%s", out, want)
	}
}
