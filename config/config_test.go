package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const minimalYAML = `
backend:
  dsn: postgres://app@localhost:5432/app
auth:
  jwt:
    secret: 0123456789abcdef0123456789abcdef-file
`

func TestDefaultsFillEveryKey(t *testing.T) {
	c := Default()
	if c.Listen != DefaultListen || c.Admin.Listen != DefaultAdminListen || c.Tenancy.Setting != DefaultSetting ||
		c.Auth.JWT.OrgClaim != "org_id" || c.Tenancy.SetWith != "auto" || c.Pool.Size == 0 || c.Client.LoginTimeout == 0 {
		t.Fatalf("defaults not applied: %+v", c)
	}
}

func TestFlagsBeatEnvironmentBeatFileBeatDefaults(t *testing.T) {
	file := writeFile(t, "pgtenant.yaml", minimalYAML+`
listen: 127.0.0.1:7000
admin:
  listen: 127.0.0.1:7001
pool:
  size: 7
  tenants:
    acme:
      size: 3
      mode: session
  database_modes:
    reports: session
databases:
  app: app_prod
`)
	t.Setenv("PGTENANT_ADMIN_LISTEN", "127.0.0.1:8001")
	t.Setenv("PGTENANT_LISTEN", "127.0.0.1:8000")
	t.Setenv("PGTENANT_POOL_WAIT_TIMEOUT", "5s")
	flags := pflag.NewFlagSet("test", pflag.ContinueOnError)
	flags.String("listen", "", "")
	if err := flags.Parse([]string{"--listen", "127.0.0.1:9000"}); err != nil {
		t.Fatal(err)
	}
	c, err := Load(file, flags, map[string]string{"listen": "listen"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9000" {
		t.Errorf("listen = %s, want the flag's value", c.Listen)
	}
	if c.Admin.Listen != "127.0.0.1:8001" {
		t.Errorf("admin.listen = %s, want the environment's value", c.Admin.Listen)
	}
	if c.Pool.Size != 7 || c.Pool.WaitTimeout != 5*time.Second {
		t.Errorf("pool = %+v, want size from the file and wait_timeout from the environment", c.Pool.Settings)
	}
	if c.Pool.DatabaseModes["reports"] != "session" || c.Pool.Tenants["acme"].Mode == nil || *c.Pool.Tenants["acme"].Mode != "session" {
		t.Errorf("pooling modes not read: %v %+v", c.Pool.DatabaseModes, c.Pool.Tenants["acme"])
	}
	if o := c.Pool.Tenants["acme"]; o.Size == nil || *o.Size != 3 {
		t.Errorf("per-tenant override not read: %+v", c.Pool.Tenants)
	}
	if c.Databases["app"] != "app_prod" {
		t.Errorf("databases = %v", c.Databases)
	}
	if c.Client.MaxConnections == 0 {
		t.Error("unset keys must keep their defaults")
	}
}

func TestInvalidConfigsAreRefusedNamingTheKey(t *testing.T) {
	cases := []struct{ name, yaml, key string }{
		{"unknown key", minimalYAML + "lisen: 127.0.0.1:1\n", `"lisen"`},
		{"no backend", "auth:\n  jwt:\n    secret: 0123456789abcdef0123456789abcdef-file\n", "backend.dsn"},
		{"no key source", "backend:\n  dsn: postgres://app@localhost/app\n", "auth.jwt"},
		{"bad setting name", minimalYAML + "tenancy:\n  setting: \"app.org; DROP\"\n", "tenancy.setting"},
		{"pattern that admits quotes", minimalYAML + "tenancy:\n  org_pattern: \".*\"\n", "tenancy.org_pattern"},
		{"bad set_with", minimalYAML + "tenancy:\n  set_with: session\n", "tenancy.set_with"},
		{"TLS required without a certificate", minimalYAML + "listen: 0.0.0.0:6432\n", "tls.require"},
		{"certificate without key", minimalYAML + "tls:\n  cert_file: /x.pem\n", "tls.cert_file"},
		{"pool size", minimalYAML + "pool:\n  size: -1\n", "pool.size"},
		{"pool mode", minimalYAML + "pool:\n  mode: statement\n", "pool.mode"},
		{"log level", minimalYAML + "log:\n  level: loud\n", "log.level"},
		{"org type", minimalYAML + "policies:\n  org_type: int\n", "policies.org_type"},
		{"table pattern without schema", minimalYAML + "policies:\n  tables:\n    include: [orders]\n", "policies.tables"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(writeFile(t, "c.yaml", tc.yaml), nil, nil)
			if err == nil || !strings.Contains(err.Error(), tc.key) {
				t.Fatalf("got %v, want an error naming %s", err, tc.key)
			}
		})
	}
}

