// Package tlsreload serves a TLS certificate that can be replaced at run
// time, for pgtenant's client listener: SIGHUP reloads the files without
// dropping a connection.
package tlsreload

import (
	"crypto/tls"
	"fmt"
	"sync/atomic"
)

// Reloader holds the certificate read from a certificate and a key file.
// Safe for concurrent use.
type Reloader struct {
	certFile, keyFile string
	cert              atomic.Pointer[tls.Certificate]
}

// New reads the certificate and key.
func New(certFile, keyFile string) (*Reloader, error) {
	r := &Reloader{certFile: certFile, keyFile: keyFile}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload reads the files again. On error the previous certificate stays in
// use and the error says why.
func (r *Reloader) Reload() error {
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("tls.cert_file/tls.key_file: %w", err)
	}
	r.cert.Store(&cert)
	return nil
}

// GetCertificate is for tls.Config.GetCertificate: every handshake uses the
// certificate loaded last.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cert.Load(), nil
}

// Config returns a server tls.Config that uses the reloader.
func (r *Reloader) Config() *tls.Config {
	return &tls.Config{GetCertificate: r.GetCertificate, MinVersion: tls.VersionTLS12}
}
