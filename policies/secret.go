package policies

import "github.com/pgtenant/pgtenant/internal/secretfile"

// maxSecretFile bounds what ReadSecretFile reads: a secret is a few dozen
// bytes, anything large is the wrong file.
const maxSecretFile = 64 << 10

// ReadSecretFile reads a context key secret from path, without one trailing
// newline.
func ReadSecretFile(path string) ([]byte, error) { return secretfile.ReadSecret(path, maxSecretFile) }
