// Package config is pgtenant's typed configuration: the keys, their defaults,
// and validation. Load reads a file, PGTENANT_* environment variables and
// flags through viper; everything else in pgtenant receives the plain Config
// struct.
package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtenant/pgtenant/audit"
	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/policies"
	"github.com/pgtenant/pgtenant/poolmgr"
	"github.com/pgtenant/pgtenant/proxy"
)

// Defaults for top-level keys.
const (
	DefaultListen       = "127.0.0.1:6432"
	DefaultAdminListen  = "127.0.0.1:9432"
	DefaultSetting      = "app.current_org"
	DefaultSetWith      = "auto"
	DefaultTLSRequire   = "auto"
	DefaultLogLevel     = "info"
	DefaultLogFormat    = "json"
	DefaultConnectLimit = 5 * time.Second
	// DefaultRegistryReload is tenants.reload_interval's default.
	DefaultRegistryReload = 30 * time.Second
	// DefaultRolesClaim names the admin token's roles claim.
	DefaultRolesClaim = "roles"
	// DefaultTenantLabels is metrics.tenant_labels' default.
	DefaultTenantLabels = "top:20"
)

// Config is the whole pgtenant configuration. Every field is a public key;
// docs/configuration.md lists them with defaults and environment variables.
type Config struct {
	// Listen is the PostgreSQL listener address for clients.
	Listen string `mapstructure:"listen"`
	// Admin configures the HTTP listener for /metrics and health checks.
	Admin Admin `mapstructure:"admin"`
	// Backend says how pgtenant reaches PostgreSQL.
	Backend Backend `mapstructure:"backend"`
	// Databases maps client database names to backend database names.
	Databases map[string]string `mapstructure:"databases"`
	// Auth configures client authentication.
	Auth Auth `mapstructure:"auth"`
	// Tenancy configures the tenant context.
	Tenancy Tenancy `mapstructure:"tenancy"`
	// TLS configures encryption of client connections.
	TLS TLS `mapstructure:"tls"`
	// Client bounds client connections.
	Client Client `mapstructure:"client"`
	// Pool configures the per-tenant backend pools.
	Pool poolmgr.Config `mapstructure:"pool"`
	// Log configures logging.
	Log Log `mapstructure:"log"`
	// Guard configures the statement guard.
	Guard Guard `mapstructure:"guard"`
	// Audit configures the audit log of cross-tenant attempts.
	Audit audit.Config `mapstructure:"audit"`
	// Policies configures pgtenant policies list, apply and remove.
	Policies Policies `mapstructure:"policies"`
	// Tenants is the tenant registry.
	Tenants Tenants `mapstructure:"tenants"`
	// Metrics shapes what /metrics exports.
	Metrics Metrics `mapstructure:"metrics"`
	// Plans samples slow tenant statements and explains them.
	Plans Plans `mapstructure:"plans"`
}

// Policies is the policies.* section: which tables are tenant tables and
// how pgtenant policies apply writes their policies.
type Policies struct {
	// Tables selects the tenant tables; with no include patterns, every
	// table with the org column is one.
	Tables PolicyTables `mapstructure:"tables"`
	// OrgColumn is the column that holds a row's tenant.
	OrgColumn string `mapstructure:"org_column"`
	// OrgType is the org column's type: text or uuid.
	OrgType string `mapstructure:"org_type"`
	// Citus writes policies without subqueries, which Citus rejects on
	// distributed tables.
	Citus bool `mapstructure:"citus"`
}

// PolicyTables is the policies.tables.* section.
type PolicyTables struct {
	// Include are schema.table globs of tenant tables (path.Match syntax).
	Include []string `mapstructure:"include"`
	// Exclude are globs of tables that are never tenant tables; they win
	// over Include and over discovery.
	Exclude []string `mapstructure:"exclude"`
}

// Selection is the table selection of policies.tables and org_column.
func (p Policies) Selection() policies.TableSelection {
	return policies.TableSelection{Include: p.Tables.Include, Exclude: p.Tables.Exclude, OrgColumn: p.OrgColumn}
}

