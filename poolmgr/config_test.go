package poolmgr_test

import (
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/poolmgr"
)

func TestSetDefaultsFillsOnlyZeroValues(t *testing.T) {
	c := poolmgr.Config{Settings: poolmgr.Settings{Size: 5}}
	c.SetDefaults()
	want := poolmgr.Config{
		Settings: poolmgr.Settings{
			Size:        5,
			MinIdle:     poolmgr.DefaultMinIdle,
			MaxLifetime: poolmgr.DefaultMaxLifetime,
			IdleTimeout: poolmgr.DefaultIdleTimeout,
			WaitTimeout: poolmgr.DefaultWaitTimeout,
			Mode:        poolmgr.ModeTransaction,
		},
		MaxBackendConns: poolmgr.DefaultMaxBackendConns,
		ReapAfter:       poolmgr.DefaultReapAfter,
	}
	if c.Settings != want.Settings || c.MaxBackendConns != want.MaxBackendConns || c.ReapAfter != want.ReapAfter {
		t.Fatalf("got %+v, want %+v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
}

func TestValidateNamesTheOffendingKey(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*poolmgr.Config)
		want   string
	}{
		{"size", func(c *poolmgr.Config) { c.Size = -1 }, "pool.size must be at least 1"},
		{"negative min idle", func(c *poolmgr.Config) { c.MinIdle = -1 }, "pool.min_idle must not be negative"},
		{"min idle above size", func(c *poolmgr.Config) { c.MinIdle = 21 }, "pool.min_idle (21) must not exceed pool.size (20)"},
		{"lifetime", func(c *poolmgr.Config) { c.MaxLifetime = -time.Second }, "pool.max_lifetime must be positive"},
		{"idle timeout", func(c *poolmgr.Config) { c.IdleTimeout = -time.Second }, "pool.idle_timeout must be positive"},
		{"wait timeout", func(c *poolmgr.Config) { c.WaitTimeout = -time.Second }, "pool.wait_timeout must not be negative"},
		{"global cap", func(c *poolmgr.Config) { c.MaxBackendConns = -1 }, "pool.max_backend_connections must be at least 1"},
		{"reap after", func(c *poolmgr.Config) { c.ReapAfter = -time.Minute }, "pool.reap_after must be positive"},
		{"tenant size", func(c *poolmgr.Config) {
			c.Tenants = map[string]poolmgr.Override{"acme": {Size: intp(0)}}
		}, "pool.tenants.acme.size must be at least 1"},
		{"tenant min idle above the inherited size", func(c *poolmgr.Config) {
			c.Tenants = map[string]poolmgr.Override{"acme": {MinIdle: intp(30)}}
		}, "pool.tenants.acme.min_idle (30) must not exceed pool.tenants.acme.size (20)"},
		{"tenant wait timeout", func(c *poolmgr.Config) {
			c.Tenants = map[string]poolmgr.Override{"acme": {WaitTimeout: durp(-time.Second)}}
		}, "pool.tenants.acme.wait_timeout must not be negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c poolmgr.Config
			c.SetDefaults()
			tc.change(&c)
			err := c.Validate()
			if err == nil || err.Error() != tc.want {
				t.Fatalf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}
