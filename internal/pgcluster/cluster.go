// Package pgcluster runs throwaway PostgreSQL servers from the local
// PostgreSQL binaries: a fresh initdb in a temporary directory, a server on a
// free loopback port, and removal of both on Stop. Tests use it through
// test/testpg; `pgtenant demo` uses it directly.
//
// The servers trade durability for speed (fsync, synchronous_commit and
// full_page_writes are off) and must never hold data anyone wants to keep.
package pgcluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults for Options fields left zero, and the settings every cluster gets.
const (
	// Superuser is the name of the cluster's superuser role.
	Superuser = "postgres"
	// Host is the only address the server listens on.
	Host = "127.0.0.1"
	// DefaultStartTimeout bounds initdb plus server start-up.
	DefaultStartTimeout = 60 * time.Second
	// DefaultMaxConnections is max_connections unless Options.Settings says
	// otherwise; the proxy's pool tests need more than PostgreSQL's 100.
	DefaultMaxConnections = 200
)

// dirPrefix starts the name of every cluster's temporary directory; the sweep
// of directories left by crashed owners only looks at these.
const dirPrefix = "pgtenant-pg-"

// portAttempts is how often Start picks a new port when another process took
// the free port it chose before the server could bind it.
const portAttempts = 3

// maxSocketPath is the longest Unix socket path Linux accepts (sun_path less
// its terminating NUL).
const maxSocketPath = 107

// reservedSettings are postgresql.conf parameters the Cluster's fields
// describe, so Options.Settings may not change them.
var reservedSettings = []string{"port", "listen_addresses", "unix_socket_directories"}

