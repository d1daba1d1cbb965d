package pgcluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// BinDirEnv names the environment variable that, when set, is the only place
// BinDir looks for the PostgreSQL server binaries.
const BinDirEnv = "PGTENANT_PG_BINDIR"

// debianBinGlob matches the per-version binary directories of Debian's
// postgresql packages.
const debianBinGlob = "/usr/lib/postgresql/*/bin"

// requiredBinaries are the programs Start runs; a directory counts as a server
// binary directory only if it has all of them.
var requiredBinaries = []string{"initdb", "postgres"}

// ErrNoBinaries is wrapped by the error BinDir (and so Start) returns when no
// PostgreSQL server binaries are found. Callers must treat it as a broken
// environment, never as a reason to skip tests.
var ErrNoBinaries = errors.New("PostgreSQL server binaries (initdb, postgres) not found; " +
	"install them with `apt-get install postgresql` (or run scripts/ensure-postgres.sh as root), " +
	"or set " + BinDirEnv + " to the directory that holds them")

// BinDir returns the directory holding the PostgreSQL server binaries. It looks,
// in order, at $PGTENANT_PG_BINDIR (used alone when set), at `pg_config
// --bindir` if that directory has initdb, and at the highest-version
// /usr/lib/postgresql/*/bin. scripts/ensure-postgres.sh searches the same way.
// It is safe for concurrent use.
func BinDir() (string, error) {
	if dir := os.Getenv(BinDirEnv); dir != "" {
		if err := checkBinDir(dir); err != nil {
			return "", fmt.Errorf("pgcluster: %s=%q: %w: %w", BinDirEnv, dir, err, ErrNoBinaries)
		}
		return dir, nil
	}
	if dir, ok := pgConfigBinDir(); ok {
		return dir, nil
	}
	if dir, ok := highestDebianBinDir(); ok {
		return dir, nil
	}
	return "", fmt.Errorf("pgcluster: %w", ErrNoBinaries)
}

// checkBinDir reports which required binary dir lacks, if any.
func checkBinDir(dir string) error {
	for _, name := range requiredBinaries {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			return fmt.Errorf("no %s", name)
		}
		if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			return fmt.Errorf("%s is not executable", name)
		}
	}
	return nil
}

func pgConfigBinDir() (string, bool) {
	pgConfig, err := exec.LookPath("pg_config")
	if err != nil {
		return "", false
	}
	out, err := exec.Command(pgConfig, "--bindir").Output()
	if err != nil {
		return "", false
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" || checkBinDir(dir) != nil {
		// Client-only installs (libpq-dev) ship pg_config without a server.
		return "", false
	}
	return dir, true
}

func highestDebianBinDir() (string, bool) {
	dirs, _ := filepath.Glob(debianBinGlob)
	best, bestVersion := "", []int(nil)
	for _, dir := range dirs {
		version, ok := parseVersion(filepath.Base(filepath.Dir(dir)))
		if !ok || checkBinDir(dir) != nil {
			continue
		}
		if best == "" || versionLess(bestVersion, version) {
			best, bestVersion = dir, version
		}
	}
	return best, best != ""
}

// parseVersion parses a Debian PostgreSQL version directory name such as
// "15" or "9.6".
func parseVersion(s string) ([]int, bool) {
	var v []int
	for _, part := range strings.Split(s, ".") {
		n, err := strconv.Atoi(part)
		if err != nil || n < 0 {
			return nil, false
		}
		v = append(v, n)
	}
	return v, true
}

func versionLess(a, b []int) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return len(a) < len(b)
}
