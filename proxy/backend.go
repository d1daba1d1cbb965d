package proxy

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/rs/zerolog"

	"github.com/pgtenant/pgtenant/pgerr"
	"github.com/pgtenant/pgtenant/poolmgr"
)

// Names of the statements pgtenant prepares on every backend connection. A
// backend serves exactly one tenant, so the org is part of the statement text
// and each transaction only needs a Bind and an Execute.
const (
	ctxLocalStmt = "pgtenant_ctx_local"
	ctxTokenStmt = "pgtenant_ctx_token"
	// The same settings as SET LOCAL, for a transaction that starts with
	// BEGIN: prepared only when the statements above are set_config calls.
	ctxBlockStmt      = "pgtenant_ctx_block"
	ctxTokenBlockStmt = "pgtenant_ctx_token_block"
	// The tenant's settings (see contextStatements): a SELECT of them all,
	// when the org is set with SET LOCAL, and each on its own ahead of a
	// BEGIN.
	ctxTenantStmt   = "pgtenant_ctx_tenant"
	ctxTimeoutStmt  = "pgtenant_ctx_timeout"
	ctxFlagsStmt    = "pgtenant_ctx_flags"
	ctxReadOnlyStmt = "pgtenant_ctx_read_only"
)

// Buffer sizes for backend connections. The reader is larger because result
// sets flow that way; frames that do not fit are streamed, not buffered.
const (
	backendReadBuffer  = 32 << 10
	backendWriteBuffer = 16 << 10
)

// backendConn is one PostgreSQL connection of a tenant pool, already
// authenticated and carrying that tenant's prepared context statements. It
// is used by one session at a time (the lease holder); the pool owns it and
// calls Close, which is idempotent.
type backendConn struct {
	conn   net.Conn
	r      *bufio.Reader
	w      *bufio.Writer
	pid    uint32
	secret []byte
	params map[string]string

	// injectLocal is Bind+Execute of the prepared SET LOCAL of the org and,
	// with a signer, of the signed context token: sent unsynced ahead of
	// the first message of a transaction. localStmts is how many
	// statements it executes.
	injectLocal []byte
	localStmts  int
	// injectBlock sets the same context with SET LOCAL, which takes no
	// snapshot: ahead of a pipelined BEGIN with transaction modes, and of a
	// SET TRANSACTION after a BEGIN. A set_config is a query, which takes
	// the transaction's snapshot, after which PostgreSQL refuses the modes
	// (25001); outside a transaction block PostgreSQL logs a WARNING for
	// each SET LOCAL. blockStmts is how many statements it executes.
	injectBlock []byte
	blockStmts  int
	// ctxStmts are the prepared statements both use (see contextStatements).
	ctxStmts []ctxStmt
	// ctx is the tenant context of the connection: the org, and the signed
	// token's state (see context.go).
	ctx *backendContext
	// resetQuery undoes the session-level context before the connection is
	// reused.
	resetQuery []byte
	// sessionContext records that a session-level context was set since the
	// last reset.
	sessionContext bool
	// dropped records that a client may have deallocated the context
	// statements: the connection must not be reused.
	dropped bool
	// stmts are the client statements prepared on this connection.
	stmts backendStmts
	// params are the session settings clients set on this connection
	// (lower-case names); others are at the connection's defaults. paramsOf
	// and paramsVersion say which session's settings they are, if current.
	sessionParams map[string]string
	paramsOf      *session
	paramsVersion uint64
	// releasedAt is when the connection last went back to the pool (zero
	// for a new one); see aliveCheckAfter.
	releasedAt time.Time

	closeOnce sync.Once
}

// Close closes the socket. Safe to call more than once and concurrently.
func (b *backendConn) Close() error {
	var err error
	b.closeOnce.Do(func() { err = b.conn.Close() })
	return err
}

