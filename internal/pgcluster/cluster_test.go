package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// syncBuffer is a bytes.Buffer safe for the cluster's log goroutine and the
// test to use at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func startCluster(t *testing.T, opts Options) *Cluster {
	t.Helper()
	c, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return c
}

func TestClusterServesSuperuserAndCreatedRoleOverTCP(t *testing.T) {
	t.Parallel()
	log := &syncBuffer{}
	c := startCluster(t, Options{
		Log:      log,
		Settings: map[string]string{"max_connections": "150", "application_name": `it's \ quoted`},
	})
	ctx := t.Context()

	if c.Host != "127.0.0.1" || c.Port <= 0 {
		t.Fatalf("Host, Port = %q, %d", c.Host, c.Port)
	}
	su, err := c.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer su.Close(ctx)
	for setting, want := range map[string]string{
		"fsync":                   "off",
		"synchronous_commit":      "off",
		"full_page_writes":        "off",
		"listen_addresses":        "127.0.0.1",
		"unix_socket_directories": c.SocketDir,
		"max_connections":         "150",
		"application_name":        "pgx", // the client's startup parameter wins over the file
		"server_encoding":         "UTF8",
		"lc_collate":              "C",
		"password_encryption":     "scram-sha-256",
	} {
		var got string
		if err := su.QueryRow(ctx, "SELECT current_setting($1)", setting).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if setting == "application_name" {
			// Read the file's value, not the session's.
			if err := su.QueryRow(ctx, "SELECT reset_val FROM pg_settings WHERE name = $1", setting).Scan(&got); err != nil {
				t.Fatal(err)
			}
			want = `it's \ quoted`
		}
		if got != want {
			t.Errorf("%s = %q, want %q", setting, got, want)
		}
	}

	if err := c.CreateDatabase(ctx, "app db"); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateRole(ctx, "tenant'role", "p@ss:w/o'rd"); err != nil {
		t.Fatal(err)
	}
	if err := c.ExecIn(ctx, "app db", "CREATE TABLE t (id int); GRANT SELECT ON t TO \"tenant'role\""); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, c.DSN("tenant'role", "p@ss:w/o'rd", "app db"))
	if err != nil {
		t.Fatalf("connecting as created role: %v", err)
	}
	defer conn.Close(ctx)
	var user, db string
	var super, bypass bool
	err = conn.QueryRow(ctx, `SELECT current_user, current_database(), rolsuper, rolbypassrls
		FROM pg_roles WHERE rolname = current_user`).Scan(&user, &db, &super, &bypass)
	if err != nil {
		t.Fatal(err)
	}
	if user != "tenant'role" || db != "app db" || super || bypass {
		t.Errorf("created role: user=%q db=%q super=%v bypassrls=%v; want tenant'role, app db, false, false", user, db, super, bypass)
	}
	if _, err := conn.Exec(ctx, "SELECT * FROM t"); err != nil {
		t.Errorf("granted SELECT failed: %v", err)
	}

	if _, err := pgx.Connect(ctx, c.DSN("tenant'role", "wrong", "app db")); err == nil {
		t.Error("connected with a wrong password; TCP must require scram-sha-256")
	}
	local, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres", c.SocketDir, c.Port))
	if err != nil {
		t.Errorf("trusted Unix-socket connection without a password: %v", err)
	} else {
		local.Close(ctx)
	}
	if !strings.Contains(log.String(), "ready to accept connections") {
		t.Errorf("Options.Log did not receive the server's output; got:\n%s", log.String())
	}
	if !strings.Contains(c.LogTail(), "ready to accept connections") {
		t.Errorf("LogTail() lacks the server's output; got:\n%s", c.LogTail())
	}
}

func TestStopRemovesTheDirectoryAndIsIdempotent(t *testing.T) {
	t.Parallel()
	c, err := Start(t.Context(), Options{SuperuserPassword: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	if c.SuperuserPassword != "secret" {
		t.Errorf("SuperuserPassword = %q, want the one given", c.SuperuserPassword)
	}
	if err := c.Exec(t.Context(), "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(c.Dir, "postgres.log")); err != nil {
		t.Errorf("with Options.Log nil, want the log in the cluster's directory: %v", err)
	}
	if err := c.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := os.Stat(c.Dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after Stop, %s: err = %v, want it gone", c.Dir, err)
	}
	if err := c.Exec(t.Context(), "SELECT 1"); err == nil {
		t.Error("server still answers after Stop")
	}
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestStartRejectsReservedOrMalformedSettings(t *testing.T) {
	for _, settings := range []map[string]string{
		{"port": "5432"},
		{"Listen_Addresses": "*"},
		{"unix_socket_directories": ""},
		{"fsync = on\nport": "1"},
		{"work_mem": "4MB\nport = 1"},
	} {
		if _, err := Start(t.Context(), Options{Settings: settings}); err == nil {
			t.Errorf("Start accepted Settings %q", settings)
		}
	}
}

func TestStartAsRootNeedsABaseDirTheServerUserCanEnter(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root hands the cluster to another OS user")
	}
	base := t.TempDir()
	if err := os.Chmod(base, 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := Start(t.Context(), Options{BaseDir: base})
	if err == nil || !strings.Contains(err.Error(), "cannot enter") {
		t.Fatalf("Start in a root-only BaseDir: err = %v, want one saying the server user cannot enter it", err)
	}
	if left, _ := filepath.Glob(filepath.Join(base, dirPrefix+"*")); len(left) > 0 {
		t.Errorf("failed Start left %v behind", left)
	}
}

// orphanEnv makes the test binary start a cluster, print its directory and
// postmaster PID, and exit without Stop (see TestServerShutsDownWhenItsOwnerDiesWithoutStop).
const orphanEnv = "PGCLUSTER_TEST_ORPHAN_BASEDIR"

func runOrphanOwner() {
	c, err := Start(context.Background(), Options{BaseDir: os.Getenv(orphanEnv)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(c.Dir, c.srv.cmd.Process.Pid)
	os.Exit(0)
}

func TestServerShutsDownWhenItsOwnerDiesWithoutStop(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("only Linux has a parent-death signal")
	}
	t.Parallel()
	base, err := os.MkdirTemp("", "pgcluster-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}

	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), orphanEnv+"="+base)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("owner process: %v\n%s", err, out)
	}
	var dir string
	var pm int
	if _, err := fmt.Sscan(string(out), &dir, &pm); err != nil {
		t.Fatalf("owner printed %q: %v", out, err)
	}

	deadline := time.Now().Add(15 * time.Second)
	for running(pm) {
		if time.Now().After(deadline) {
			syscall.Kill(pm, syscall.SIGKILL)
			t.Fatalf("postmaster %d still running 15s after its owner exited", pm)
		}
		time.Sleep(50 * time.Millisecond)
	}

	sweepStale(base)
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("sweepStale kept %s, whose owner and server are gone (err = %v)", dir, err)
	}
}

func TestSweepKeepsDirectoriesOfLiveOrUnknownOwners(t *testing.T) {
	base := t.TempDir()
	live := filepath.Join(base, dirPrefix+"live")
	unknown := filepath.Join(base, dirPrefix+"unknown")
	for _, d := range []string{live, unknown} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := writeOwner(live); err != nil {
		t.Fatal(err)
	}
	sweepStale(base)
	for _, d := range []string{live, unknown} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("sweepStale removed %s: %v", d, err)
		}
	}
}

// running reports whether pid is a live process; a zombie (possible when no
// init reaps the orphaned postmaster) counts as exited.
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
