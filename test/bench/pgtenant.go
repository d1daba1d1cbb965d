package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/pgtenant/pgtenant/poolmgr"
)

// proxyServer is a running pgtenant or PgBouncer and how to reach the bench
// database through it.
type proxyServer struct {
	proc   *child
	target target
	// env is pgtenant's environment (nil for PgBouncer): `pgtenant token`
	// run with it mints login tokens this pgtenant accepts.
	env []string
	// contextSecret is pgtenant's context key (id "default"), which the
	// RLS workload installs in the database.
	contextSecret []byte
}

// buildPgtenant builds ./cmd/pgtenant of the module in root to out.
func buildPgtenant(ctx context.Context, root, out string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", out, "./cmd/pgtenant")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/pgtenant: %w\n%s", err, b)
	}
	return out, nil
}

// startPgtenant runs `pgtenant serve` in front of backendDSN with a pool of
// pool connections, mints a token for the bench tenant and waits until a
// client can log in with it.
func startPgtenant(ctx context.Context, bin, work, backendDSN string, pool int, setWith string) (*proxyServer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	contextSecret := randomHex(32)
	adminPort, err := freePort()
	if err != nil {
		return nil, err
	}
	env := append(cleanEnv(),
		"PGTENANT_LISTEN="+hostPort("127.0.0.1", port),
		"PGTENANT_ADMIN_LISTEN="+hostPort("127.0.0.1", adminPort),
		"PGTENANT_BACKEND_DSN="+backendDSN,
		"PGTENANT_AUTH_JWT_SECRET="+randomHex(32),
		fmt.Sprint("PGTENANT_POOL_SIZE=", pool),
		// The bench has one tenant: the global cap must not be what limits it.
		fmt.Sprint("PGTENANT_POOL_MAX_BACKEND_CONNECTIONS=", max(pool, poolmgr.DefaultMaxBackendConns)),
		"PGTENANT_LOG_LEVEL=warn",
		"PGTENANT_TENANCY_SET_WITH="+setWith,
		// As deployed: every transaction also carries the signed context.
		"PGTENANT_TENANCY_CONTEXT_SECRET="+contextSecret,
	)
	token, err := mintToken(ctx, bin, env, benchOrg)
	if err != nil {
		return nil, err
	}

	cmd := exec.Command(bin, "serve")
	cmd.Env = env
	proc, err := startChild("pgtenant", cmd, filepath.Join(work, "pgtenant.log"))
	if err != nil {
		return nil, err
	}
	t := target{name: "pgtenant", host: "127.0.0.1", port: port, user: "bench", password: token, via: proc}
	if err := proc.waitReady(ctx, t.dsn()); err != nil {
		_ = proc.stop() // its output is in err already
		return nil, err
	}
	return &proxyServer{proc: proc, target: t, env: env, contextSecret: []byte(contextSecret)}, nil
}

// mintToken runs `pgtenant token --org org` with pgtenant's environment env
// and returns the login token it prints.
func mintToken(ctx context.Context, bin string, env []string, org string) (string, error) {
	tok := exec.CommandContext(ctx, bin, "token", "--org", org)
	tok.Env = env
	var stderr strings.Builder
	tok.Stderr = &stderr
	out, err := tok.Output()
	if err != nil {
		return "", fmt.Errorf("pgtenant token: %w: %s", err, stderr.String())
	}
	token := strings.TrimSpace(string(out))
	if token == "" || strings.ContainsAny(token, " \n") {
		return "", fmt.Errorf("pgtenant token printed %q, not a token", out)
	}
	return token, nil
}
