package poolmgr

import (
	"fmt"
	"sort"
	"time"
)

// Defaults applied by SetDefaults to zero-valued fields.
const (
	DefaultSize            = 20
	DefaultMinIdle         = 0
	DefaultMaxLifetime     = time.Hour
	DefaultIdleTimeout     = 10 * time.Minute
	DefaultWaitTimeout     = 30 * time.Second
	DefaultMaxBackendConns = 90
	DefaultReapAfter       = 15 * time.Minute
)

// lifetimeJitter is the largest fraction of MaxLifetime by which a
// connection's lifetime is shortened, so connections dialed together do not
// all expire together.
const lifetimeJitter = 0.1

// Settings are the limits of one pool. They are set for all pools in Config
// and may be overridden per tenant with an Override.
type Settings struct {
	// Size is the most backend connections the pool opens.
	Size int `mapstructure:"size"`
	// MinIdle is how many idle connections the maintenance loop keeps open
	// while the pool exists; 0 keeps none.
	MinIdle int `mapstructure:"min_idle"`
	// MaxLifetime is the age after which a connection is closed, on release or
	// by the maintenance loop; each connection's lifetime is shortened by a
	// random jitter of up to 10% so they do not expire all at once.
	MaxLifetime time.Duration `mapstructure:"max_lifetime"`
	// IdleTimeout is how long an idle connection above MinIdle stays open.
	IdleTimeout time.Duration `mapstructure:"idle_timeout"`
	// WaitTimeout is how long Acquire waits for a connection before it fails
	// with SQLSTATE 53300.
	WaitTimeout time.Duration `mapstructure:"wait_timeout"`
	// Mode is how clients hold backend connections: "transaction" (one per
	// transaction, the default) or "session" (one for the whole session).
	// The pool itself does not use it; the proxy does.
	Mode string `mapstructure:"mode"`
}

// Pooling modes.
const (
	ModeTransaction = "transaction"
	ModeSession     = "session"
)

// Config configures a Manager. It is the "pool" section of pgtenant's
// configuration; Validate reports errors with keys under "pool.".
type Config struct {
	Settings `mapstructure:",squash"`
	// MaxBackendConns caps the backend connections of all pools together; keep
	// it below PostgreSQL's max_connections.
	MaxBackendConns int `mapstructure:"max_backend_connections"`
	// ReapAfter is how long a pool may go without leases or waiters before it
	// is closed and removed, its MinIdle connections included.
	ReapAfter time.Duration `mapstructure:"reap_after"`
	// Tenants holds per-tenant overrides of Settings, by tenant id.
	Tenants map[string]Override `mapstructure:"tenants"`
	// DatabaseModes sets the pooling mode per backend database; a tenant's
	// own mode override wins.
	DatabaseModes map[string]string `mapstructure:"database_modes"`
}

// Override changes some Settings for one tenant; a nil field inherits the
// value from Config.
type Override struct {
	Size        *int           `mapstructure:"size"`
	MinIdle     *int           `mapstructure:"min_idle"`
	MaxLifetime *time.Duration `mapstructure:"max_lifetime"`
	IdleTimeout *time.Duration `mapstructure:"idle_timeout"`
	WaitTimeout *time.Duration `mapstructure:"wait_timeout"`
	Mode        *string        `mapstructure:"mode"`
}

// SetDefaults replaces zero values with the Default constants. Overrides
// are left alone: their nil fields inherit the defaulted values.
func (c *Config) SetDefaults() {
	c.Settings.setDefaults()
	if c.MaxBackendConns == 0 {
		c.MaxBackendConns = DefaultMaxBackendConns
	}
	if c.ReapAfter == 0 {
		c.ReapAfter = DefaultReapAfter
	}
}

