package pgcluster

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// DefaultOSUser is the OS account that runs initdb and postgres when the
// caller is root (both refuse to run as root). Debian's postgresql package
// creates it.
const DefaultOSUser = "postgres"

// runAs is the identity the server processes run with. A nil *runAs means
// "as the caller".
type runAs struct {
	name     string
	uid, gid int
}

// serverIdentity returns whom to run the server as: nil when the caller is not
// root, else the named OS user, which must exist.
func serverIdentity(name string) (*runAs, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	if name == "" {
		name = DefaultOSUser
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: running as root, and PostgreSQL refuses to run as root, "+
			"so the server must run as the OS user %q, which does not exist (%v); "+
			"`apt-get install postgresql` creates it, or run the tests as a non-root user", name, err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: OS user %q has non-numeric uid %q", name, u.Uid)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: OS user %q has non-numeric gid %q", name, u.Gid)
	}
	if uid == 0 {
		return nil, fmt.Errorf("pgcluster: OS user %q is root; PostgreSQL refuses to run as root", name)
	}
	return &runAs{name: name, uid: uid, gid: gid}, nil
}

// sysProcAttr returns the process attributes for a server program: its own
// process group (so a terminal's Ctrl-C reaches only the owner, which then
// calls Stop) and, when r is set, r's credentials.
func (r *runAs) sysProcAttr() *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{Setpgid: true}
	if r != nil {
		attr.Credential = &syscall.Credential{Uid: uint32(r.uid), Gid: uint32(r.gid)}
	}
	return attr
}

// chown hands path to r; a nil r leaves it with the caller.
func (r *runAs) chown(path string) error {
	if r == nil {
		return nil
	}
	return os.Chown(path, r.uid, r.gid)
}

// checkReachable returns an error unless r can traverse every parent of dir.
// Root can create a temp dir under a path (say /root/tmp) that the server's
// user cannot enter; initdb would then fail with a confusing message.
func (r *runAs) checkReachable(dir string) error {
	if r == nil {
		return nil
	}
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("pgcluster: %w", err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		perm := fi.Mode().Perm()
		switch {
		case perm&0o001 != 0:
		case ok && int(st.Uid) == r.uid && perm&0o100 != 0:
		case ok && int(st.Gid) == r.gid && perm&0o010 != 0:
		default:
			return fmt.Errorf("pgcluster: the OS user %q cannot enter %s, so it cannot reach the cluster in %s; "+
				"set Options.BaseDir (or TMPDIR) to a directory it can reach, such as /tmp", r.name, p, dir)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}