func TestTLSRequireAcceptsYAMLBooleansAndAutoFollowsTheListener(t *testing.T) {
	c, err := Load(writeFile(t, "c.yaml", minimalYAML+"listen: 0.0.0.0:6432\ntls:\n  require: false\n"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.RequireTLS() {
		t.Fatal("tls.require: false was not honoured")
	}
	for listen, want := range map[string]bool{"127.0.0.1:6432": false, "localhost:6432": false, "[::1]:6432": false, "0.0.0.0:6432": true, "10.1.2.3:6432": true} {
		c := Default()
		c.Listen = listen
		if got := c.RequireTLS(); got != want {
			t.Errorf("auto with listen %s: RequireTLS = %v, want %v", listen, got, want)
		}
	}
}

func TestBackendPasswordFileKeepsThePasswordOutOfTheDSN(t *testing.T) {
	c := Default()
	c.Backend.DSN = "postgres://app@localhost:5432/app"
	c.Backend.PasswordFile = writeFile(t, "pw", "s3cret\n")
	pc, err := c.BackendConfig()
	if err != nil {
		t.Fatal(err)
	}
	if pc.Password != "s3cret" {
		t.Fatalf("password %q", pc.Password)
	}
}

func TestDSNErrorsDoNotLeakThePassword(t *testing.T) {
	c := Default()
	c.Backend.DSN = "postgres://app:hunter2@localhost:notaport/app"
	c.Auth.JWT.Secret = "0123456789abcdef0123456789abcdef-x"
	err := c.Validate()
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("got %v", err)
	}
}

func TestPoliciesSectionIsReadWithDefaults(t *testing.T) {
	c, err := Load(writeFile(t, "c.yaml", minimalYAML), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p := c.Policies; p.OrgColumn != "org_id" || p.OrgType != "text" || p.Citus || len(p.Tables.Include) > 0 {
		t.Errorf("policies defaults = %+v", p)
	}
	c, err = Load(writeFile(t, "c.yaml", minimalYAML+`
policies:
  tables:
    include: ["public.*", "billing.invoice_*"]
    exclude: [public.countries]
  org_column: tenant_id
  org_type: uuid
  citus: true
`), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	o := c.Policies.ApplyOptions([]string{"app"})
	if len(o.Selection.Include) != 2 || o.Selection.Exclude[0] != "public.countries" || o.Selection.OrgColumn != "tenant_id" ||
		o.OrgType != "uuid" || !o.Citus || o.AppRoles[0] != "app" {
		t.Errorf("apply options = %+v", o)
	}
	t.Setenv("PGTENANT_POLICIES_TABLES_INCLUDE", "public.*,billing.*")
	t.Setenv("PGTENANT_POLICIES_CITUS", "true")
	c, err = Load(writeFile(t, "c.yaml", minimalYAML), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if inc := c.Policies.Tables.Include; len(inc) != 2 || inc[1] != "billing.*" || !c.Policies.Citus {
		t.Errorf("policies from the environment = %+v", c.Policies)
	}
}

func TestKeysListsEveryLeafKey(t *testing.T) {
	keys := strings.Join(Keys(), " ")
	for _, k := range []string{"listen", "admin.listen", "backend.dsn", "auth.jwt.secret", "auth.jwt.secret_file",
		"auth.jwt.public_key_file", "auth.jwt.jwks_file", "auth.jwt.issuer", "auth.jwt.audience", "auth.jwt.org_claim",
		"tenancy.setting", "pool.size", "pool.max_backend_connections", "pool.tenants", "databases"} {
		if !strings.Contains(" "+keys+" ", " "+k+" ") {
			t.Errorf("Keys() lacks %s", k)
		}
	}
}

// The example configuration in deploy/examples uses only keys that exist,
// with valid values.
func TestTheExampleConfigurationLoads(t *testing.T) {
	c, err := Read("../deploy/examples/pgtenant.yaml", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if !c.RegistryEnabled() || c.Metrics.TenantLabels != "top:20" {
		t.Fatalf("example: registry %v, tenant labels %q", c.RegistryEnabled(), c.Metrics.TenantLabels)
	}
}

// Every key has a row in docs/configuration.md.
func TestEveryKeyIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Keys() {
		if !strings.Contains(string(doc), "`"+k+"`") {
			// admin.jwt.* and the like are documented as a group.
			if i := strings.LastIndexByte(k, '.'); i < 0 || !strings.Contains(string(doc), "`"+k[:i]+".*`") {
				t.Errorf("%s is not in docs/configuration.md", k)
			}
		}
	}
}
