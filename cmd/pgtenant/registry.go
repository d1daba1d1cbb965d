package main

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/pgerr"
	"github.com/pgtenant/pgtenant/poolmgr"
	"github.com/pgtenant/pgtenant/proxy"
	"github.com/pgtenant/pgtenant/tenants"
)

// tenantRegistry is the tenant registry as the proxy uses it: it admits
// logins by the orgs' status and members, gives each tenant's settings, and
// applies every change to the running proxy (ending the sessions of a
// suspended or deprovisioned tenant, resizing pools).
type tenantRegistry struct {
	reg      *tenants.Registry
	log      zerolog.Logger
	interval time.Duration // full reloads

	// srv is set once the proxy exists; changes before then need no
	// applying, the proxy reads the registry when it starts.
	srv      atomic.Pointer[proxy.Server]
	settings sync.Map // org id -> *proxy.TenantSettings, current

	mu    sync.Mutex
	pools map[string]poolmgr.Override // the registry's pool overrides, by org
}

// openTenantRegistry opens the registry of cfg.Tenants.DSN and registers its
// metrics on reg.
func openTenantRegistry(ctx context.Context, cfg config.Config, log zerolog.Logger, metrics prometheus.Registerer) (*tenantRegistry, error) {
	t := &tenantRegistry{log: log, interval: cfg.Tenants.ReloadInterval, pools: map[string]poolmgr.Override{}}
	reg, err := tenants.OpenRegistry(ctx, tenants.RegistryOptions{
		DSN:            cfg.Tenants.DSN,
		ReloadInterval: cfg.Tenants.ReloadInterval,
		Log:            log,
		OnChange:       t.changed,
	})
	if err != nil {
		return nil, err
	}
	t.reg = reg
	// Under mu: changes already flow to t.changed.
	t.mu.Lock()
	reg.Each(func(o tenants.Org) {
		if o.Pool != (tenants.Pool{}) {
			t.pools[o.ID] = poolOverride(o.Pool)
		}
	})
	t.mu.Unlock()
	registerRegistryMetrics(metrics, reg)
	return t, nil
}

// start hands the running proxy to the registry and applies the pool
// overrides loaded so far.
func (t *tenantRegistry) start(srv *proxy.Server) {
	t.mu.Lock()
	srv.SetPoolOverrides(t.pools)
	t.srv.Store(srv)
	t.mu.Unlock()
}

// Admit implements proxy.TenantRegistry.
func (t *tenantRegistry) Admit(org, subject string) error {
	o, ok := t.reg.Lookup(org)
	switch {
	case !ok:
		return pgerr.NewFatal(pgerr.InvalidAuthorization, "tenant_unknown",
			fmt.Sprintf("tenant %q is not registered", org)).
			WithHint("An operator creates organizations with pgtenant tenants create or the admin API.")
	case o.Status == tenants.StatusDeprovisioned:
		return pgerr.NewFatal(pgerr.InvalidAuthorization, "tenant_deprovisioned",
			fmt.Sprintf("tenant %q has been deprovisioned", org))
	case o.Status == tenants.StatusSuspended:
		return pgerr.NewFatal(pgerr.InvalidAuthorization, "tenant_suspended",
			fmt.Sprintf("tenant %q is suspended", org)).
			WithHint("Ask the platform operator to resume the organization.")
	}
	if o.Settings.RequireMembership {
		if _, member := t.reg.Member(org, subject); !member || subject == "" {
			return pgerr.NewFatal(pgerr.InvalidAuthorization, "not_a_member",
				fmt.Sprintf("the token's subject %q is not an active member of tenant %q", subject, org)).
				WithHint("The tenant requires membership: a tenant admin adds members in the admin API or UI.")
		}
	}
	return nil
}

// Settings implements proxy.TenantRegistry. The value stays the same
// pointer until the settings change.
func (t *tenantRegistry) Settings(org string) *proxy.TenantSettings {
	if ts, ok := t.settings.Load(org); ok {
		return ts.(*proxy.TenantSettings)
	}
	o, ok := t.reg.Lookup(org)
	if !ok {
		return nil
	}
	ts, _ := t.settings.LoadOrStore(org, tenantSettings(o))
	return ts.(*proxy.TenantSettings)
}

