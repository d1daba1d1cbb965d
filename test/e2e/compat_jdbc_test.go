package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// jdbcJar is where Debian's libpostgresql-jdbc-java puts pgjdbc.
const jdbcJar = "/usr/share/java/postgresql.jar"

func TestCompatJDBCSeesOnlyItsTenantAndSurvivesCancelCopyBatchesAndPreparedStatements(t *testing.T) {
	t.Parallel()
	javac := lookRuntime(t, "a JDK (Debian: default-jdk-headless)", nil, "javac")
	java := lookRuntime(t, "a Java runtime (Debian: default-jdk-headless)", nil, "java")
	if _, err := os.Stat(jdbcJar); err != nil {
		skipLoudly(t, "pgjdbc (Debian: libpostgresql-jdbc-java)", err)
	}
	classes := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	src := filepath.Join(clientsDir(t, "java"), "Workload.java")
	start := time.Now()
	if out, err := exec.CommandContext(ctx, javac, "-cp", jdbcJar, "-d", classes, src).CombinedOutput(); err != nil {
		t.Fatalf("javac: %v\n%s", err, out)
	}
	t.Logf("javac took %s", time.Since(start).Round(10*time.Millisecond))
	e := startCompatProxy(t)
	// A small, quick-starting JVM: the workload is short.
	runClient(t, e, classes, java, "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
		"-cp", classes+string(os.PathListSeparator)+jdbcJar, "Workload")
}
