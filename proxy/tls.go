package proxy

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// CertSource gives the server certificate for a TLS handshake.
//
// GetCertificate is called from every handshaking connection's goroutine
// concurrently and must not block: it answers from memory (CertFiles loads
// one pointer). The certificate it returns is never modified afterwards; a
// new one is a new value. A *CertFiles satisfies it, and so does
// StaticCert.
type CertSource interface {
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
}

// StaticCert is a CertSource that always serves one certificate.
type StaticCert struct{ Cert *tls.Certificate }

// GetCertificate implements CertSource.
func (s StaticCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.Cert, nil
}

// TLSFiles names a server certificate and its private key, PEM files. The
// certificate file holds the leaf first, then any intermediates.
type TLSFiles struct {
	CertFile string
	KeyFile  string
}

// CertError is a problem with one file of a TLSFiles: the certificate
// file, or with Key the key file.
type CertError struct {
	Path string
	Key  bool
	Err  error
}

func (e *CertError) Error() string {
	what := "certificate"
	if e.Key {
		what = "key"
	}
	return fmt.Sprintf("tls: %s file %s: %v", what, e.Path, e.Err)
}

func (e *CertError) Unwrap() error { return e.Err }

// LoadKeyPair reads and checks a certificate and its key. Every error is a
// *CertError naming the file at fault and saying how to fix it: an
// unreadable file, a file with no PEM certificate or key in it, or a key
// that is not the certificate's.
func LoadKeyPair(f TLSFiles) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(f.CertFile)
	if err != nil {
		return nil, &CertError{Path: f.CertFile, Err: err}
	}
	keyPEM, err := os.ReadFile(f.KeyFile)
	if err != nil {
		return nil, &CertError{Path: f.KeyFile, Key: true, Err: err}
	}
	return parseKeyPair(f, certPEM, keyPEM)
}

func parseKeyPair(f TLSFiles, certPEM, keyPEM []byte) (*tls.Certificate, error) {
	var leaf *x509.Certificate
	for rest := certPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, &CertError{Path: f.CertFile, Err: fmt.Errorf("the first certificate does not parse: %w", err)}
			}
			leaf = c
			break
		}
		if bytes.HasSuffix([]byte(b.Type), []byte("PRIVATE KEY")) {
			return nil, &CertError{Path: f.CertFile, Err: errors.New("holds a private key before any certificate: are cert_file and key_file swapped?")}
		}
	}
	if leaf == nil {
		return nil, &CertError{Path: f.CertFile, Err: errors.New(`no PEM certificate in it: it must hold "-----BEGIN CERTIFICATE-----" blocks, the server's certificate first`)}
	}
	var key crypto.Signer
	for rest := keyPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if !bytes.HasSuffix([]byte(b.Type), []byte("PRIVATE KEY")) {
			continue
		}
		k, err := parsePrivateKey(b.Bytes)
		if err != nil {
			return nil, &CertError{Path: f.KeyFile, Key: true, Err: err}
		}
		key = k
		break
	}
	if key == nil {
		return nil, &CertError{Path: f.KeyFile, Key: true, Err: errors.New(`no PEM private key in it: it must hold a "-----BEGIN PRIVATE KEY-----" (or RSA/EC PRIVATE KEY) block`)}
	}
	if pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(key.Public()) {
		return nil, &CertError{Path: f.KeyFile, Key: true, Err: fmt.Errorf(
			"this key does not belong to the certificate in %s (subject %q): use the key the certificate was issued for, or the certificate issued for this key", f.CertFile, leaf.Subject.String())}
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil { // checked above; only an unusual encoding gets here
		return nil, &CertError{Path: f.KeyFile, Key: true, Err: err}
	}
	return &cert, nil
}

// parsePrivateKey accepts the encodings crypto/tls accepts: PKCS #8, PKCS
// #1 (RSA) and SEC 1 (EC).
func parsePrivateKey(der []byte) (crypto.Signer, error) {
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
		return nil, fmt.Errorf("unsupported private key type %T", k)
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	return nil, errors.New("the private key does not parse as PKCS #8, PKCS #1 or SEC 1 DER")
}

// certDebounce is how long the watched directories must stay quiet after
// an event before the files are read again: writing a pair, or kubelet
// swapping a secret volume's "..data" link, is a burst of events, and the
// pair is only consistent once the burst is over.
const certDebounce = 100 * time.Millisecond

