package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"reflect"
	"runtime"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/pgtenant/pgtenant/admin"
	"github.com/pgtenant/pgtenant/audit"
	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/internal/tlsreload"
	"github.com/pgtenant/pgtenant/policies"
	"github.com/pgtenant/pgtenant/proxy"
)

// shutdownGrace is how long running transactions may take to finish after
// SIGTERM before their sessions are closed.
const shutdownGrace = 30 * time.Second

// auditCloseTimeout bounds how long shutdown waits for the audit log to
// write or spool its queue.
const auditCloseTimeout = 5 * time.Second

func newServeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the proxy",
		Args:  cobra.NoArgs,
	}
	file := addConfigFlags(cmd, true)
	strict := cmd.Flags().Bool("strict", false, "refuse to start when the database hardening checks find an error (tenancy.hardening=strict)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := loadConfig(cmd, *file, true)
		if err != nil {
			return err
		}
		if *strict {
			cfg.Tenancy.Hardening = config.HardeningStrict
		}
		log := newLogger(cfg.Log)
		reload := func() (config.Config, error) { return loadConfig(cmd, *file, true) }
		return run(cmd.Context(), cfg, log, nil, reload)
	}
	return cmd
}

func newLogger(c config.Log) zerolog.Logger {
	lvl, err := zerolog.ParseLevel(c.Level)
	if err != nil {
		lvl = zerolog.InfoLevel
	}
	var l zerolog.Logger
	if c.Format == "console" {
		l = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.RFC3339})
	} else {
		l = zerolog.New(os.Stderr)
	}
	return l.Level(lvl).With().Timestamp().Logger()
}

// listening reports the addresses the server listens on once it does.
type listening struct{ Client, Admin string }