// cancel asks PostgreSQL to cancel whatever this backend is running, over a
// new connection as the protocol requires. Errors are ignored: a cancel is a
// best-effort request in PostgreSQL too.
func (b *backendConn) cancel(timeout time.Duration) {
	addr := b.conn.RemoteAddr()
	c, err := net.DialTimeout(addr.Network(), addr.String(), timeout)
	if err != nil {
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	msg, err := (&pgproto3.CancelRequest{ProcessID: b.pid, SecretKey: b.secret}).Encode(nil)
	if err != nil {
		return
	}
	if _, err := c.Write(msg); err != nil {
		return
	}
	var one [1]byte
	_, _ = c.Read(one[:]) // PostgreSQL closes the connection when done
}

// backendDialer opens backend connections for tenant pools.
type backendDialer struct {
	base    *pgconn.Config
	setting string
	// setWith says how the per-transaction context is set (see
	// Config.SetWith).
	setWith SetWith
	// signer, when set, signs the context token each transaction carries
	// in tokenSetting.
	signer       ContextSigner
	tokenSetting string
	// tenants, when set, gives each tenant's settings, applied with the
	// context; flagsSetting is where its feature flags go.
	tenants      TenantRegistry
	flagsSetting string
	log          zerolog.Logger
	logCheck     sync.Once
}

// checkServerLog warns the operator, once, when PostgreSQL would write the
// WARNING that SET LOCAL raises outside a transaction block to its log: for
// every transaction that starts with a pipelined BEGIN with transaction modes
// (see injectBlock), and with set_local for every transaction.
func (d *backendDialer) checkServerLog(ctx context.Context, pc *pgconn.PgConn, bctx *backendContext) {
	every := "every transaction that starts with BEGIN ISOLATION LEVEL, READ WRITE, READ ONLY or DEFERRABLE in a pipeline (extended protocol, with more statements before the Sync)"
	if !bctx.setConfig {
		every = "every transaction"
	}
	d.logCheck.Do(func() {
		res, err := pc.Exec(ctx, "SELECT current_setting('log_min_messages')").ReadAll()
		if err != nil || len(res) == 0 || len(res[0].Rows) == 0 {
			return
		}
		switch level := string(res[0].Rows[0][0]); level {
		case "error", "log", "fatal", "panic":
		default:
			d.log.Warn().Str("log_min_messages", level).Str("role", pc.ParameterStatus("session_authorization")).
				Msg("PostgreSQL will log a WARNING \"SET LOCAL can only be used in transaction blocks\" for " + every +
					" (the tenant context is set before the BEGIN, with SET LOCAL so that the transaction modes still apply); " +
					"run ALTER ROLE <this role> SET log_min_messages = error as a superuser")
		}
	})
}

// dial connects to key.Database as the configured application role and
// prepares the tenant's context statements.
func (d *backendDialer) dial(ctx context.Context, key poolmgr.Key) (*backendConn, error) {
	var settings *TenantSettings
	if d.tenants != nil {
		settings = d.tenants.Settings(key.Tenant)
	}
	lit, err := quoteLiteral(key.Tenant)
	if err != nil {
		return nil, err
	}
	cfg := d.base.Copy()
	cfg.Database = key.Database
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "pgtenant"
	}
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, backendConnectError(err)
	}
	ok := false
	defer func() {
		if !ok {
			pc.Close(context.Background())
		}
	}()
	bctx := &backendContext{org: key.Tenant, orgLit: lit}
	if d.setWith == SetWithAuto || d.signer != nil {
		if bctx.citus, err = detectCitus(ctx, pc); err != nil {
			return nil, pgerr.New(pgerr.ConnectionException, "backend_setup", "cannot read the database's extensions").Wrap(err)
		}
	}
	bctx.setConfig = d.setWith == SetWithConfig || d.setWith == SetWithAuto && !bctx.citus
	bctx.settings = settings
	if d.signer != nil {
		if err := d.signFirst(ctx, pc, bctx); err != nil {
			return nil, pgerr.New(pgerr.ConnectionException, "backend_setup", "cannot sign the tenant context for the backend").Wrap(err)
		}
	}
	b := &backendConn{ctx: bctx}
	b.setContextStatements(d.contextStatements(bctx))
	for _, st := range b.ctxStmts {
		if _, err := pc.Prepare(ctx, st.name, st.sql, nil); err != nil {
			return nil, pgerr.New(pgerr.ConnectionException, "backend_setup", "cannot prepare the tenant context on the backend").Wrap(err)
		}
	}
	for name, sql := range map[string]string{setParamStmt: setParamSQL, resetParamStmt: resetParamSQL} {
		if _, err := pc.Prepare(ctx, name, sql, nil); err != nil {
			return nil, pgerr.New(pgerr.ConnectionException, "backend_setup", "cannot prepare the session statements on the backend").Wrap(err)
		}
	}
	d.checkServerLog(ctx, pc, bctx)
	// pgconn may have started its background reader during a slow write;
	// it must be stopped, with nothing buffered, before the socket is ours.
	if err := pc.SyncConn(ctx); err != nil {
		return nil, pgerr.New(pgerr.ConnectionException, "backend_setup", "cannot set up the backend connection").Wrap(err)
	}
	hc, err := pc.Hijack()
	if err != nil {
		return nil, err
	}
	ok = true
	b.conn, b.pid, b.secret, b.params = hc.Conn, hc.PID, hc.SecretKey, hc.ParameterStatuses
	b.r = bufio.NewReaderSize(hc.Conn, backendReadBuffer)
	b.w = bufio.NewWriterSize(hc.Conn, backendWriteBuffer)
	reset := "RESET " + d.setting
	if d.signer != nil {
		reset += "; RESET " + d.tokenSetting
	}
	b.resetQuery = encodeAll(&pgproto3.Query{String: reset})
	return b, nil
}

