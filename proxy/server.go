// Package proxy is pgtenant's client side: it accepts PostgreSQL client
// connections, authenticates them with a JWT, and serves each transaction from
// the tenant's backend pool with the tenant context injected ahead of the
// client's own messages.
package proxy

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/poolmgr"
)

// Defaults for Config fields left zero.
const (
	DefaultLoginTimeout         = 10 * time.Second
	DefaultMaxMessageSize       = 256 << 20
	DefaultMaxClientConns       = 5000
	DefaultCancelTimeout        = 5 * time.Second
	DefaultMaxBackendStatements = 500
)

// Authenticator verifies the password a client sent (a JWT) and says who it is.
type Authenticator interface {
	Verify(token string) (auth.Identity, error)
}

// Config is what the proxy needs to serve clients. cmd builds it from the
// typed configuration.
type Config struct {
	// Backend is how pgtenant reaches PostgreSQL (parsed backend.dsn); the
	// database is replaced by the one each client selects.
	Backend *pgconn.Config
	// Databases maps client database names to backend database names; names
	// not listed pass through unchanged.
	Databases map[string]string
	// Setting is the tenant context setting, e.g. app.current_org.
	Setting string
	// SetWith says how the per-transaction context is set (SetWithLocal
	// when empty); SetWithAuto picks set_config, unless the database runs
	// Citus, which needs SET LOCAL. SetConfig is the older spelling of
	// SetWithConfig.
	SetWith SetWith
	// SetConfig sets the per-transaction context with
	// set_config(Setting, org, true) instead of SET LOCAL. Both are
	// transaction-local; set_config avoids the WARNING PostgreSQL logs for
	// SET LOCAL in every implicit transaction, but only SET LOCAL reaches
	// Citus worker nodes.
	SetConfig bool
	// TLS, when set, is offered to clients that send SSLRequest.
	TLS *tls.Config
	// RequireTLS refuses clients that do not use TLS.
	RequireTLS bool
	// LoginTimeout bounds the whole startup and authentication exchange.
	LoginTimeout time.Duration
	// MaxMessageSize bounds one client message; larger ones end the session.
	MaxMessageSize int
	// MaxClientConns bounds concurrent client connections.
	MaxClientConns int
	// Pool configures the per-tenant backend pools.
	Pool poolmgr.Config
	// MaxBackendStatements bounds the client statements prepared on one
	// backend connection; the one bound longest ago is closed to make room.
	MaxBackendStatements int
	// ExpireSessions ends a session, with 28P01, when a transaction would
	// start after its token's expiry plus TokenLeeway.
	ExpireSessions bool
	TokenLeeway    time.Duration
	// Signer, when set, signs the context token every transaction carries
	// in TokenSetting (see context.go); RLS policies that call
	// tenancy.current_org() then trust nothing a client can set.
	Signer       ContextSigner
	TokenSetting string
	// Guard, when set, classifies every statement before it is forwarded
	// and refuses what a tenant must never run (42501).
	Guard StatementGuard
	// Audit, when set, receives the cross-tenant attempts: blocked
	// statements, rejected contexts, RLS violations, failed logins.
	Audit Auditor
	// Tenants, when set, is the tenant registry: it admits logins and
	// gives each tenant's settings, applied from its next transaction.
	// Without it every tenant a valid token names is served.
	Tenants TenantRegistry
	// TenantLabels bounds the tenant label of the metrics (Collector): -1
	// labels every tenant, 0 none (one series, TenantAll), N the N tenants
	// with the most transactions (the rest are TenantOther).
	TenantLabels int
	// SlowQueries, when set, is offered the text of every statement whose
	// backend time reached SlowQueryThreshold, to explain in the background
	// (policies.Sampler). Offer must not block.
	SlowQueries        SlowQuerySink
	SlowQueryThreshold time.Duration
	// FlagsSetting is where a tenant's feature flags are set, as JSON,
	// for each of its transactions when Tenants is set
	// (DefaultFlagsSetting when empty).
	FlagsSetting string
}

// SetWith is how the per-transaction context is set.
type SetWith string