// ApplyOptions are the options of pgtenant policies apply for appRoles.
func (p Policies) ApplyOptions(appRoles []string) policies.ApplyOptions {
	return policies.ApplyOptions{Selection: p.Selection(), OrgType: p.OrgType, Citus: p.Citus, AppRoles: appRoles}
}

// Validate checks the policies section, naming the key.
func (p Policies) Validate() error {
	if p.OrgColumn == "" || len(p.OrgColumn) > 63 || strings.ContainsRune(p.OrgColumn, 0) {
		return fmt.Errorf("policies.org_column: %q must be a column name of 1 to 63 bytes", p.OrgColumn)
	}
	switch p.OrgType {
	case policies.OrgTypeText, policies.OrgTypeUUID:
	default:
		return fmt.Errorf("policies.org_type: %q must be text or uuid", p.OrgType)
	}
	return p.Selection().Validate()
}

// Admin is the admin.* section.
type Admin struct {
	// Listen is the HTTP address for /metrics, /healthz, /readyz and, with a
	// tenant registry, the admin API under /api/v1; "off" disables it.
	Listen string `mapstructure:"listen"`
	// JWT verifies the admin API's bearer tokens. Without a key of its own
	// it is auth.jwt: admin tokens come from the same issuer as client
	// tokens.
	JWT auth.JWTConfig `mapstructure:"jwt"`
	// RolesClaim names the admin token claim holding its roles
	// (platform_admin, admin); a dotted path reaches into objects.
	RolesClaim string `mapstructure:"roles_claim"`
	// Pprof serves Go's profiler under /debug/pprof/ on the admin listener.
	Pprof bool `mapstructure:"pprof"`
	// LoginURL, when set, is offered by the web UI's sign-in page: an
	// OIDC login that returns an admin token to /ui/ in the URL fragment
	// (#token=...).
	LoginURL string `mapstructure:"login_url"`
}

// Tenants is the tenants.* section: the tenant registry.
type Tenants struct {
	// DSN is the control database holding the registry (tenancy.orgs,
	// created by pgtenant policies install). Empty: no registry, and every
	// tenant a valid token names is served.
	DSN string `mapstructure:"dsn"`
	// ReloadInterval is how often the whole registry is read again, on top
	// of the changes LISTEN/NOTIFY delivers at once.
	ReloadInterval time.Duration `mapstructure:"reload_interval"`
	// FlagsSetting is the setting each transaction of a tenant carries its
	// feature flags in, as JSON.
	FlagsSetting string `mapstructure:"flags_setting"`
}

// Metrics is the metrics.* section.
type Metrics struct {
	// TenantLabels bounds the tenant label: "none" (one series for all
	// tenants), "all", or "top:N" (the N busiest tenants keep their label,
	// the rest are folded into one).
	TenantLabels string `mapstructure:"tenant_labels"`
}

// Plans is the plans.* section: the background EXPLAIN of a sample of slow
// tenant statements (pgtenant policies plans on live traffic).
type Plans struct {
	// SampleSlow turns the sampling on.
	SampleSlow bool `mapstructure:"sample_slow"`
	// SlowThreshold is the backend time from which a statement is a
	// candidate.
	SlowThreshold time.Duration `mapstructure:"slow_threshold"`
	// PerMinute bounds the statements explained per minute.
	PerMinute int `mapstructure:"per_minute"`
}

// Defaults of the plans section.
const (
	DefaultSlowThreshold  = 250 * time.Millisecond
	DefaultPlansPerMinute = 6
)

// RegistryEnabled reports whether a tenant registry is configured.
func (c Config) RegistryEnabled() bool { return c.Tenants.DSN != "" }

// AdminJWT is the configuration admin tokens are verified with: admin.jwt
// when it names a key, else auth.jwt.
func (c Config) AdminJWT() auth.JWTConfig {
	if hasKey(c.Admin.JWT) {
		return c.Admin.JWT
	}
	return c.Auth.JWT
}