func encodeAll(msgs ...pgproto3.FrontendMessage) []byte { return encodeInto(nil, msgs...) }

// execute appends an unsynced Bind and Execute of the prepared statement
// stmt to buf.
func execute(buf []byte, stmt string) []byte {
	return encodeInto(buf, &pgproto3.Bind{PreparedStatement: stmt}, &pgproto3.Execute{})
}

func cond[T any](c bool, a, b T) T {
	if c {
		return a
	}
	return b
}

// backendConnectError turns a failed backend connection into what the
// client is told. PostgreSQL's own verdict on the database name is passed on;
// anything about the proxy's credentials or reachability is the operator's
// problem and is reported without details that belong in the proxy's log.
func backendConnectError(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == pgerr.InvalidCatalogName:
			return pgerr.NewFatal(pe.Code, "unknown_database", pe.Message).
				WithHint("Connect to an existing database, or map this name under \"databases\" in the pgtenant config.").Wrap(err)
		case strings.HasPrefix(pe.Code, "28"):
			return pgerr.NewFatal(pgerr.ConnectionException, "backend_auth", "pgtenant cannot log in to PostgreSQL").
				WithHint("The operator should check the role and password in backend.dsn.").Wrap(err)
		case pe.Code == pgerr.TooManyConnections:
			return pgerr.New(pgerr.TooManyConnections, "backend_full", "PostgreSQL has no free connection slots").
				WithHint("Lower pool.max_backend_connections below the server's max_connections.").Wrap(err)
		}
	}
	return err // the pool reports it as a failed connection (08000)
}

// quoteLiteral returns s as a SQL string literal. Tenant ids are validated
// against a strict pattern long before this; refusing the characters that
// matter here keeps the literal safe even if that validation were bypassed.
func quoteLiteral(s string) (string, error) {
	if s == "" || strings.ContainsAny(s, "\\\x00") {
		return "", pgerr.NewFatal(pgerr.InvalidAuthorization, "invalid_org", "the tenant id is not valid")
	}
	return "'" + strings.ReplaceAll(s, "'", "''") + "'", nil
}