// run serves until ctx is done, then shuts down gracefully. When started is
// not nil it receives the listen addresses once both listeners are up. On
// SIGHUP it reloads the TLS certificate and, when reload is not nil, applies
// the pool settings and guard rules of the configuration reload returns.
func run(ctx context.Context, cfg config.Config, log zerolog.Logger, started chan<- listening, reload func() (config.Config, error)) error {
	orgRe, err := cfg.OrgRegexp()
	if err != nil {
		return err
	}
	verifier, err := auth.NewVerifier(cfg.Auth.JWT, orgRe)
	if err != nil {
		return err
	}
	backend, err := cfg.BackendConfig()
	if err != nil {
		return err
	}
	var tlsCfg *tls.Config
	var certs *tlsreload.Reloader
	if cfg.TLS.CertFile != "" {
		if certs, err = tlsreload.New(cfg.TLS.CertFile, cfg.TLS.KeyFile); err != nil {
			return err
		}
		tlsCfg = certs.Config()
	}
	if err := checkHardening(ctx, cfg, backend, log); err != nil {
		return err
	}
	signer, err := contextSigner(cfg, log)
	if err != nil {
		return err
	}
	tenantLabels, err := config.ParseTenantLabels(cfg.Metrics.TenantLabels)
	if err != nil {
		return err
	}
	pcfg := proxy.Config{
		Backend:              backend,
		Databases:            cfg.Databases,
		Setting:              cfg.Tenancy.Setting,
		SetWith:              proxy.SetWith(cfg.Tenancy.SetWith),
		TLS:                  tlsCfg,
		RequireTLS:           cfg.RequireTLS(),
		LoginTimeout:         cfg.Client.LoginTimeout,
		MaxMessageSize:       cfg.Client.MaxMessageSize,
		MaxClientConns:       cfg.Client.MaxConnections,
		Pool:                 cfg.Pool,
		ExpireSessions:       !cfg.Auth.AllowExpiredSessions,
		MaxBackendStatements: cfg.Backend.MaxPreparedStatements,
		TokenLeeway:          cfg.Auth.JWT.Leeway,
		TenantLabels:         tenantLabels,
	}
	if signer != nil {
		pcfg.Signer, pcfg.TokenSetting = signer, policies.TokenSetting
	}
	// One registry for everything pgtenant exports, served at /metrics
	// when the admin listener runs.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "pgtenant_build_info",
			Help:        "Always 1; the labels say which pgtenant runs.",
			ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
		}, func() float64 { return 1 }))
	var guard *guards
	if cfg.GuardEnabled() {
		if guard, err = newGuards(cfg); err != nil {
			return err
		}
		pcfg.Guard = guard
		reg.MustRegister(guard)
	}
	auditLog, err := audit.New(cfg.Audit, log, reg)
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), auditCloseTimeout)
		defer cancel()
		if err := auditLog.Close(cctx); err != nil {
			log.Warn().Err(err).Msg("audit log: not every event was written or spooled at shutdown")
		}
	}()
	pcfg.Audit = auditLog
	if cfg.Plans.SampleSlow {
		sampler := newPlansSampler(cfg, backend, signer, log, reg)
		defer sampler.Close()
		pcfg.SlowQueries, pcfg.SlowQueryThreshold = sampler, cfg.Plans.SlowThreshold
	}
	var registry *tenantRegistry
	if cfg.RegistryEnabled() {
		if registry, err = openTenantRegistry(ctx, cfg, log, reg); err != nil {
			return err
		}
		defer registry.close()
		pcfg.Tenants, pcfg.FlagsSetting = registry, cfg.Tenants.FlagsSetting
	}
	srv, err := proxy.New(pcfg, verifier, proxy.WithLogger(log))
	if err != nil {
		return err
	}
	if registry != nil {
		registry.start(srv)
	}
	reg.MustRegister(srv.Collector())
	stopHUP := onSIGHUP(func() { reloadLive(cfg, reload, certs, guard, srv, log) })
	defer stopHUP()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		srv.Close()
		return fmt.Errorf("listen: %w", err)
	}
	addrs := listening{Client: ln.Addr().String()}

	var httpSrv *http.Server
	httpErr := make(chan error, 1)
	if cfg.AdminEnabled() {
		aln, err := net.Listen("tcp", cfg.Admin.Listen)
		if err != nil {
			ln.Close()
			srv.Close()
			return fmt.Errorf("admin.listen: %w", err)
		}
		addrs.Admin = aln.Addr().String()
		stopProbe := probeBackend(backend, reg)
		defer stopProbe()
		mux := admin.Handler(reg, readiness(backend, registry))
		if cfg.Admin.Pprof {
			admin.RegisterPprof(mux)
		}
		if registry != nil {
			api, closeAPI, err := newAdminAPI(ctx, cfg, orgRe, srv, log)
			if err != nil {
				aln.Close()
				ln.Close()
				srv.Close()
				return err
			}
			defer closeAPI()
			api.Register(mux)
			admin.RegisterUI(mux, admin.UIConfig{LoginURL: cfg.Admin.LoginURL})
		}
		httpSrv = &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 10 * time.Second,
		}
		go func() { httpErr <- httpSrv.Serve(aln) }()
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info().Str("listen", addrs.Client).Str("admin_listen", addrs.Admin).Str("version", version).Msg("pgtenant is serving")
	if started != nil {
		started <- addrs
	}

	select {
	case <-ctx.Done():
	case err = <-serveErr:
	case err = <-httpErr:
	}
	log.Info().Msg("shutting down: waiting for running transactions")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if httpSrv != nil {
		_ = httpSrv.Shutdown(sctx)
	}
	if serr := srv.Shutdown(sctx); serr != nil {
		log.Warn().Err(serr).Msg("shutdown deadline passed; closed the remaining sessions")
	}
	if errors.Is(err, proxy.ErrServerClosed) || errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// readiness reports ready when PostgreSQL accepts a connection as the