// settingName is what a postgresql.conf parameter name may look like,
// including extension-qualified names such as citus.shard_count.
var settingName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$`)

// Options configures Start. The zero value gives a working cluster.
type Options struct {
	// Settings are extra postgresql.conf parameters, written after the
	// harness defaults so they override them (max_connections, fsync ...).
	// Start quotes the values: pass them bare ("500", "on", "citus").
	// port, listen_addresses and unix_socket_directories are rejected.
	Settings map[string]string
	// Log receives the output of initdb and of the server. It must stay
	// usable until Stop returns; the Cluster writes to it from one goroutine
	// at a time. nil writes to postgres.log in the cluster's directory, which
	// Stop removes. Either way Cluster.LogTail returns the recent output.
	Log io.Writer
	// SuperuserPassword is the password of the superuser role for TCP
	// connections (Unix-socket connections are trusted). Empty generates a
	// random one, readable as Cluster.SuperuserPassword.
	SuperuserPassword string
	// BinDir is the directory holding initdb and postgres. Empty means the
	// result of BinDir().
	BinDir string
	// BaseDir is where the cluster's temporary directory is created. Empty
	// means os.TempDir(). When the caller is root, OSUser must be able to
	// traverse it.
	BaseDir string
	// OSUser is the OS account that runs initdb and postgres when the caller
	// is root, since PostgreSQL refuses to run as root. Empty means
	// DefaultOSUser. Ignored when the caller is not root.
	OSUser string
	// StartTimeout bounds initdb plus server start-up when the context given
	// to Start has no earlier deadline. Zero means DefaultStartTimeout.
	StartTimeout time.Duration
}

// Cluster is a running throwaway PostgreSQL server. It owns a temporary
// directory (data, Unix socket, log) and the server process.
//
// Whoever called Start owns the Cluster and must call Stop, which shuts the
// server down and removes the directory; Stop is idempotent. If the owning
// process dies without calling Stop, on Linux the kernel makes the server shut
// down (parent-death signal), and a later Start in the same BaseDir removes
// the directory.
//
// All methods are safe for concurrent use; the exported fields are set by
// Start and must not be changed.
type Cluster struct {
	// Host is the address the server listens on: always "127.0.0.1".
	Host string
	// Port is the server's TCP port.
	Port int
	// Dir is the cluster's temporary directory, removed by Stop.
	Dir string
	// DataDir is the data directory (PGDATA), inside Dir.
	DataDir string
	// SocketDir holds the server's Unix socket: host=SocketDir connects as
	// any role without a password (trust), for root or the server's OS user.
	SocketDir string
	// BinDir holds the server binaries the cluster runs; psql, pg_dump and the
	// like are usually there too.
	BinDir string
	// Superuser is the superuser role's name.
	Superuser string
	// SuperuserPassword is the superuser role's password for TCP connections.
	SuperuserPassword string

	as      *runAs
	env     []string
	out     io.Writer // Options.Log or logFile, plus tail
	logFile *os.File  // nil when Options.Log was set
	tail    *tailBuffer

	srv *server // set once by Start

	stopOnce sync.Once
	stopErr  error
}

// Start creates and starts a new cluster. ctx bounds the start-up only: once
// Start returns, the server lives until Stop. On error nothing is left behind.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = DefaultStartTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	conf, err := configLines(opts.Settings)
	if err != nil {
		return nil, err
	}
	password := opts.SuperuserPassword
	if password == "" {
		password = randomPassword()
	}
	if strings.ContainsAny(password, "\r\n\x00") {
		return nil, errors.New("pgcluster: Options.SuperuserPassword must not contain line breaks or NUL bytes")
	}
	binDir := opts.BinDir
	if binDir == "" {
		if binDir, err = BinDir(); err != nil {
			return nil, err
		}
	} else if err := checkBinDir(binDir); err != nil {
		return nil, fmt.Errorf("pgcluster: Options.BinDir %q: %w: %w", binDir, err, ErrNoBinaries)
	}
	as, err := serverIdentity(opts.OSUser)
	if err != nil {
		return nil, err
	}
	baseDir := opts.BaseDir
	if baseDir == "" {
		baseDir = os.TempDir()
	}
	sweepStale(baseDir)

	c := &Cluster{
		Host:              Host,
		BinDir:            binDir,
		Superuser:         Superuser,
		SuperuserPassword: password,
		as:                as,
		env:               serverEnv(),
		tail:              &tailBuffer{},
	}
	if err := c.makeDir(baseDir); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			c.closeLogFile()
			os.RemoveAll(c.Dir)
		}
	}()
	if opts.Log != nil {
		c.out = io.MultiWriter(opts.Log, c.tail)
	} else {
		f, err := os.OpenFile(filepath.Join(c.Dir, "postgres.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, fmt.Errorf("pgcluster: %w", err)
		}
		c.logFile = f
		c.out = io.MultiWriter(f, c.tail)
	}

	if err := c.initdb(ctx); err != nil {
		return nil, err
	}
	if err := c.writeConfig(conf); err != nil {
		return nil, err
	}
	if err := c.startServer(ctx); err != nil {
		return nil, err
	}
	ok = true
	return c, nil
}

// makeDir creates the cluster's temporary directory, owned by the server's
// OS user and closed to everyone else.
func (c *Cluster) makeDir(baseDir string) error {
	dir, err := os.MkdirTemp(baseDir, dirPrefix)
	if err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	c.Dir = dir
	c.DataDir = filepath.Join(dir, "data")
	c.SocketDir = dir
	fail := func(err error) error {
		os.RemoveAll(dir)
		return err
	}
	if err := writeOwner(dir); err != nil {
		return fail(fmt.Errorf("pgcluster: %w", err))
	}
	if len(c.SocketDir)+len("/.s.PGSQL.65535") > maxSocketPath {
		return fail(fmt.Errorf("pgcluster: the Unix socket path under %s would be too long; set Options.BaseDir (or TMPDIR) to a shorter directory", dir))
	}
	if err := c.as.checkReachable(dir); err != nil {
		return fail(err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fail(fmt.Errorf("pgcluster: %w", err))
	}
	if err := c.as.chown(dir); err != nil {
		return fail(fmt.Errorf("pgcluster: %w", err))
	}
	return nil
}

func (c *Cluster) initdb(ctx context.Context) error {
	pwfile := filepath.Join(c.Dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(c.SuperuserPassword+"\n"), 0o600); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	defer os.Remove(pwfile)
	if err := c.as.chown(pwfile); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	cmd := c.command(ctx, "initdb",
		"-D", c.DataDir,
		"-U", c.Superuser,
		"-E", "UTF8",
		"--locale=C",
		"--auth-local=trust",
		"--auth-host=scram-sha-256",
		"--pwfile="+pwfile,
		"--no-sync",
	)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("pgcluster: initdb failed: %w\n%s", err, c.tail.lastLines(20))
	}
	return nil
}

// writeConfig appends the harness settings, then Options.Settings, to
// postgresql.conf; for a parameter set twice the last line wins.
func (c *Cluster) writeConfig(extra []string) error {
	lines := []string{
		"",
		"# Added by pgtenant's internal/pgcluster: a throwaway test cluster.",
		"listen_addresses = " + quoteConf(Host),
		"unix_socket_directories = " + quoteConf(c.SocketDir),
		"fsync = off",
		"synchronous_commit = off",
		"full_page_writes = off",
		"max_connections = " + strconv.Itoa(DefaultMaxConnections),
	}
	if len(extra) > 0 {
		lines = append(lines, "# Options.Settings")
		lines = append(lines, extra...)
	}
	f, err := os.OpenFile(filepath.Join(c.DataDir, "postgresql.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	_, err = io.WriteString(f, strings.Join(lines, "\n")+"\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pgcluster: writing postgresql.conf: %w", err)
	}
	return nil
}

// startServer starts the server on a free port, choosing another if a
// different process takes the port first.
func (c *Cluster) startServer(ctx context.Context) error {
	var err error
	for range portAttempts {
		var port int
		if port, err = freePort(); err != nil {
			return err
		}
		var srv *server
		srv, err = c.launch(ctx, port)
		if err == nil {
			c.Port, c.srv = port, srv
			return nil
		}
		if !errors.Is(err, errPortTaken) {
			return err
		}
	}
	return err
}

// Stop shuts the server down (fast shutdown, then immediate shutdown, then
// SIGKILL to its process group, each after a bounded wait) and removes Dir.
// It reports a server that had exited before Stop or needed more than a fast
// shutdown. Stop is idempotent: later calls return the first call's result.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		var errs []error
		if c.srv != nil {
			errs = append(errs, c.srv.stop())
		}
		errs = append(errs, c.closeLogFile())
		if err := os.RemoveAll(c.Dir); err != nil {
			errs = append(errs, fmt.Errorf("pgcluster: removing %s: %w", c.Dir, err))
		}
		c.stopErr = errors.Join(errs...)
	})
	return c.stopErr
}

// LogTail returns the most recent output of initdb and the server (up to
// 16 KiB), for test failure reports.
func (c *Cluster) LogTail() string {
	return c.tail.String()
}

func (c *Cluster) closeLogFile() error {
	if c.logFile == nil {
		return nil
	}
	err := c.logFile.Close()
	if errors.Is(err, os.ErrClosed) {
		err = nil
	}
	return err
}

// configLines validates Options.Settings and renders them as postgresql.conf
// lines in a stable order.
func configLines(settings map[string]string) ([]string, error) {
	names := make([]string, 0, len(settings))
	for name := range settings {
		if !settingName.MatchString(name) {
			return nil, fmt.Errorf("pgcluster: Options.Settings: %q is not a parameter name", name)
		}
		if slices.Contains(reservedSettings, strings.ToLower(name)) {
			return nil, fmt.Errorf("pgcluster: Options.Settings: %s is set by the harness and cannot be changed", name)
		}
		if strings.ContainsAny(settings[name], "\r\n\x00") {
			return nil, fmt.Errorf("pgcluster: Options.Settings: the value of %s must not contain line breaks or NUL bytes", name)
		}
		names = append(names, name)
	}
	slices.Sort(names)
	lines := make([]string, 0, len(names))
	for _, name := range names {
		lines = append(lines, name+" = "+quoteConf(settings[name]))
	}
	return lines, nil
}

// quoteConf quotes a postgresql.conf value; PostgreSQL accepts a quoted value
// for every parameter type.
func quoteConf(v string) string {
	v = strings.ReplaceAll(v, `\`, `\\`)
	return "'" + strings.ReplaceAll(v, "'", "''") + "'"
}

func randomPassword() string {
	b := make([]byte, 16)
	rand.Read(b) // never fails on Linux (crypto/rand panics otherwise)
	return hex.EncodeToString(b)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(Host, "0"))
	if err != nil {
		return 0, fmt.Errorf("pgcluster: finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// serverEnv is the caller's environment without libpq's PG* variables, which
// would otherwise steer initdb and the server (PGDATA, PGPORT ...).
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return env
}