func hasKey(j auth.JWTConfig) bool {
	return j.Secret != "" || j.SecretFile != "" || j.PublicKeyFile != "" || j.JWKSFile != ""
}

// Backend is the backend.* section.
type Backend struct {
	// DSN is a PostgreSQL URL or keyword/value string for the application
	// role pgtenant connects as (not a superuser, not BYPASSRLS).
	DSN string `mapstructure:"dsn"`
	// PasswordFile, when set, holds the backend password (keeps it out of the DSN).
	PasswordFile string `mapstructure:"password_file"`
	// ConnectTimeout bounds one backend connection attempt.
	ConnectTimeout time.Duration `mapstructure:"connect_timeout"`
	// MaxPreparedStatements bounds the client statements pgtenant keeps
	// prepared on one backend connection; the least recently used is closed.
	MaxPreparedStatements int `mapstructure:"max_prepared_statements"`
}

// Auth is the auth.* section.
type Auth struct {
	JWT auth.JWTConfig `mapstructure:"jwt"`
	// AllowExpiredSessions keeps a session open after its token expires.
	// By default the session ends, with 28P01, when its next transaction
	// would start after the token's exp (plus auth.jwt.leeway).
	AllowExpiredSessions bool `mapstructure:"allow_expired_sessions"`
}

// Tenancy is the tenancy.* section.
type Tenancy struct {
	// Setting is the custom setting that carries the tenant id in every transaction.
	Setting string `mapstructure:"setting"`
	// OrgPattern is the regular expression a tenant id must match; anchored.
	OrgPattern string `mapstructure:"org_pattern"`
	// SetWith is how each transaction's context is set: "auto" (set_config,
	// or SET LOCAL where the database runs Citus), "set_local" (SET LOCAL;
	// required on Citus) or "set_config" (set_config(..., true): same
	// effect, without the WARNING PostgreSQL sends, and flushes, for SET
	// LOCAL in every implicit transaction).
	SetWith string `mapstructure:"set_with"`
	// ContextKeys sign the per-transaction context token that
	// tenancy.current_org() verifies; the first signs, all are installed
	// by pgtenant policies install (two during a rotation).
	ContextKeys []ContextKey `mapstructure:"context_keys"`
	// ContextSecret is a single context key (id "default") from the
	// environment, used when ContextKeys is empty.
	ContextSecret string `mapstructure:"context_secret"`
	// ContextTTL is how long a context token is valid; pgtenant signs a new
	// one for a backend connection after half of it.
	ContextTTL time.Duration `mapstructure:"context_ttl"`
	// Hardening is what pgtenant serve does when the database checks of the
	// application role find a problem: warn, strict (refuse to start) or off.
	Hardening string `mapstructure:"hardening"`
}

// ContextKey is one entry of tenancy.context_keys.
type ContextKey struct {
	// ID names the key in tokens and in tenancy.context_keys.
	ID string `mapstructure:"id"`
	// SecretFile holds the secret (at least 32 bytes); one trailing newline
	// is removed.
	SecretFile string `mapstructure:"secret_file"`
}

// Guard is the guard.* section.
type Guard struct {
	// Enabled runs the statement guard on every tenant statement.
	Enabled *bool `mapstructure:"enabled"`
	// Allow switches rules off for every tenant (rule names as in
	// docs/configuration.md).
	Allow []string `mapstructure:"allow"`
	// BlockAdvisoryLocks adds the advisory_lock rule.
	BlockAdvisoryLocks bool `mapstructure:"block_advisory_locks"`
	// ReservedSettings are settings (or prefixes ending in "." or "*")
	// tenants may not change, on top of app.*, pgtenant.*, row_security,
	// role and session_authorization.
	ReservedSettings []string `mapstructure:"reserved_settings"`
	// CacheSize bounds the decisions cached by statement text.
	CacheSize int `mapstructure:"cache_size"`
	// Databases and Tenants add allowed rules for one database or tenant.
	Databases map[string]GuardAllow `mapstructure:"databases"`
	Tenants   map[string]GuardAllow `mapstructure:"tenants"`
}

