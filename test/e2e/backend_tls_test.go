package e2e

import (
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtenant/pgtenant/internal/testcert"
	"github.com/pgtenant/pgtenant/test/testpg"
)

// backendTLS holds the files of the test cluster's server certificate.
var backendTLS struct {
	dir, ca string
}

// serverTLSSettings makes a CA and a server certificate for 127.0.0.1 and
// returns the postgresql.conf settings that turn TLS on with them. The files
// are readable by the OS user the server runs as.
func serverTLSSettings() (map[string]string, error) {
	dir, err := os.MkdirTemp("", "pgtenant-e2e-tls-")
	if err != nil {
		return nil, err
	}
	ca, err := testcert.NewCA("e2e test CA")
	if err != nil {
		return nil, err
	}
	server, err := testcert.New(ca, "127.0.0.1", net.ParseIP("127.0.0.1"))
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{
		"ca.pem":     ca.CertPEM,
		"server.pem": server.CertPEM,
		"server.key": server.KeyPEM,
	}
	uid, gid := -1, -1
	if os.Geteuid() == 0 { // the server runs as the postgres OS user
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, err
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, content, 0o600); err != nil {
			return nil, err
		}
		if uid >= 0 {
			if err := os.Chown(p, uid, gid); err != nil {
				return nil, err
			}
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	backendTLS.dir, backendTLS.ca = dir, filepath.Join(dir, "ca.pem")
	return map[string]string{
		"ssl":           "on",
		"ssl_cert_file": filepath.Join(dir, "server.pem"),
		"ssl_key_file":  filepath.Join(dir, "server.key"),
	}, nil
}

func TestTheBackendConnectionCanUseTLSWithFullVerificationAndSCRAM(t *testing.T) {
	c := testpgCluster(t)
	for _, tc := range []struct {
		query   string
		wantErr bool
	}{
		{"sslmode=require", false},
		{fmt.Sprintf("sslmode=verify-full&sslrootcert=%s", backendTLS.ca), false},
		{fmt.Sprintf("sslmode=verify-full&sslrootcert=%s", filepath.Join(t.TempDir(), "missing.pem")), true},
	} {
		t.Run(tc.query, func(t *testing.T) {
			dsn := fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?%s", appRole, appPassword, c.Port, database, tc.query)
			backend, err := pgconn.ParseConfig(dsn)
			if tc.wantErr && err != nil {
				return // refused while parsing: the CA file is missing
			}
			if err != nil {
				t.Fatal(err)
			}
			e := startProxy(t, func(cfg *proxyConfig, _ *jwtConfig) { cfg.Backend = backend })
			conn, err := pgconn.Connect(testpg.Context(t), e.dsn(token(t, "acme")))
			if tc.wantErr {
				if err == nil {
					conn.Close(testpg.Context(t))
					t.Fatal("connected through a backend whose certificate could not be verified")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(testpg.Context(t))
			res := conn.ExecParams(testpg.Context(t), "SELECT ssl, current_setting('app.current_org') FROM pg_stat_ssl WHERE pid = pg_backend_pid()", nil, nil, nil, nil).Read()
			if res.Err != nil || len(res.Rows) != 1 || string(res.Rows[0][0]) != "t" || string(res.Rows[0][1]) != "acme" {
				t.Fatalf("backend connection: %v %q", res.Err, res.Rows)
			}
		})
	}
}