// tenantSettings is what the proxy applies of o.
func tenantSettings(o tenants.Org) *proxy.TenantSettings {
	flags := []byte("{}")
	if len(o.Flags) > 0 {
		flags, _ = json.Marshal(o.Flags) // a map from JSON: always marshals, keys sorted
	}
	return &proxy.TenantSettings{
		StatementTimeout:         time.Duration(o.Settings.StatementTimeout),
		IdleInTransactionTimeout: time.Duration(o.Settings.IdleInTransactionTimeout),
		ReadOnly:                 o.Settings.ReadOnly,
		MaxConnections:           o.Settings.MaxConnections,
		Flags:                    string(flags),
	}
}

// changed applies one registry change to the proxy.
func (t *tenantRegistry) changed(old, new *tenants.Org) {
	var id string
	var before, after tenants.Pool
	if old != nil {
		id, before = old.ID, old.Pool
	}
	if new != nil {
		id, after = new.ID, new.Pool
	}
	if new == nil {
		t.settings.Delete(id)
	} else if ts := tenantSettings(*new); !t.sameSettings(id, ts) {
		t.settings.Store(id, ts)
	}
	srv := t.srv.Load()
	if srv != nil && (new == nil || new.Status != tenants.StatusActive) {
		reason := "tenant " + id + " was removed from the registry"
		if new != nil {
			reason = "tenant " + id + " was " + string(new.Status)
		}
		if n := srv.EndTenant(id, reason); n > 0 {
			t.log.Info().Str("tenant", id).Int("sessions", n).Msg("ended the sessions of a tenant that is no longer active")
		}
	}
	if !reflect.DeepEqual(before, after) {
		t.mu.Lock()
		if after == (tenants.Pool{}) {
			delete(t.pools, id)
		} else {
			t.pools[id] = poolOverride(after)
		}
		if srv := t.srv.Load(); srv != nil {
			srv.SetPoolOverrides(t.pools)
		}
		t.mu.Unlock()
	}
}

// sameSettings reports whether org's current settings equal ts.
func (t *tenantRegistry) sameSettings(org string, ts *proxy.TenantSettings) bool {
	cur, ok := t.settings.Load(org)
	return ok && *cur.(*proxy.TenantSettings) == *ts
}

func poolOverride(p tenants.Pool) poolmgr.Override {
	dur := func(d *tenants.Duration) *time.Duration {
		if d == nil {
			return nil
		}
		v := time.Duration(*d)
		return &v
	}
	return poolmgr.Override{Size: p.Size, MinIdle: p.MinIdle, Mode: p.Mode,
		WaitTimeout: dur(p.WaitTimeout), IdleTimeout: dur(p.IdleTimeout), MaxLifetime: dur(p.MaxLifetime)}
}

// close stops following the registry.
func (t *tenantRegistry) close() { t.reg.Close() }

// registerRegistryMetrics exports the registry's state.
func registerRegistryMetrics(reg prometheus.Registerer, r *tenants.Registry) {
	for _, st := range []tenants.Status{tenants.StatusActive, tenants.StatusSuspended, tenants.StatusDeprovisioned} {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "pgtenant_tenants",
			Help:        "Organizations in the tenant registry, by status.",
			ConstLabels: prometheus.Labels{"status": string(st)},
		}, func() float64 { return float64(r.Counts()[st]) }))
	}
	for _, c := range []struct {
		result string
		value  func(tenants.RegistryStats) int64
	}{
		{"ok", func(s tenants.RegistryStats) int64 { return s.Reloads }},
		{"error", func(s tenants.RegistryStats) int64 { return s.ReloadErrors }},
	} {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "pgtenant_registry_reloads_total",
			Help:        "Loads of the tenant registry (full or of the orgs a notification named), by result.",
			ConstLabels: prometheus.Labels{"result": c.result},
		}, func() float64 { return float64(c.value(r.Stats())) }))
	}
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "pgtenant_registry_notify_errors_total",
		Help: "Losses of the registry's LISTEN connection and failed attempts to reconnect it.",
	}, func() float64 { return float64(r.Stats().NotifyErrors) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "pgtenant_registry_last_load_timestamp_seconds",
		Help: "Unix time of the last successful load of the tenant registry.",
	}, func() float64 {
		if t := r.LastLoad(); !t.IsZero() {
			return float64(t.UnixNano()) / 1e9
		}
		return 0
	}))
}

// staleAfterReloads: how old the registry's last load may be before pgtenant
// reports itself not ready: a few missed reloads.
const staleAfterReloads = 4

// fresh reports an error when the registry has not loaded for several
// reload intervals: its copy may be out of date.
func (t *tenantRegistry) fresh() error {
	if age := time.Since(t.reg.LastLoad()); age > staleAfterReloads*t.interval {
		return fmt.Errorf("tenant registry not loaded for %s", age.Round(time.Second))
	}
	return nil
}