// GuardAllow is a per-database or per-tenant guard exception.
type GuardAllow struct {
	// Allow switches these rules off, on top of guard.allow.
	Allow []string `mapstructure:"allow"`
}

// GuardEnabled resolves guard.enabled (default true).
func (c Config) GuardEnabled() bool { return c.Guard.Enabled == nil || *c.Guard.Enabled }

// Context key sources and the hardening modes.
const (
	DefaultContextKeyID = "default"
	HardeningWarn       = "warn"
	HardeningStrict     = "strict"
	HardeningOff        = "off"
)

// SigningKeys reads the configured context keys, the signing key first;
// none when the signed context is not configured.
func (t Tenancy) SigningKeys() ([]policies.ContextKey, error) {
	if len(t.ContextKeys) == 0 {
		if t.ContextSecret == "" {
			return nil, nil
		}
		k := policies.ContextKey{ID: DefaultContextKeyID, Secret: []byte(t.ContextSecret)}
		if err := k.Validate(); err != nil {
			return nil, fmt.Errorf("tenancy.context_secret: %w", err)
		}
		return []policies.ContextKey{k}, nil
	}
	keys := make([]policies.ContextKey, len(t.ContextKeys))
	for i, ck := range t.ContextKeys {
		secret, err := policies.ReadSecretFile(ck.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("tenancy.context_keys[%d] (%s): secret_file: %w", i, ck.ID, err)
		}
		keys[i] = policies.ContextKey{ID: ck.ID, Secret: secret}
		if err := keys[i].Validate(); err != nil {
			return nil, fmt.Errorf("tenancy.context_keys[%d]: %w", i, err)
		}
	}
	return keys, nil
}

// TLS is the tls.* section.
type TLS struct {
	// CertFile and KeyFile are a PEM certificate chain and key; both or neither.
	CertFile string `mapstructure:"cert_file"`
	KeyFile  string `mapstructure:"key_file"`
	// Require is "auto" (require TLS unless listen is a loopback address),
	// "true" or "false".
	Require string `mapstructure:"require"`
}

// Client is the client.* section.
type Client struct {
	// MaxConnections bounds concurrent client connections.
	MaxConnections int `mapstructure:"max_connections"`
	// LoginTimeout bounds the startup and authentication exchange.
	LoginTimeout time.Duration `mapstructure:"login_timeout"`
	// MaxMessageSize bounds a single client protocol message, in bytes.
	MaxMessageSize int `mapstructure:"max_message_size"`
}

// Log is the log.* section.
type Log struct {
	// Level is trace, debug, info, warn or error.
	Level string `mapstructure:"level"`
	// Format is json or console.
	Format string `mapstructure:"format"`
}

// Default returns a Config with every default filled in.
func Default() Config {
	c := Config{}
	c.SetDefaults()
	return c
}

