// Package secretfile reads secrets and keys from files, the way every
// pgtenant component takes them (never from a command line).
package secretfile

import (
	"bytes"
	"fmt"
	"io"
	"os"
)

// Read reads the file at path, refusing one larger than limit bytes: a
// secret or key is small, so anything large is the wrong file.
func Read(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes; is this the right file?", path, limit)
	}
	return data, nil
}

// ReadSecret is Read without one trailing newline (as editors and echo add).
func ReadSecret(path string, limit int64) ([]byte, error) {
	data, err := Read(path, limit)
	if err != nil {
		return nil, err
	}
	data = bytes.TrimSuffix(data, []byte("\n"))
	return bytes.TrimSuffix(data, []byte("\r")), nil
}
