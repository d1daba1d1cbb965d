package pgerr

import (
	"errors"
	"fmt"
	"testing"
)

func TestWireErrorCarriesCodeAndMessageButNeverTheCause(t *testing.T) {
	cause := errors.New("dial tcp 10.0.0.1:5432: secret-detail")
	err := fmt.Errorf("wrapped: %w", New(TooManyConnections, "pool_wait_timeout", "timed out").WithHint("raise pool.size").Wrap(cause))
	w := WireError(err)
	if w.Code != TooManyConnections || w.Severity != SeverityError || w.Message != "timed out" || w.Hint != "raise pool.size" {
		t.Fatalf("wire error: %+v", w)
	}
	if w.Detail != "" || errors.Is(err, cause) == false {
		t.Fatalf("cause handling: %+v", w)
	}
	if Reason(err) != "pool_wait_timeout" {
		t.Fatalf("reason %q", Reason(err))
	}
}

func TestUnknownErrorsBecomeInternalErrors(t *testing.T) {
	w := WireError(errors.New("boom: internal detail"))
	if w.Code != InternalError || w.Message != "internal proxy error" {
		t.Fatalf("got %+v", w)
	}
	if Reason(errors.New("x")) != "internal" {
		t.Fatal("reason of an unknown error")
	}
}

func TestFatalErrorsSayThatTheyAreFatal(t *testing.T) {
	if !NewFatal(InvalidPassword, "expired", "token expired").Fatal() || New(InvalidPassword, "x", "y").Fatal() {
		t.Fatal("Fatal() wrong")
	}
	if WireError(NewFatal(AdminShutdown, "shutdown", "bye")).Severity != SeverityFatal {
		t.Fatal("severity not FATAL on the wire")
	}
}