// SetDefaults fills zero values with defaults.
func (c *Config) SetDefaults() {
	orDefault(&c.Listen, DefaultListen)
	orDefault(&c.Admin.Listen, DefaultAdminListen)
	orDefault(&c.Admin.RolesClaim, DefaultRolesClaim)
	c.Admin.JWT.SetDefaults()
	orDefault(&c.Tenants.ReloadInterval, DefaultRegistryReload)
	orDefault(&c.Tenants.FlagsSetting, proxy.DefaultFlagsSetting)
	orDefault(&c.Metrics.TenantLabels, DefaultTenantLabels)
	orDefault(&c.Plans.SlowThreshold, DefaultSlowThreshold)
	orDefault(&c.Plans.PerMinute, DefaultPlansPerMinute)
	orDefault(&c.Backend.ConnectTimeout, DefaultConnectLimit)
	orDefault(&c.Backend.MaxPreparedStatements, proxy.DefaultMaxBackendStatements)
	orDefault(&c.Tenancy.Setting, DefaultSetting)
	orDefault(&c.Tenancy.SetWith, DefaultSetWith)
	orDefault(&c.Tenancy.OrgPattern, auth.DefaultOrgPattern)
	orDefault(&c.Tenancy.ContextTTL, policies.DefaultContextTTL)
	orDefault(&c.Tenancy.Hardening, HardeningWarn)
	orDefault(&c.Guard.CacheSize, policies.DefaultGuardCacheSize)
	c.Audit.SetDefaults()
	orDefault(&c.Policies.OrgColumn, policies.DefaultOrgColumn)
	orDefault(&c.Policies.OrgType, policies.OrgTypeText)
	switch c.TLS.Require {
	case "1": // a YAML boolean, as viper decodes it into a string
		c.TLS.Require = "true"
	case "0":
		c.TLS.Require = "false"
	}
	orDefault(&c.TLS.Require, DefaultTLSRequire)
	orDefault(&c.Client.MaxConnections, proxy.DefaultMaxClientConns)
	orDefault(&c.Client.LoginTimeout, proxy.DefaultLoginTimeout)
	orDefault(&c.Client.MaxMessageSize, proxy.DefaultMaxMessageSize)
	orDefault(&c.Log.Level, DefaultLogLevel)
	orDefault(&c.Log.Format, DefaultLogFormat)
	c.Auth.JWT.SetDefaults()
	c.Pool.SetDefaults()
}

// orDefault sets *p to def when it is the zero value.
func orDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

// Validate rejects bad values and combinations, naming the key. It is fast
// and touches no network; secret and key files are read later by the
// components that use them.
func (c Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen: %q is not host:port", c.Listen)
	}
	if c.AdminEnabled() {
		if _, _, err := net.SplitHostPort(c.Admin.Listen); err != nil {
			return fmt.Errorf("admin.listen: %q is not host:port", c.Admin.Listen)
		}
	}
	if c.Backend.DSN == "" {
		return fmt.Errorf("backend.dsn is required: how pgtenant reaches PostgreSQL (e.g. postgres://app@localhost:5432/app)")
	}
	if _, err := pgconn.ParseConfig(c.Backend.DSN); err != nil {
		return fmt.Errorf("backend.dsn: %s", redactDSNError(err))
	}
	if c.Backend.ConnectTimeout < 0 {
		return fmt.Errorf("backend.connect_timeout must not be negative")
	}
	if c.Backend.MaxPreparedStatements < 1 {
		return fmt.Errorf("backend.max_prepared_statements must be at least 1")
	}
	for from, to := range c.Databases {
		if from == "" || to == "" {
			return fmt.Errorf("databases: empty database name in mapping %q -> %q", from, to)
		}
	}
	if err := c.Auth.JWT.Validate(); err != nil {
		return err
	}
	if !proxy.ValidSetting(c.Tenancy.Setting) {
		return fmt.Errorf("tenancy.setting: %q must be a custom setting name like app.current_org", c.Tenancy.Setting)
	}
	if _, err := c.OrgRegexp(); err != nil {
		return err
	}
	switch proxy.SetWith(c.Tenancy.SetWith) {
	case proxy.SetWithAuto, proxy.SetWithLocal, proxy.SetWithConfig:
	default:
		return fmt.Errorf("tenancy.set_with: %q must be auto, set_local or set_config", c.Tenancy.SetWith)
	}
	for i, k := range c.Tenancy.ContextKeys {
		if k.ID == "" || k.SecretFile == "" {
			return fmt.Errorf("tenancy.context_keys[%d]: id and secret_file are both required", i)
		}
	}
	if len(c.Tenancy.ContextKeys) > 0 && c.Tenancy.ContextSecret != "" {
		return fmt.Errorf("tenancy.context_secret: set either context_secret or context_keys, not both")
	}
	if c.Tenancy.ContextTTL < 10*time.Second {
		return fmt.Errorf("tenancy.context_ttl must be at least 10s")
	}
	switch c.Tenancy.Hardening {
	case HardeningWarn, HardeningStrict, HardeningOff:
	default:
		return fmt.Errorf("tenancy.hardening: %q must be warn, strict or off", c.Tenancy.Hardening)
	}
	if err := c.validateGuard("guard", "", ""); err != nil {
		return err
	}
	for db := range c.Guard.Databases {
		if err := c.validateGuard("guard.databases."+db, db, ""); err != nil {
			return err
		}
	}
	for org := range c.Guard.Tenants {
		if err := c.validateGuard("guard.tenants."+org, "", org); err != nil {
			return err
		}
	}
	if err := c.Audit.Validate(); err != nil {
		return err
	}
	if err := c.Policies.Validate(); err != nil {
		return err
	}
	if err := c.validateRegistry(); err != nil {
		return err
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return fmt.Errorf("tls.cert_file and tls.key_file must be set together")
	}
	switch c.TLS.Require {
	case "auto", "true", "false":
	default:
		return fmt.Errorf("tls.require: %q must be auto, true or false", c.TLS.Require)
	}
	if c.RequireTLS() && c.TLS.CertFile == "" {
		return fmt.Errorf("tls.require: TLS is required for listen %s (a non-loopback address; tokens travel as passwords) but tls.cert_file is not set; set a certificate or tls.require=false", c.Listen)
	}
	if c.Client.MaxConnections < 1 {
		return fmt.Errorf("client.max_connections must be at least 1")
	}
	if c.Client.LoginTimeout <= 0 {
		return fmt.Errorf("client.login_timeout must be positive")
	}
	if c.Client.MaxMessageSize < 1<<10 || c.Client.MaxMessageSize > 1<<30 {
		return fmt.Errorf("client.max_message_size must be between 1024 and 1073741824 bytes")
	}
	if err := c.Pool.Validate(); err != nil {
		return err
	}
	switch c.Log.Level {
	case "trace", "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level: %q must be trace, debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "console":
	default:
		return fmt.Errorf("log.format: %q must be json or console", c.Log.Format)
	}
	return nil
}

