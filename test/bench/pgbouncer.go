package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/pgtenant/pgtenant/internal/pgcluster"
)

// pgbouncerOSUser runs PgBouncer when the bench runs as root: PgBouncer
// refuses to run as root, and the PostgreSQL packages create this account.
const pgbouncerOSUser = pgcluster.DefaultOSUser

// startPgbouncer runs PgBouncer in transaction pooling mode in front of the
// cluster's bench database, with the same pool size as pgtenant, and waits
// until bench_app can log in through it.
func startPgbouncer(ctx context.Context, bin, work string, c *pgcluster.Cluster, password string, o options) (*proxyServer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(work, "pgbouncer")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	attr, err := pgbouncerIdentity(work, dir)
	if err != nil {
		return nil, err
	}

	files := map[string]string{
		"pgbouncer.ini": pgbouncerIni(dir, c, port, password, o),
		// md5 with a plain-text password in the auth file: PgBouncer
		// computes the hash per login; logins are not what is measured.
		"userlist.txt": fmt.Sprintf("%q %q\n", benchRole, password),
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			return nil, err
		}
		if attr != nil {
			if err := os.Chown(p, int(attr.Uid), int(attr.Gid)); err != nil {
				return nil, err
			}
		}
	}

	cmd := exec.Command(bin, filepath.Join(dir, "pgbouncer.ini"))
	cmd.Env = cleanEnv()
	cmd.Dir = dir
	if attr != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: attr}
	}
	proc, err := startChild("pgbouncer", cmd, filepath.Join(dir, "stderr.log"))
	if err != nil {
		return nil, err
	}
	t := target{name: "pgbouncer", host: "127.0.0.1", port: port, user: benchRole, password: password, via: proc}
	if err := proc.waitReady(ctx, t.dsn()); err != nil {
		_ = proc.stop() // its output is in err already
		return nil, err
	}
	return &proxyServer{proc: proc, target: t}, nil
}

// pgbouncerIni is PgBouncer's configuration: TCP on loopback only, no Unix
// socket, files in dir.
func pgbouncerIni(dir string, c *pgcluster.Cluster, port int, password string, o options) string {
	lines := []string{
		"[databases]",
		fmt.Sprintf("%s = host=%s port=%d dbname=%s user=%s password=%s",
			benchDatabase, c.Host, c.Port, benchDatabase, benchRole, password),
		"",
		"[pgbouncer]",
		"listen_addr = 127.0.0.1",
		"listen_port = " + strconv.Itoa(port),
		"unix_socket_dir =",
		"auth_type = md5",
		"auth_file = " + filepath.Join(dir, "userlist.txt"),
		"pool_mode = transaction",
		"default_pool_size = " + strconv.Itoa(o.pool),
		"min_pool_size = 0",
		"reserve_pool_size = 0",
		"max_client_conn = " + strconv.Itoa(max(200, o.clients+10)),
		"ignore_startup_parameters = extra_float_digits",
		"log_connections = 0",
		"log_disconnections = 0",
		"logfile = " + filepath.Join(dir, "pgbouncer.log"),
		"pidfile = " + filepath.Join(dir, "pgbouncer.pid"),
	}
	return strings.Join(lines, "\n") + "\n"
}

// pgbouncerIdentity returns the credentials to run PgBouncer with when the
// bench is root (nil otherwise) and hands dir to that user, who must also be
// able to traverse work.
func pgbouncerIdentity(work, dir string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(pgbouncerOSUser)
	if err != nil {
		return nil, fmt.Errorf("PgBouncer refuses to run as root and the OS user %q to run it as does not exist: %w", pgbouncerOSUser, err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return nil, fmt.Errorf("OS user %q: uid %q: %w", u.Username, u.Uid, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return nil, fmt.Errorf("OS user %q: gid %q: %w", u.Username, u.Gid, err)
	}
	if err := os.Chmod(work, 0o711); err != nil {
		return nil, err
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}
