//go:build unix

package audit

import (
	"errors"
	"os"
	"syscall"
)

// lockDir takes an exclusive advisory lock on the file at path, creating it,
// without waiting. The lock goes with the process, so a crashed owner never
// leaves the spool locked.
func lockDir(path string) (unlock func() error, err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, err
	}
	return func() error {
		return errors.Join(syscall.Flock(int(f.Fd()), syscall.LOCK_UN), f.Close())
	}, nil
}