// validateRegistry checks the tenants, admin and metrics keys.
func (c Config) validateRegistry() error {
	if c.Tenants.DSN != "" {
		if _, err := pgconn.ParseConfig(c.Tenants.DSN); err != nil {
			return fmt.Errorf("tenants.dsn: %s", redactDSNError(err))
		}
	}
	if c.Tenants.ReloadInterval < time.Second {
		return fmt.Errorf("tenants.reload_interval must be at least 1s")
	}
	if !proxy.ValidSetting(c.Tenants.FlagsSetting) || c.Tenants.FlagsSetting == c.Tenancy.Setting {
		return fmt.Errorf("tenants.flags_setting: %q must be a custom setting name like app.org_flags, other than tenancy.setting", c.Tenants.FlagsSetting)
	}
	if hasKey(c.Admin.JWT) { // else auth.jwt, validated above
		if err := c.Admin.JWT.Validate(); err != nil {
			return fmt.Errorf("admin.jwt: %w", err)
		}
	}
	if c.Admin.LoginURL != "" {
		if u, err := url.Parse(c.Admin.LoginURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("admin.login_url: %q must be an absolute http(s) URL", c.Admin.LoginURL)
		}
	}
	if c.Plans.SlowThreshold < 0 || c.Plans.PerMinute < 1 || c.Plans.PerMinute > 600 {
		return fmt.Errorf("plans: slow_threshold must not be negative and per_minute must be from 1 to 600")
	}
	if _, err := ParseTenantLabels(c.Metrics.TenantLabels); err != nil {
		return err
	}
	return nil
}

