package policies

import (
	"bytes"
	"fmt"
	"io"
	"os"
)

// maxSecretFile bounds what ReadSecretFile reads: a secret is a few dozen
// bytes, anything large is the wrong file.
const maxSecretFile = 64 << 10

// ReadSecretFile reads a context key secret from path, without one trailing
// newline.
func ReadSecretFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxSecretFile {
		return nil, fmt.Errorf("%s is larger than %d bytes; is this the right file?", path, maxSecretFile)
	}
	data = bytes.TrimSuffix(data, []byte("\n"))
	return bytes.TrimSuffix(data, []byte("\r")), nil
}
