package testpg_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/pgtenant/pgtenant/internal/pgcluster"
	"github.com/pgtenant/pgtenant/test/testpg"
)

func TestMain(m *testing.M) {
	testpg.MainWith(m, testpg.Config{
		Setup: func(ctx context.Context, c *pgcluster.Cluster) error {
			return c.CreateDatabase(ctx, "setup_ran")
		},
	})
}

func TestSharedClusterIsUpAndSetupRan(t *testing.T) {
	t.Parallel()
	c := testpg.Cluster(t)
	if err := c.ExecIn(t.Context(), "setup_ran", "SELECT 1"); err != nil {
		t.Fatalf("database made by Config.Setup: %v", err)
	}
}

func TestEveryCallerGetsTheSameCluster(t *testing.T) {
	t.Parallel()
	if a, b := testpg.Cluster(t), testpg.Cluster(t); a != b {
		t.Fatalf("Cluster returned %p then %p", a, b)
	}
}

func TestMissingBinariesFailTheBinaryWithTheInstallCommand(t *testing.T) {
	t.Parallel()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), pgcluster.BinDirEnv+"="+t.TempDir())
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("test binary without PostgreSQL binaries: err = %v, want a non-zero exit\n%s", err, out)
	}
	if !strings.Contains(string(out), "apt-get install postgresql") {
		t.Errorf("output does not say what to install:\n%s", out)
	}
}
