package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// How long Stop waits after each step before taking the next, harsher one.
const (
	fastShutdownWait      = 30 * time.Second
	immediateShutdownWait = 10 * time.Second
	killWait              = 10 * time.Second
)

// readyPollInterval is how often start-up checks postmaster.pid for "ready".
const readyPollInterval = 20 * time.Millisecond

// errPortTaken means the server could not bind its port; Start retries on
// another.
var errPortTaken = errors.New("port taken")

// server is one postmaster process. It owns the process and two goroutines:
// one reaps the process (closing exited), one copies the server's output to
// the cluster's log (closing logDone at EOF). stop ends all three.
type server struct {
	cmd     *exec.Cmd
	exited  chan struct{} // closed once the postmaster has been reaped
	waitErr error         // written before exited is closed
	logR    *os.File
	logDone chan struct{} // closed when the log copier returns
}

// command builds an exec.Cmd for a server binary, run as the server's OS user
// from the cluster's directory with output to the cluster's log.
func (c *Cluster) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(c.BinDir, name), args...)
	cmd.Dir = c.Dir
	cmd.Env = c.env
	cmd.Stdout = c.out
	cmd.Stderr = c.out
	cmd.SysProcAttr = c.as.sysProcAttr()
	cmd.WaitDelay = killWait
	return cmd
}

// launch starts the postmaster on port and waits until it accepts
// connections. On error the process has been stopped.
func (c *Cluster) launch(ctx context.Context, port int) (*server, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("pgcluster: %w", err)
	}
	// Not CommandContext: ctx bounds start-up, not the server's life.
	cmd := c.command(context.Background(), "postgres", "-D", c.DataDir, "-p", strconv.Itoa(port))
	// An *os.File, so the server and its backends write to the pipe directly
	// and exec starts no copying goroutine of its own.
	cmd.Stdout, cmd.Stderr = w, w
	setParentDeathSignal(cmd.SysProcAttr)
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("pgcluster: starting postgres: %w", err)
	}
	s := &server{cmd: cmd, exited: make(chan struct{}), logR: r, logDone: make(chan struct{})}
	go s.reap()
	go s.copyLog(c.out)

	if err := s.waitReady(ctx, c.DataDir); err != nil {
		s.stop()
		tail := c.tail.lastLines(20)
		if strings.Contains(tail, "Address already in use") {
			return nil, fmt.Errorf("pgcluster: port %d: %w", port, errPortTaken)
		}
		return nil, fmt.Errorf("pgcluster: starting postgres: %w\n%s", err, tail)
	}
	return s, nil
}

func (s *server) reap() {
	s.waitErr = s.cmd.Wait()
	close(s.exited)
}

func (s *server) copyLog(w io.Writer) {
	defer close(s.logDone)
	io.Copy(w, s.logR)
}

// waitReady polls postmaster.pid until the postmaster reports "ready" (as
// pg_ctl -w does), the process exits, or ctx ends.
func (s *server) waitReady(ctx context.Context, dataDir string) error {
	pidFile := filepath.Join(dataDir, "postmaster.pid")
	tick := time.NewTicker(readyPollInterval)
	defer tick.Stop()
	for {
		if b, err := os.ReadFile(pidFile); err == nil {
			// Line 1 is the postmaster's PID, line 8 its status.
			lines := strings.Split(string(b), "\n")
			if len(lines) >= 8 && strings.TrimSpace(lines[0]) == strconv.Itoa(s.cmd.Process.Pid) &&
				strings.TrimSpace(lines[7]) == "ready" {
				return nil
			}
		}
		select {
		case <-s.exited:
			return fmt.Errorf("postgres exited during start-up: %v", s.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("postgres not ready: %w", context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// stop ends the postmaster, escalating from fast shutdown to SIGKILL of its
// process group, then waits for the log copier. It reports a server that had
// already exited or that needed more than a fast shutdown.
func (s *server) stop() error {
	var errs []error
	select {
	case <-s.exited:
		errs = append(errs, fmt.Errorf("pgcluster: postgres had exited before Stop: %v", s.waitErr))
	default:
		errs = append(errs, s.shutdown())
	}
	select {
	case <-s.logDone:
	case <-time.After(killWait):
		// A straggler still holds the pipe; closing our end ends the copy.
		s.logR.Close()
		<-s.logDone
	}
	s.logR.Close()
	return errors.Join(errs...)
}

func (s *server) shutdown() error {
	pid := s.cmd.Process.Pid
	steps := []struct {
		name string
		pid  int // negative: the process group
		sig  syscall.Signal
		wait time.Duration
	}{
		{"fast shutdown", pid, syscall.SIGINT, fastShutdownWait},
		{"immediate shutdown", pid, syscall.SIGQUIT, immediateShutdownWait},
		{"SIGKILL", -pid, syscall.SIGKILL, killWait},
	}
	for i, step := range steps {
		syscall.Kill(step.pid, step.sig)
		select {
		case <-s.exited:
			if i == 0 {
				return nil
			}
			return fmt.Errorf("pgcluster: postgres ignored %s for %v; stopped it with %s",
				steps[0].name, steps[0].wait, step.name)
		case <-time.After(step.wait):
		}
	}
	return fmt.Errorf("pgcluster: postgres (pid %d) did not exit after SIGKILL", pid)
}
