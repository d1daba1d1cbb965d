package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func TestCompatNodePostgresSeesOnlyItsTenantAndSurvivesCancelCopyPipelineAndNamedStatements(t *testing.T) {
	t.Parallel()
	node := lookRuntime(t, "Node.js (Debian: nodejs)", nil, "node")
	dir := clientsDir(t, "node")
	for _, pkg := range []string{"pg", "pg-copy-streams"} {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", pkg, "package.json")); err != nil {
			skipLoudly(t, fmt.Sprintf("the npm package %s (npm ci in test/e2e/clients/node)", pkg), err)
		}
	}
	e := startCompatProxy(t)
	runClient(t, e, dir, node, "workload.js")
}
