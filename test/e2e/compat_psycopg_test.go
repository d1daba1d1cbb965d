package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"
)

func TestCompatPsycopgSeesOnlyItsTenantAndSurvivesCancelCopyAndPreparedStatements(t *testing.T) {
	t.Parallel()
	// Debian's python3-psycopg is installed for /usr/bin/python3, which need
	// not be the python3 first on PATH.
	python := lookRuntime(t, "Python 3 with psycopg 3 (Debian: python3-psycopg)", importsPsycopg,
		"/usr/bin/python3", "python3")
	e := startCompatProxy(t)
	runClient(t, e, clientsDir(t, "python"), python, "workload.py")
}

func importsPsycopg(python string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, python, "-c", "import psycopg").CombinedOutput(); err != nil {
		return fmt.Errorf("%s cannot import psycopg: %v: %s", python, err, out)
	}
	return nil
}
