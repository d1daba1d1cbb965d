package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Bounds on starting and stopping the servers the bench runs.
const (
	// readyTimeout bounds how long a server may take to accept its first
	// login.
	readyTimeout = 30 * time.Second
	// stopGrace is how long a server may take to exit after SIGTERM before
	// its process group is killed.
	stopGrace = 10 * time.Second
	// logTailSize is how much of a server's output failure reports show.
	logTailSize = 4 << 10
)

// child is a server the bench started (pgtenant or PgBouncer), running in a
// process group of its own with its output in a file. The bench owns it and
// must call stop, which is idempotent. Should the bench die without stopping
// it, the kernel kills it (parent-death signal), so no run leaves one behind.
type child struct {
	name string
	pid  int
	log  string        // file holding the server's stdout and stderr
	done chan struct{} // closed once the process has exited

	stopOnce sync.Once
	stopErr  error
}

// startChild starts cmd with its stdout and stderr appended to logPath. It
// keeps any credentials already in cmd.SysProcAttr.
func startChild(name string, cmd *exec.Cmd, logPath string) (*child, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	detach(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	c := &child{name: name, pid: cmd.Process.Pid, log: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// detach puts the process cmd starts in a process group of its own, so that a
// terminal's Ctrl-C reaches only the bench, which then stops it in order, and
// has the kernel kill it if the bench dies first. Go ends the thread that
// started a process only when a goroutine locked to it exits, which the bench
// never does, so the parent-death signal fires only when the bench exits.
func detach(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}

// exited reports whether the server has exited.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to stopGrace, then kills the process group.
// It reports a server that had already exited or had to be killed.
func (c *child) stop() error {
	c.stopOnce.Do(func() {
		if c.exited() {
			c.stopErr = fmt.Errorf("%s had exited before it was stopped; its output ends with:\n%s", c.name, c.logTail())
			return
		}
		_ = syscall.Kill(-c.pid, syscall.SIGTERM)
		select {
		case <-c.done:
			return
		case <-time.After(stopGrace):
		}
		_ = syscall.Kill(-c.pid, syscall.SIGKILL)
		<-c.done
		c.stopErr = fmt.Errorf("%s did not exit within %s of SIGTERM and was killed", c.name, stopGrace)
	})
	return c.stopErr
}

// logTail returns the end of the server's output.
func (c *child) logTail() string {
	b, err := os.ReadFile(c.log)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", c.log, err)
	}
	if len(b) > logTailSize {
		b = b[len(b)-logTailSize:]
	}
	return string(b)
}

// logSize returns how much output the server has written so far, for
// logSince.
func (c *child) logSize() int64 {
	fi, err := os.Stat(c.log)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logSince returns the server's output from offset on, its beginning if it is
// long: the first errors of a failure say the most.
func (c *child) logSince(offset int64) string {
	f, err := os.Open(c.log)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", c.log, err)
	}
	defer f.Close()
	b := make([]byte, logTailSize)
	n, _ := f.ReadAt(b, offset)
	rest := c.logSize() - offset - int64(n)
	if rest > 0 {
		return fmt.Sprintf("%s\n... (%d more bytes in %s)", b[:n], rest, c.log)
	}
	return string(b[:n])
}

// waitReady returns once a login with dsn succeeds and runs a query, or
// fails when the server exits, readyTimeout passes or ctx ends.
func (c *child) waitReady(ctx context.Context, dsn string) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return err
	}
	cfg.ConnectTimeout = 2 * time.Second
	// Simple protocol: PgBouncer in transaction mode may move pgx's
	// separately synced Parse and Execute to different servers.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	var last error
	for {
		if last = ping(ctx, cfg); last == nil {
			return nil
		}
		select {
		case <-c.done:
			return fmt.Errorf("%s exited during start-up; its output ends with:\n%s", c.name, c.logTail())
		case <-ctx.Done():
			return fmt.Errorf("%s did not accept a login within %s (last error: %v); its output ends with:\n%s",
				c.name, readyTimeout, last, c.logTail())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ping logs in with cfg and runs one query.
func ping(ctx context.Context, cfg *pgx.ConnConfig) error {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var one int
	return conn.QueryRow(ctx, "SELECT 1").Scan(&one)
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	addr, ok := ln.Addr().(*net.TCPAddr)
	if !ok {
		return 0, errors.New("free port: not a TCP address")
	}
	return addr.Port, nil
}

// hostPort joins 127.0.0.1-style host and a port.
func hostPort(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}