// CertFiles is a CertSource that serves a certificate from PEM files and
// swaps in a new one when they change: Run watches their directories, and
// Reload reads them at once (cmd/outrigger calls it on SIGHUP). A change
// that does not load (a half-written pair, a key that does not match) is
// logged and the certificate in use stays.
//
// Handshakes load the current certificate with one atomic pointer read;
// connections already established keep the certificate they got.
type CertFiles struct {
	// set at construction
	files TLSFiles
	log   *slog.Logger

	mu  sync.Mutex // serializes loads, so the last one read is the one kept
	cur atomic.Pointer[tls.Certificate]

	runMu sync.Mutex // held for the whole of Run
}

// NewCertFiles loads the pair now and returns a source serving it; an error
// is LoadKeyPair's.
func NewCertFiles(f TLSFiles, opts Options) (*CertFiles, error) {
	cert, err := LoadKeyPair(f)
	if err != nil {
		return nil, err
	}
	c := &CertFiles{files: f, log: opts.logger().With("cert_file", f.CertFile, "key_file", f.KeyFile)}
	c.cur.Store(cert)
	return c, nil
}

// GetCertificate implements CertSource.
func (c *CertFiles) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.cur.Load(), nil
}

// Reload reads the files again and serves the pair if it loads and
// differs from the one in use; otherwise the one in use stays and
// LoadKeyPair's error is returned. Safe from any goroutine.
func (c *CertFiles) Reload() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	cert, err := LoadKeyPair(c.files)
	if err != nil {
		return err
	}
	old := c.cur.Load()
	if slices.EqualFunc(old.Certificate, cert.Certificate, bytes.Equal) {
		return nil
	}
	c.cur.Store(cert)
	c.log.Info("tls: certificate reloaded", "subject", cert.Leaf.Subject.String(), "not_after", cert.Leaf.NotAfter)
	return nil
}

// Run watches the directories of both files until ctx ends, then returns
// nil; after any burst of changes in them it calls Reload. It watches the
// directories, not the files, so that saves by rename and Kubernetes
// secret volumes (a symlink swap no event names the file in) are seen. It
// returns an error when the watch cannot start or dies (a directory was
// removed); Reload still works then.
func (c *CertFiles) Run(ctx context.Context) error {
	if !c.runMu.TryLock() {
		return errors.New("tls: certificate watch already running")
	}
	defer c.runMu.Unlock()
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("tls: watch certificate files: %w", err)
	}
	defer w.Close()
	var dirs []string
	for _, p := range []string{c.files.CertFile, c.files.KeyFile} {
		dir, err := filepath.Abs(filepath.Dir(p))
		if err != nil {
			return fmt.Errorf("tls: watch %s: %w", p, err)
		}
		if slices.Contains(dirs, dir) {
			continue
		}
		if err := w.Add(dir); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("tls: watch directory %s of %s: it does not exist", dir, p)
			}
			return fmt.Errorf("tls: watch directory %s of %s: %w", dir, p, err)
		}
		dirs = append(dirs, dir)
	}
	reload := func() {
		if err := c.Reload(); err != nil {
			c.log.Warn("tls: certificate files changed but do not load; the certificate in use stays", "err", err)
		}
	}
	// A change between the load in NewCertFiles and the watch's start
	// would go unseen otherwise.
	reload()

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("tls: certificate watch closed")
			}
			if slices.Contains(dirs, ev.Name) && ev.Has(fsnotify.Remove|fsnotify.Rename) {
				return fmt.Errorf("tls: directory %s was removed or renamed; certificates reload on SIGHUP only", ev.Name)
			}
			if ev.Op != fsnotify.Chmod {
				timer.Reset(certDebounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("tls: certificate watch closed")
			}
			// Events may have been lost: read the files again.
			c.log.Warn("tls: certificate watch error; reading the files again", "err", err)
			timer.Reset(certDebounce)
		case <-timer.C:
			reload()
		}
	}
}

// ALPN protocol lists the L7 listeners offer (RFC 7301): HTTP listeners
// take HTTP/2 or HTTP/1.1, gRPC listeners HTTP/2 only (gRPC needs it).
var (
	alpnHTTP = []string{"h2", "http/1.1"}
	alpnGRPC = []string{"h2"}
)

// serverTLSConfig is an L7 listener's TLS server config: certificates from
// src, ALPN protos. Session tickets stay on: this is not mTLS, so a resumed
// session skips no identity check.
func serverTLSConfig(src CertSource, protos []string) *tls.Config {
	return &tls.Config{
		GetCertificate: src.GetCertificate,
		NextProtos:     protos,
		MinVersion:     tls.VersionTLS12,
	}
}
