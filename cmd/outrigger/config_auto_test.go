package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// writeSelfSigned writes a self-signed certificate for name and its key
// into dir as name.crt and name.key.
func writeSelfSigned(t *testing.T, dir, name string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pk8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for file, block := range map[string]*pem.Block{
		name + ".crt": {Type: "CERTIFICATE", Bytes: der},
		name + ".key": {Type: "PRIVATE KEY", Bytes: pk8},
	} {
		if err := os.WriteFile(filepath.Join(dir, file), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

const autoHead = "discovery:\n  - {name: local, file: {path: s.yaml}}\noutbound:\n"

func TestParseConfigAutoAndTLS(t *testing.T) {
	dir := t.TempDir()
	writeSelfSigned(t, dir, "web")
	cfg, err := ParseConfig(filepath.Join(dir, "c.yaml"), []byte(autoHead+`  - name: app
    listen: 127.0.0.1:9000
    protocol: auto
    service: db.shop
    routes:
      - {name: api, match: {path: {value: /api}}, backends: [{service: api.shop}]}
    tls: {cert_file: web.crt, key_file: web.key}
  - name: plain
    listen: 127.0.0.1:9001
    protocol: auto
    service: web.shop
    sniff_timeout: 250ms
    idle_timeout: 5m
  - name: secure
    listen: 127.0.0.1:9002
    protocol: grpc
    service: rpc.shop
    tls: {cert_file: web.crt, key_file: web.key}
`))
	if err != nil {
		t.Fatal(err)
	}
	type got struct {
		Sniff, Idle time.Duration
		Upstream    string
		Services    []string
		TLS         *ListenerTLS
	}
	var gots []got
	for _, o := range cfg.Outbound {
		gots = append(gots, got{o.SniffTimeout.D(), o.IdleTimeout.D(), o.UpstreamProtocol, o.services(), o.TLS})
	}
	want := []got{
		// auto: the TCP fallback's idle timeout, the default sniff timeout,
		// and the fallback service first among the services.
		{time.Second, time.Hour, "http1", []string{"db.shop", "api.shop"}, &ListenerTLS{CertFile: "web.crt", KeyFile: "web.key"}},
		{250 * time.Millisecond, 5 * time.Minute, "http1", []string{"web.shop"}, nil},
		{0, 60 * time.Second, "h2c", []string{"rpc.shop"}, &ListenerTLS{CertFile: "web.crt", KeyFile: "web.key"}},
	}
	if diff := cmp.Diff(gots, want); diff != "" {
		t.Errorf("listeners (-got +want):\n%s", diff)
	}
	if got, want := cfg.tlsFiles(cfg.Outbound[0].TLS).KeyFile, filepath.Join(dir, "web.key"); got != want {
		t.Errorf("key file resolves to %s, want %s", got, want)
	}
}

func TestParseConfigAutoAndTLSErrors(t *testing.T) {
	dir := t.TempDir()
	writeSelfSigned(t, dir, "a")
	writeSelfSigned(t, dir, "b")
	for _, tc := range []struct {
		name string
		yaml string
		want []string
	}{{
		name: "auto needs a service",
		yaml: autoHead + "  - name: app\n    listen: 127.0.0.1:9000\n    protocol: auto\n    routes: [{name: r, backends: [{service: a.b}]}]\n",
		want: []string{`c.yaml:4: outbound[0].service: required: an auto listener forwards connections that are not HTTP to this service (and HTTP requests too, unless routes are set)`},
	}, {
		name: "sniff_timeout and tls on tcp",
		yaml: autoHead + "  - name: db\n    listen: 127.0.0.1:9000\n    service: db.shop\n    sniff_timeout: 1s\n    tls: {cert_file: a.crt, key_file: a.key}\n",
		want: []string{
			`c.yaml:7: outbound[0].sniff_timeout: applies only to protocol: auto`,
			`c.yaml:8: outbound[0].tls: applies only to protocol: http, grpc or auto (a tcp listener forwards TLS as it is)`,
		},
	}, {
		name: "bad sniff timeout",
		yaml: autoHead + "  - name: app\n    listen: 127.0.0.1:9000\n    protocol: auto\n    service: a.b\n    sniff_timeout: -1s\n",
		want: []string{`c.yaml:8: outbound[0].sniff_timeout: must not be negative`},
	}, {
		name: "tls fields required",
		yaml: autoHead + "  - name: app\n    listen: 127.0.0.1:9000\n    protocol: http\n    service: a.b\n    tls: {}\n",
		want: []string{
			`c.yaml:8: outbound[0].tls.cert_file: required: the PEM certificate file (the server's certificate first, then intermediates)`,
			`c.yaml:8: outbound[0].tls.key_file: required: the PEM private key file of the certificate`,
		},
	}, {
		name: "missing file, resolved against the config's directory",
		yaml: autoHead + "  - name: app\n    listen: 127.0.0.1:9000\n    protocol: http\n    service: a.b\n    tls:\n      cert_file: nope.crt\n      key_file: a.key\n",
		want: []string{`c.yaml:9: outbound[0].tls.cert_file: ` + filepath.Join(dir, "nope.crt") + ` does not exist (relative paths are taken from the config file's directory)`},
	}, {
		name: "key of another certificate",
		yaml: autoHead + "  - name: app\n    listen: 127.0.0.1:9000\n    protocol: auto\n    service: a.b\n    tls:\n      cert_file: a.crt\n      key_file: b.key\n",
		want: []string{`c.yaml:10: outbound[0].tls.key_file: b.key (` + filepath.Join(dir, "b.key") + `): this key does not belong to the certificate in ` +
			filepath.Join(dir, "a.crt") + ` (subject "CN=a"): use the key the certificate was issued for, or the certificate issued for this key`},
	}, {
		name: "swapped",
		yaml: autoHead + "  - name: app\n    listen: 127.0.0.1:9000\n    protocol: grpc\n    service: a.b\n    tls: {cert_file: a.key, key_file: a.crt}\n",
		want: []string{`c.yaml:8: outbound[0].tls.cert_file: a.key (` + filepath.Join(dir, "a.key") + `): holds a private key before any certificate: are cert_file and key_file swapped?`},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig(filepath.Join(dir, "c.yaml"), []byte(tc.yaml))
			if err == nil {
				t.Fatalf("ParseConfig succeeded with %+v, want an error", cfg)
			}
			got := strings.Split(err.Error(), "\n")
			for i := range got {
				got[i] = strings.TrimPrefix(got[i], dir+string(filepath.Separator))
			}
			if diff := cmp.Diff(got, tc.want); diff != "" {
				t.Errorf("errors (-got +want):\n%s", diff)
			}
		})
	}
}
