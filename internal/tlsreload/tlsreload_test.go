package tlsreload

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/internal/testcert"
)

func writeCert(t *testing.T, dir, name string) {
	t.Helper()
	c, err := testcert.New(nil, name)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), c.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), c.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
}

// servedName dials a TLS listener using cfg and returns the common name of
// the certificate it presents.
func servedName(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName
}

func TestReloadServesTheNewCertificateAndKeepsTheOldOneOnError(t *testing.T) {
	dir := t.TempDir()
	writeCert(t, dir, "first")
	r, err := New(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := r.Config()
	if got := servedName(t, cfg); got != "first" {
		t.Fatalf("serves %q", got)
	}
	writeCert(t, dir, "second")
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := servedName(t, cfg); got != "second" {
		t.Fatalf("after reload serves %q", got)
	}
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err == nil {
		t.Fatal("a broken key file reloaded")
	}
	if got := servedName(t, cfg); got != "second" {
		t.Fatalf("after a failed reload serves %q", got)
	}
}