// application role and, with a registry, the registry was loaded recently.
func readiness(backend *pgconn.Config, registry *tenantRegistry) admin.ReadyFunc {
	return func(ctx context.Context) error {
		if registry != nil {
			if err := registry.fresh(); err != nil {
				return err
			}
		}
		c, err := pgconn.ConnectConfig(ctx, backend.Copy())
		if err != nil {
			return errors.New("backend unreachable")
		}
		return c.Close(ctx)
	}
}

// backendProbeInterval is how often pgtenant_backend_up is measured.
const backendProbeInterval = 10 * time.Second

// probeBackend connects to PostgreSQL as the application role every
// backendProbeInterval and exports the result as pgtenant_backend_up. The
// returned func stops it.
func probeBackend(backend *pgconn.Config, reg prometheus.Registerer) func() {
	up := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "pgtenant_backend_up",
		Help: "1 when pgtenant's last connection attempt to PostgreSQL as the application role succeeded, 0 otherwise.",
	})
	reg.MustRegister(up)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(backendProbeInterval)
		defer tick.Stop()
		for {
			pctx, pcancel := context.WithTimeout(ctx, backendProbeInterval)
			if c, err := pgconn.ConnectConfig(pctx, backend.Copy()); err == nil {
				_ = c.Close(pctx)
				up.Set(1)
			} else if ctx.Err() == nil {
				up.Set(0)
			}
			pcancel()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return func() { cancel(); <-done }
}

// onSIGHUP calls fn for every SIGHUP until the returned func is called.
func onSIGHUP(fn func()) func() {
	hup, stop, done := make(chan os.Signal, 1), make(chan struct{}), make(chan struct{})
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-hup:
				fn()
			}
		}
	}()
	return func() { signal.Stop(hup); close(stop); <-done }
}

// reloadLive applies what can change without dropping a session: the TLS
// certificate (connections keep theirs), and from the reloaded
// configuration the pool settings and the guard rules. The rest of a
// reloaded configuration needs a restart; reloadLive says which keys
// changed and were not applied.
func reloadLive(cfg config.Config, reload func() (config.Config, error), certs *tlsreload.Reloader, guard *guards, srv *proxy.Server, log zerolog.Logger) {
	if certs != nil {
		if err := certs.Reload(); err != nil {
			log.Error().Err(err).Msg("SIGHUP: TLS certificate not reloaded; the previous one stays in use")
		} else {
			log.Info().Msg("SIGHUP: TLS certificate reloaded")
		}
	}
	if reload == nil {
		return
	}
	next, err := reload()
	if err != nil {
		log.Error().Err(err).Msg("SIGHUP: configuration not reloaded; the running one stays in use")
		return
	}
	srv.SetPoolConfig(next.Pool)
	applied := "pool"
	if guard != nil && next.GuardEnabled() {
		if err := guard.reload(next); err != nil {
			log.Error().Err(err).Msg("SIGHUP: guard rules not reloaded")
		} else {
			applied += ", guard"
		}
	}
	ev := log.Info().Str("applied", applied)
	if restart := restartKeys(cfg, next); len(restart) > 0 {
		ev = ev.Strs("need_restart", restart)
	}
	ev.Msg("SIGHUP: configuration reloaded")
}

// restartKeys names the sections that differ between two configurations
// and that only a restart applies.
func restartKeys(old, next config.Config) []string {
	var keys []string
	for _, c := range []struct {
		key     string
		changed bool
	}{
		{"listen", old.Listen != next.Listen},
		{"admin", !reflect.DeepEqual(old.Admin, next.Admin)},
		{"backend", old.Backend != next.Backend},
		{"auth", old.Auth != next.Auth},
		{"tenancy", !reflect.DeepEqual(old.Tenancy, next.Tenancy)},
		{"tenants", old.Tenants != next.Tenants},
		{"audit", old.Audit != next.Audit},
		{"guard.enabled", old.GuardEnabled() != next.GuardEnabled()},
		{"pool.database_modes", !reflect.DeepEqual(old.Pool.DatabaseModes, next.Pool.DatabaseModes)},
	} {
		if c.changed {
			keys = append(keys, c.key)
		}
	}
	return keys
}
