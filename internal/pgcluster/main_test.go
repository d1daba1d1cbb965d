package pgcluster

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(orphanEnv) != "" {
		runOrphanOwner()
		return
	}
	goleak.VerifyTestMain(m)
}