func (s *Settings) setDefaults() {
	if s.Size == 0 {
		s.Size = DefaultSize
	}
	if s.MaxLifetime == 0 {
		s.MaxLifetime = DefaultMaxLifetime
	}
	if s.IdleTimeout == 0 {
		s.IdleTimeout = DefaultIdleTimeout
	}
	if s.WaitTimeout == 0 {
		s.WaitTimeout = DefaultWaitTimeout
	}
	if s.Mode == "" {
		s.Mode = ModeTransaction
	}
}

// Validate reports the first invalid value, naming its configuration key.
// Call it after SetDefaults.
func (c Config) Validate() error {
	if err := c.Settings.validate("pool."); err != nil {
		return err
	}
	if c.MaxBackendConns < 1 {
		return fmt.Errorf("pool.max_backend_connections must be at least 1")
	}
	if c.ReapAfter <= 0 {
		return fmt.Errorf("pool.reap_after must be positive")
	}
	for db, mode := range c.DatabaseModes {
		if mode != ModeTransaction && mode != ModeSession {
			return fmt.Errorf("pool.database_modes.%s: %q must be %s or %s", db, mode, ModeTransaction, ModeSession)
		}
	}
	tenants := make([]string, 0, len(c.Tenants))
	for t := range c.Tenants {
		tenants = append(tenants, t)
	}
	sort.Strings(tenants)
	for _, t := range tenants {
		o := c.Tenants[t]
		if err := c.Settings.with(o).validate("pool.tenants." + t + "."); err != nil {
			return err
		}
	}
	return nil
}

func (s Settings) validate(prefix string) error {
	switch {
	case s.Size < 1:
		return fmt.Errorf("%ssize must be at least 1", prefix)
	case s.MinIdle < 0:
		return fmt.Errorf("%smin_idle must not be negative", prefix)
	case s.MinIdle > s.Size:
		return fmt.Errorf("%smin_idle (%d) must not exceed %ssize (%d)", prefix, s.MinIdle, prefix, s.Size)
	case s.MaxLifetime <= 0:
		return fmt.Errorf("%smax_lifetime must be positive", prefix)
	case s.IdleTimeout <= 0:
		return fmt.Errorf("%sidle_timeout must be positive", prefix)
	case s.WaitTimeout < 0:
		return fmt.Errorf("%swait_timeout must not be negative", prefix)
	case s.Mode != ModeTransaction && s.Mode != ModeSession:
		return fmt.Errorf("%smode %q must be %s or %s", prefix, s.Mode, ModeTransaction, ModeSession)
	}
	return nil
}

// with returns s changed by o, as is, without validation.
func (s Settings) with(o Override) Settings {
	if o.Size != nil {
		s.Size = *o.Size
	}
	if o.MinIdle != nil {
		s.MinIdle = *o.MinIdle
	}
	if o.MaxLifetime != nil {
		s.MaxLifetime = *o.MaxLifetime
	}
	if o.IdleTimeout != nil {
		s.IdleTimeout = *o.IdleTimeout
	}
	if o.WaitTimeout != nil {
		s.WaitTimeout = *o.WaitTimeout
	}
	if o.Mode != nil {
		s.Mode = *o.Mode
	}
	return s
}

// resolve returns base changed by o where o's values are usable. Overrides
// can arrive at run time (SetOverrides, the tenant registry), where failing
// is not an option, so an invalid field is ignored and inherits from base;
// a zero WaitTimeout means the default, as in Config.
func resolve(base Settings, o Override) Settings {
	s := base.with(o)
	if s.Size < 1 {
		s.Size = base.Size
	}
	if s.MaxLifetime <= 0 {
		s.MaxLifetime = base.MaxLifetime
	}
	if s.IdleTimeout <= 0 {
		s.IdleTimeout = base.IdleTimeout
	}
	if s.Mode != ModeTransaction && s.Mode != ModeSession {
		s.Mode = base.Mode
	}
	if s.WaitTimeout <= 0 {
		s.WaitTimeout = base.WaitTimeout
	}
	s.MinIdle = min(max(s.MinIdle, 0), s.Size)
	return s
}