// ParseTenantLabels reads metrics.tenant_labels: -1 for all tenants, 0 for
// none, N for the N busiest.
func ParseTenantLabels(s string) (int, error) {
	switch s {
	case "all":
		return -1, nil
	case "none":
		return 0, nil
	}
	if n, ok := strings.CutPrefix(s, "top:"); ok {
		if v, err := strconv.Atoi(n); err == nil && v >= 1 && v <= 10000 {
			return v, nil
		}
	}
	return 0, fmt.Errorf("metrics.tenant_labels: %q must be none, all or top:N with N from 1 to 10000", s)
}

// AdminEnabled reports whether the admin HTTP listener runs.
func (c Config) AdminEnabled() bool { return c.Admin.Listen != "off" }

// RequireTLS resolves tls.require: "auto" requires TLS unless the client
// listener is on a loopback address.
func (c Config) RequireTLS() bool {
	switch c.TLS.Require {
	case "true":
		return true
	case "false":
		return false
	}
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return true
	}
	if host == "localhost" {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}

// OrgRegexp compiles tenancy.org_pattern, anchored at both ends.
func (c Config) OrgRegexp() (*regexp.Regexp, error) {
	p := c.Tenancy.OrgPattern
	if !strings.HasPrefix(p, "^") {
		p = "^" + p
	}
	if !strings.HasSuffix(p, "$") {
		p += "$"
	}
	re, err := regexp.Compile(p)
	if err != nil {
		return nil, fmt.Errorf("tenancy.org_pattern: %v", err)
	}
	for _, bad := range []string{"", "'", "a'b", "a\\b", "a b", "a\x00b"} {
		if re.MatchString(bad) {
			return nil, fmt.Errorf("tenancy.org_pattern: must not match %q; tenant ids are spliced into SQL literals", bad)
		}
	}
	return re, nil
}

// BackendConfig parses backend.dsn and applies backend.password_file and
// backend.connect_timeout.
func (c Config) BackendConfig() (*pgconn.Config, error) {
	pc, err := pgconn.ParseConfig(c.Backend.DSN)
	if err != nil {
		return nil, fmt.Errorf("backend.dsn: %s", redactDSNError(err))
	}
	if c.Backend.PasswordFile != "" {
		b, err := os.ReadFile(c.Backend.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("backend.password_file: %v", err)
		}
		pc.Password = strings.TrimRight(string(b), "\r\n")
	}
	if c.Backend.ConnectTimeout > 0 {
		pc.ConnectTimeout = c.Backend.ConnectTimeout
	}
	return pc, nil
}

// redactDSNError keeps a DSN parse error but never the DSN, which may hold a password.
func redactDSNError(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "cannot parse `"); i >= 0 {
		if j := strings.Index(msg[i+14:], "`"); j >= 0 {
			msg = msg[:i] + "cannot parse the DSN" + msg[i+14+j+1:]
		}
	}
	return msg
}

// GuardConfig is the statement guard's configuration for tenants of
// database and tenant ("" for neither): guard.allow plus that database's and
// that tenant's exceptions.
func (c Config) GuardConfig(database, tenant string) policies.GuardConfig {
	allow := append([]string(nil), c.Guard.Allow...)
	allow = append(allow, c.Guard.Databases[database].Allow...)
	allow = append(allow, c.Guard.Tenants[tenant].Allow...)
	return policies.GuardConfig{
		Allow:              allow,
		BlockAdvisoryLocks: c.Guard.BlockAdvisoryLocks,
		// The tenant setting and the flags are reserved even outside app.*.
		ReservedSettings: append(append([]string(nil), c.Guard.ReservedSettings...), c.Tenancy.Setting, c.Tenants.FlagsSetting),
		CacheSize:        c.Guard.CacheSize,
	}
}

// validateGuard builds the guard of one allow list, so that a bad rule
// name fails at start-up with the key that holds it.
func (c Config) validateGuard(key, database, tenant string) error {
	if _, err := policies.NewGuard(c.GuardConfig(database, tenant)); err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	return nil
}
