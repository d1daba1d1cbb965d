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
		return run(cmd.Context(), cfg, log, nil)
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
// not nil it receives the listen addresses once both listeners are up.
func run(ctx context.Context, cfg config.Config, log zerolog.Logger, started chan<- listening) error {
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
	if cfg.TLS.CertFile != "" {
		certs, err := tlsreload.New(cfg.TLS.CertFile, cfg.TLS.KeyFile)
		if err != nil {
			return err
		}
		tlsCfg = certs.Config()
		// SIGHUP reloads the certificate and key; connections keep theirs.
		hup, stop := make(chan os.Signal, 1), make(chan struct{})
		signal.Notify(hup, syscall.SIGHUP)
		defer func() { signal.Stop(hup); close(stop) }()
		go func() {
			for {
				select {
				case <-stop:
					return
				case <-hup:
					if err := certs.Reload(); err != nil {
						log.Error().Err(err).Msg("SIGHUP: TLS certificate not reloaded; the previous one stays in use")
					} else {
						log.Info().Msg("SIGHUP: TLS certificate reloaded")
					}
				}
			}
		}()
	}
	if err := checkHardening(ctx, cfg, backend, log); err != nil {
		return err
	}
	signer, err := contextSigner(cfg, log)
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
	}
	if signer != nil {
		pcfg.Signer, pcfg.TokenSetting = signer, policies.TokenSetting
	}
	if cfg.GuardEnabled() {
		g, err := newGuards(cfg)
		if err != nil {
			return err
		}
		pcfg.Guard = g
	}
	// One registry for everything pgtenant exports, served at /metrics
	// when the admin listener runs.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector())
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
	srv, err := proxy.New(pcfg, verifier, proxy.WithLogger(log))
	if err != nil {
		return err
	}
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
		for _, c := range []struct {
			result string
			value  func(proxy.CancelStats) int64
		}{
			{"forwarded", func(c proxy.CancelStats) int64 { return c.Forwarded }},
			{"idle", func(c proxy.CancelStats) int64 { return c.Idle }},
			{"rejected", func(c proxy.CancelStats) int64 { return c.Rejected }},
		} {
			reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name:        "pgtenant_cancel_requests_total",
				Help:        "Client cancel requests: forwarded to the backend running the query, idle (nothing running), rejected (unknown key or wrong secret).",
				ConstLabels: prometheus.Labels{"result": c.result},
			}, func() float64 { return float64(c.value(srv.CancelStats())) }))
		}
		httpSrv = &http.Server{
			Handler:           admin.Handler(reg, readiness(backend)),
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
// application role.
func readiness(backend *pgconn.Config) admin.ReadyFunc {
	return func(ctx context.Context) error {
		c, err := pgconn.ConnectConfig(ctx, backend.Copy())
		if err != nil {
			return errors.New("backend unreachable")
		}
		return c.Close(ctx)
	}
}
