package testpg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// StepTimeout bounds one step of a test against PostgreSQL (see Context).
const StepTimeout = 30 * time.Second

// Context returns a context for a test's steps: it ends after StepTimeout,
// or when the test does.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), StepTimeout)
	t.Cleanup(cancel)
	return ctx
}

var nonIdent = regexp.MustCompile(`[^a-z0-9]+`)

// Name derives an identifier of the test's own, for its databases and
// roles: prefix, the test's name in lower case, and a hash that keeps
// names apart when they share their first 32 characters. It stays under
// PostgreSQL's 63 bytes with room for a suffix.
func Name(t testing.TB, prefix string) string {
	n := nonIdent.ReplaceAllString(strings.ToLower(t.Name()), "_")
	if len(n) > 32 {
		n = n[:32]
	}
	return fmt.Sprintf("%s_%s_%08x", prefix, n, crc32.ChecksumIEEE([]byte(t.Name())))
}

// SQLState returns the SQLSTATE of err, or "" when it carries none.
func SQLState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// SyncBuffer is a bytes.Buffer that a logger's goroutines and the test may
// use at once.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
