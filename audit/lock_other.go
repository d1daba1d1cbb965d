//go:build !unix

package audit

// lockDir does not lock where advisory file locks are unavailable; one
// process per spool directory is then up to the operator.
func lockDir(string) (unlock func() error, err error) {
	return func() error { return nil }, nil
}
