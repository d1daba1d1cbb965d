package testpg

import (
	"bytes"
	"context"
	"errors"
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
