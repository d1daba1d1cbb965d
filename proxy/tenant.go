package proxy

import (
	"maps"
	"strconv"
	"time"

	"github.com/pgtenant/pgtenant/pgerr"
	"github.com/pgtenant/pgtenant/poolmgr"
)

// TenantSettings are what the tenant registry says about one tenant's
// transactions. They are immutable: the registry hands out a new value when
// they change, and a backend connection re-prepares its context statements
// when the value it was prepared with is no longer the current one.
type TenantSettings struct {
	// StatementTimeout, when positive, is set as statement_timeout for
	// every transaction of the tenant.
	StatementTimeout time.Duration
	// IdleInTransactionTimeout, when positive, ends a session that leaves
	// a transaction open without sending anything for that long (FATAL
	// 25P03), as PostgreSQL's idle_in_transaction_session_timeout does.
	IdleInTransactionTimeout time.Duration
	// ReadOnly makes every transaction of the tenant read-only.
	ReadOnly bool
	// MaxConnections, when positive, bounds the tenant's client
	// connections through this pgtenant.
	MaxConnections int
	// Flags is the tenant's feature flags as a JSON object, set for every
	// transaction in Config.FlagsSetting.
	Flags string
}

// TenantRegistry is the tenant registry as the proxy sees it. It must be
// safe for concurrent use and fast: Admit runs at every login, Settings at
// every transaction.
type TenantRegistry interface {
	// Admit returns nil when a client of org whose token's subject is
	// subject may connect, else a FATAL *pgerr.Error saying why not.
	Admit(org, subject string) error
	// Settings returns org's current settings; nil when there are none.
	Settings(org string) *TenantSettings
}

// DefaultFlagsSetting is where a tenant's feature flags are set.
const DefaultFlagsSetting = "app.org_flags"

// tenantSettings returns the settings of the session's tenant now.
func (s *session) tenantSettings() *TenantSettings {
	if s.srv.cfg.Tenants == nil {
		return nil
	}
	return s.srv.cfg.Tenants.Settings(s.key.Tenant)
}

// admitTenant asks the registry, if any, whether the client may connect,
// and counts its session for its tenant (against the tenant's connection
// limit); untrack releases the count. It runs under srv.mu so that EndTenant
// either finds the session or the registry already refused it.
func (s *session) admitTenant() error {
	srv, org := s.srv, s.id.Org
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if reg := srv.cfg.Tenants; reg != nil {
		if err := reg.Admit(org, s.id.Subject); err != nil {
			return err
		}
		if ts := reg.Settings(org); ts != nil && ts.MaxConnections > 0 && srv.mu.perTenant[org] >= ts.MaxConnections {
			return pgerr.NewFatal(pgerr.TooManyConnections, "tenant_connection_limit",
				"too many connections for tenant "+org).
				WithDetail("The tenant's limit is " + strconv.Itoa(ts.MaxConnections) + " client connections.").
				WithHint("Close idle connections, or ask an operator to raise the tenant's max_connections.")
		}
	}
	srv.mu.perTenant[org]++
	s.org = org
	return nil
}

// EndTenant closes every session of org: each client gets a FATAL 57P01
// with reason, in-flight transactions are rolled back (their backend
// connection is closed), and the tenant's pools are closed. It returns the
// number of sessions ended. New logins are the registry's to refuse.
func (s *Server) EndTenant(org, reason string) int {
	s.mu.Lock()
	var ended []*session
	for sess := range s.mu.sessions {
		if sess.org == org {
			ended = append(ended, sess)
		}
	}
	s.mu.Unlock()
	err := pgerr.NewFatal(pgerr.AdminShutdown, "tenant_ended", "terminating connection: "+reason)
	for _, sess := range ended {
		sess.terminate(err)
	}
	for _, p := range s.pools.Stat().Pools {
		if p.Key.Tenant == org {
			s.pools.ClosePool(p.Key)
		}
	}
	return len(ended)
}

// SessionsByTenant counts the live client sessions of each tenant.
func (s *Server) SessionsByTenant() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.mu.perTenant))
	for org, n := range s.mu.perTenant {
		out[org] = n
	}
	return out
}

// SetPoolOverrides replaces the registry's per-tenant pool overrides; they
// win, field by field, over the configured ones.
func (s *Server) SetPoolOverrides(registry map[string]poolmgr.Override) {
	s.poolMu.Lock()
	defer s.poolMu.Unlock()
	s.poolMu.registry = maps.Clone(registry)
	s.reconfigurePoolsLocked()
}

// SetPoolConfig replaces the pool configuration (on SIGHUP): sizes,
// timeouts, the global cap and the configured per-tenant overrides apply to
// the live pools at once; the database modes keep their start-up values.
func (s *Server) SetPoolConfig(c poolmgr.Config) {
	s.poolMu.Lock()
	defer s.poolMu.Unlock()
	s.poolMu.config = c
	s.reconfigurePoolsLocked()
}

func (s *Server) reconfigurePoolsLocked() {
	c, registry := s.poolMu.config, s.poolMu.registry
	merged := make(map[string]poolmgr.Override, len(c.Tenants)+len(registry))
	for org, o := range c.Tenants {
		merged[org] = o
	}
	for org, r := range registry {
		o := merged[org]
		o.Size = cond(r.Size != nil, r.Size, o.Size)
		o.MinIdle = cond(r.MinIdle != nil, r.MinIdle, o.MinIdle)
		o.MaxLifetime = cond(r.MaxLifetime != nil, r.MaxLifetime, o.MaxLifetime)
		o.IdleTimeout = cond(r.IdleTimeout != nil, r.IdleTimeout, o.IdleTimeout)
		o.WaitTimeout = cond(r.WaitTimeout != nil, r.WaitTimeout, o.WaitTimeout)
		o.Mode = cond(r.Mode != nil, r.Mode, o.Mode)
		merged[org] = o
	}
	c.Tenants = merged
	s.pools.Reconfigure(c)
}