// The ways to set the per-transaction context.
const (
	SetWithLocal  SetWith = "set_local"
	SetWithConfig SetWith = "set_config"
	SetWithAuto   SetWith = "auto"
)

var settingPattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$`)

// ValidSetting reports whether name is a valid custom setting name
// (two identifiers joined by a dot) that can be spliced into SET unquoted.
func ValidSetting(name string) bool { return settingPattern.MatchString(name) }

// Option configures a Server.
type Option func(*Server)

// WithLogger sets the logger; the default discards.
func WithLogger(l zerolog.Logger) Option { return func(s *Server) { s.log = l } }

// Server accepts client connections and runs their sessions. Close stops it;
// it is safe for concurrent use.
type Server struct {
	cfg    Config
	auth   Authenticator
	pools  *poolmgr.Manager[*backendConn]
	dialer *backendDialer
	log    zerolog.Logger

	params sync.Map // backend database name -> map[string]string ParameterStatus

	mu struct {
		sync.Mutex
		listeners map[net.Listener]struct{}
		sessions  map[*session]struct{}
		cancel    map[uint32]*session // by the process ID pgtenant issued
		perTenant map[string]int      // admitted sessions by tenant
		closed    bool
	}
	wg sync.WaitGroup // one per session goroutine

	cancels struct{ forwarded, idle, rejected atomic.Int64 }
	metrics *metrics

	// poolMu orders changes of the pools' configuration: the file's (on
	// SIGHUP) and the registry's overrides.
	poolMu struct {
		sync.Mutex
		config   poolmgr.Config
		registry map[string]poolmgr.Override
	}
}

// New builds a Server. It does not listen; call Serve.
func New(cfg Config, authn Authenticator, opts ...Option) (*Server, error) {
	if cfg.Backend == nil {
		return nil, errors.New("proxy: Config.Backend is required")
	}
	if !ValidSetting(cfg.Setting) {
		return nil, errors.New("proxy: invalid tenancy setting name " + cfg.Setting)
	}
	if cfg.Signer != nil && !ValidSetting(cfg.TokenSetting) {
		return nil, errors.New("proxy: invalid context token setting name " + cfg.TokenSetting)
	}
	if cfg.LoginTimeout <= 0 {
		cfg.LoginTimeout = DefaultLoginTimeout
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = DefaultMaxMessageSize
	}
	if cfg.MaxClientConns <= 0 {
		cfg.MaxClientConns = DefaultMaxClientConns
	}
	if cfg.MaxBackendStatements <= 0 {
		cfg.MaxBackendStatements = DefaultMaxBackendStatements
	}
	s := &Server{cfg: cfg, auth: authn, log: zerolog.Nop(), metrics: newMetrics(cfg.TenantLabels)}
	for _, o := range opts {
		o(s)
	}
	s.mu.listeners = map[net.Listener]struct{}{}
	s.mu.sessions = map[*session]struct{}{}
	s.mu.cancel = map[uint32]*session{}
	s.mu.perTenant = map[string]int{}
	setWith := cfg.SetWith
	if cfg.SetConfig {
		setWith = SetWithConfig
	}
	s.dialer = &backendDialer{base: cfg.Backend, setting: cfg.Setting, setWith: setWith,
		signer: cfg.Signer, tokenSetting: cfg.TokenSetting, tenants: cfg.Tenants, log: s.log}
	if cfg.Tenants != nil {
		s.dialer.flagsSetting = cond(cfg.FlagsSetting == "", DefaultFlagsSetting, cfg.FlagsSetting)
		if !ValidSetting(s.dialer.flagsSetting) {
			return nil, errors.New("proxy: invalid flags setting name " + cfg.FlagsSetting)
		}
	}
	s.pools = poolmgr.New[*backendConn](cfg.Pool, s.dialer.dial)
	s.poolMu.config = cfg.Pool
	return s, nil
}

// Pools exposes the pool manager, for stats and live overrides.
func (s *Server) Pools() *poolmgr.Manager[*backendConn] { return s.pools }

// ErrServerClosed is returned by Serve after Close or Shutdown.
var ErrServerClosed = errors.New("proxy: server closed")

// Serve accepts connections on ln until the server is closed. It closes ln.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.mu.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.mu.listeners, ln)
		s.mu.Unlock()
		ln.Close()
	}()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.mu.closed
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(delay*2, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		sess := newSession(s, c)
		if !s.track(sess) {
			c.Close()
			return ErrServerClosed
		}
		go func() {
			defer s.wg.Done()
			defer s.untrack(sess)
			sess.run()
		}()
	}
}

func (s *Server) track(sess *session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return false
	}
	s.mu.sessions[sess] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) untrack(sess *session) {
	s.mu.Lock()
	delete(s.mu.sessions, sess)
	if sess.cancelPID != 0 {
		delete(s.mu.cancel, sess.cancelPID)
	}
	if sess.org != "" {
		if s.mu.perTenant[sess.org]--; s.mu.perTenant[sess.org] <= 0 {
			delete(s.mu.perTenant, sess.org)
		}
	}
	s.mu.Unlock()
}

func (s *Server) clientCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.mu.sessions)
}

// registerCancelKey issues a fresh BackendKeyData key for sess: a random
// process ID, unique among live sessions, and a random secret.
func (s *Server) registerCancelKey(sess *session) (pid uint32, secret [4]byte) {
	var b [4]byte
	_, _ = rand.Read(secret[:])
	sess.cancelSecret = secret
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		_, _ = rand.Read(b[:])
		pid = binary.BigEndian.Uint32(b[:]) & 0x7fffffff // positive int32, as clients expect
		if pid == 0 || s.mu.cancel[pid] != nil {
			continue
		}
		s.mu.cancel[pid] = sess
		sess.cancelPID = pid
		return pid, secret
	}
}

// cancel forwards a client's CancelRequest to the backend currently serving
// the session that owns the key, if any. The secret is compared in constant
// time. Unknown keys and wrong secrets are ignored silently, as PostgreSQL
// does.
func (s *Server) cancel(pid uint32, secret []byte) {
	s.mu.Lock()
	sess := s.mu.cancel[pid]
	s.mu.Unlock()
	if sess == nil || subtle.ConstantTimeCompare(secret, sess.cancelSecret[:]) != 1 {
		s.cancels.rejected.Add(1)
		s.log.Warn().Uint32("pid", pid).Str("reason", "unknown_cancel_key").Msg("cancel request with an unknown key ignored")
		return
	}
	if sess.cancelBackend() {
		s.cancels.forwarded.Add(1)
	} else {
		s.cancels.idle.Add(1)
	}
}

// CancelStats counts client cancel requests since the server started.
type CancelStats struct {
	// Forwarded reached the backend running the client's query.
	Forwarded int64
	// Idle named a session that was running nothing: ignored, as PostgreSQL does.
	Idle int64
	// Rejected carried a key pgtenant never issued or a wrong secret: guessing
	// at other sessions' keys shows here.
	Rejected int64
}

// CancelStats returns a snapshot of the cancel counters.
func (s *Server) CancelStats() CancelStats {
	return CancelStats{Forwarded: s.cancels.forwarded.Load(), Idle: s.cancels.idle.Load(), Rejected: s.cancels.rejected.Load()}
}

// Shutdown stops accepting, ends idle sessions with 57P01 at once and busy
// ones when their transaction ends, and waits for all sessions until ctx is
// done; then it closes the rest. It closes the pools last.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.mu.closed = true
	for ln := range s.mu.listeners {
		ln.Close()
	}
	sessions := make([]*session, 0, len(s.mu.sessions))
	for sess := range s.mu.sessions {
		sessions = append(sessions, sess)
	}
	s.mu.Unlock()
	for _, sess := range sessions {
		sess.shutdown()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		s.mu.Lock()
		for sess := range s.mu.sessions {
			sess.cancel() // a pool wait, if any
			sess.conn.Close()
		}
		s.mu.Unlock()
		<-done
	}
	s.pools.Close()
	return err
}

// Close shuts down immediately: every session is closed with 57P01.
func (s *Server) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = s.Shutdown(ctx)
	return nil
}
