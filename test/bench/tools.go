package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/pgtenant/pgtenant/internal/pgcluster"
)

// modulePath is the module the bench builds pgtenant from.
const modulePath = "github.com/pgtenant/pgtenant"

// tools are the external programs the bench drives.
type tools struct {
	pgbench   string
	pgbouncer string
}

// moduleRoot finds the pgtenant module's directory from the working
// directory upwards (make and `go run ./test/bench` run from inside it).
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if f, err := os.Open(filepath.Join(dir, "go.mod")); err == nil {
			first, _ := bufio.NewReader(f).ReadString('\n')
			f.Close()
			if strings.TrimSpace(first) == "module "+modulePath {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("run the bench from inside the %s module (make bench)", modulePath)
		}
		dir = parent
	}
}

// ensureTools finds pgbench and pgbouncer and, as root, installs what is
// missing; otherwise it says what to install. The PostgreSQL server binaries
// are ensured by scripts/ensure-postgres.sh, as for the tests.
func ensureTools(ctx context.Context, root string) (tools, error) {
	var t tools
	binDir, err := pgcluster.BinDir()
	if errors.Is(err, pgcluster.ErrNoBinaries) {
		cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "ensure-postgres.sh"))
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return t, fmt.Errorf("PostgreSQL server binaries are missing and scripts/ensure-postgres.sh failed: %w", err)
		}
		binDir, err = pgcluster.BinDir()
	}
	if err != nil {
		return t, err
	}

	// pgbench ships with the server binaries (Debian 12: postgresql-15) or
	// with the client (postgresql-client on other releases).
	findPgbench := func() string {
		return findProgram("pgbench", append([]string{binDir}, versionedBinDirs()...))
	}
	if t.pgbench = findPgbench(); t.pgbench == "" {
		if err := aptInstall(ctx, "pgbench", "postgresql-client"); err != nil {
			return t, err
		}
		if t.pgbench = findPgbench(); t.pgbench == "" {
			return t, errors.New("installed postgresql-client but found no pgbench; install the package that ships it")
		}
	}

	findPgbouncer := func() string { return findProgram("pgbouncer", []string{"/usr/sbin", "/usr/bin"}) }
	if t.pgbouncer = findPgbouncer(); t.pgbouncer == "" {
		if err := aptInstall(ctx, "pgbouncer", "pgbouncer"); err != nil {
			return t, err
		}
		stopPackageService(ctx, "pgbouncer")
		if t.pgbouncer = findPgbouncer(); t.pgbouncer == "" {
			return t, errors.New("installed the pgbouncer package but found no pgbouncer program")
		}
	}
	return t, nil
}

// findProgram returns the first executable name in dirs, else on PATH, else "".
func findProgram(name string, dirs []string) string {
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return ""
}

// versionedBinDirs lists /usr/lib/postgresql/*/bin, highest version first.
func versionedBinDirs() []string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		va, vb := versionOf(a), versionOf(b)
		if va != vb {
			return vb - va
		}
		return strings.Compare(b, a)
	})
	return dirs
}

// versionOf returns the major version in /usr/lib/postgresql/N/bin, or 0.
func versionOf(binDir string) int {
	var v int
	_, _ = fmt.Sscanf(filepath.Base(filepath.Dir(binDir)), "%d", &v)
	return v
}

// aptInstall installs pkg with apt-get, which must run as root and never
// reads stdin; the package lists are refreshed only when apt does not know
// pkg. program names what the package is for, in messages.
func aptInstall(ctx context.Context, program, pkg string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%s is not installed; install it and run the bench again: sudo apt-get install %s", program, pkg)
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return fmt.Errorf("%s is not installed and there is no apt-get; install the %s package by hand", program, pkg)
	}
	fmt.Fprintf(os.Stderr, "bench: %s is missing; installing the %s package\n", program, pkg)
	if exec.CommandContext(ctx, "apt-cache", "show", pkg).Run() != nil {
		if err := runLoud(ctx, "apt-get", "update"); err != nil {
			return fmt.Errorf("apt-get update: %w", err)
		}
	}
	if err := runLoud(ctx, "apt-get", "install", "-y", pkg); err != nil {
		return fmt.Errorf("apt-get install %s: %w", pkg, err)
	}
	return nil
}

// runLoud runs a command without stdin, its output going to our stderr.
func runLoud(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}

// stopPackageService stops and disables the service a freshly installed
// package may have started: the bench runs its own server. Failures are
// ignored (no init system in a container, service never started ...).
func stopPackageService(ctx context.Context, name string) {
	quiet := func(prog string, args ...string) {
		if _, err := exec.LookPath(prog); err == nil {
			_ = exec.CommandContext(ctx, prog, args...).Run()
		}
	}
	if fi, err := os.Stat("/run/systemd/system"); err == nil && fi.IsDir() {
		quiet("systemctl", "disable", "--now", name)
		return
	}
	quiet("service", name, "stop")
	quiet("update-rc.d", name, "disable")
}
