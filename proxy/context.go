package proxy

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// The signed tenant context.
//
// A tenant session can change any plain custom setting, so with a signer
// configured every transaction also carries a short-lived token, signed over
// the org, the backend connection's identity and an expiry, in the token
// setting; tenancy.current_org() in the database verifies it (see the
// policies package). A token stays valid for many transactions of one
// connection: it is prepared once as a statement, like the org, and
// re-prepared, ahead of the next transaction's context, once half its life
// has passed.

// ContextSigner signs the context token for org on the backend connection
// whose identity (pg_backend_pid(), or citus_backend_gpid() on Citus) is
// given. policies.Signer implements it. It must be safe for concurrent use.
type ContextSigner interface {
	Sign(org string, identity int64, now time.Time) (token string, expires time.Time)
}

// backendContext is the tenant context of one backend connection.
type backendContext struct {
	org    string
	orgLit string // org as a SQL literal
	// citus records that the database runs Citus, where only SET LOCAL
	// reaches the worker nodes (detected with a signer or SetWithAuto);
	// setConfig that the org is set with set_config rather than SET LOCAL.
	citus, setConfig bool
	// With a signer: the connection's identity and its current token.
	identity        int64
	token           string
	refreshAt       time.Time // half the token's life
	expires         time.Time
	refreshPrepared []byte // reused buffer for a refresh
	// settings are the tenant settings the statements were prepared with.
	settings *TenantSettings
}

// detectCitus reports whether the database runs Citus.
func detectCitus(ctx context.Context, pc *pgconn.PgConn) (bool, error) {
	res, err := pc.Exec(ctx, "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'citus')").ReadAll()
	if err != nil {
		return false, err
	}
	return string(res[0].Rows[0][0]) == "t", nil
}

// signFirst reads the connection's identity (the global pid on Citus,
// where worker nodes verify the token against the coordinator's backend,
// pg_backend_pid() elsewhere) and signs its first token. bctx.citus is
// known.
func (d *backendDialer) signFirst(ctx context.Context, pc *pgconn.PgConn, bctx *backendContext) error {
	identity := "SELECT pg_catalog.pg_backend_pid()"
	if bctx.citus {
		identity = "SELECT citus_backend_gpid()"
	}
	res, err := pc.Exec(ctx, identity).ReadAll()
	if err != nil {
		return err
	}
	id, err := strconv.ParseInt(string(res[0].Rows[0][0]), 10, 64)
	if err != nil {
		return err
	}
	bctx.identity = id
	d.sign(bctx, time.Now())
	return nil
}

// ctxStmt is a statement prepared on a backend connection to set its
// context.
type ctxStmt struct{ name, sql string }

// contextStatements returns the statements that set bctx's context for one
// transaction: local for an ordinary one, block for one that may start with
// BEGIN, and every distinct statement to prepare.
//
// Outside Citus the org, the token and the tenant's settings are one
// SELECT of set_config calls: one Bind and Execute per transaction (with
// set_local, a SET LOCAL of the org and that SELECT of the rest). Where
// transaction modes may follow they are SET LOCALs, one statement each,
// except read-only mode: SET TRANSACTION READ WRITE after a SET LOCAL would
// undo it, and after a query PostgreSQL refuses it, so read-only tenants
// always get the set_config form (and with it no SET TRANSACTION of their
// own).
func (d *backendDialer) contextStatements(bctx *backendContext) (local, block, all []ctxStmt) {
	var calls []string // set_config calls of the tenant's settings
	var blockSets []ctxStmt
	if ts := bctx.settings; ts != nil {
		if ts.StatementTimeout > 0 {
			ms := "'" + strconv.FormatInt(ts.StatementTimeout.Milliseconds(), 10) + "ms'"
			calls = append(calls, setConfigCall("statement_timeout", ms))
			blockSets = append(blockSets, ctxStmt{ctxTimeoutStmt, "SET LOCAL statement_timeout TO " + ms})
		}
		if d.flagsSetting != "" {
			flags := escapeLiteral(cond(ts.Flags == "", "{}", ts.Flags))
			calls = append(calls, setConfigCall(d.flagsSetting, flags))
			blockSets = append(blockSets, ctxStmt{ctxFlagsStmt, "SET LOCAL " + d.flagsSetting + " TO " + flags})
		}
		if ts.ReadOnly {
			readOnly := setConfigCall("transaction_read_only", "'on'")
			calls = append(calls, readOnly)
			blockSets = append(blockSets, ctxStmt{ctxReadOnlyStmt, "SELECT " + readOnly})
		}
	}
	var selected []string // set_config calls of local's SELECT, org and token first
	orgSet := ctxStmt{ctxLocalStmt, "SET LOCAL " + d.setting + " TO " + bctx.orgLit}
	if bctx.setConfig {
		selected = append(selected, setConfigCall(d.setting, bctx.orgLit))
		orgSet.name = ctxBlockStmt
	} else {
		local = append(local, orgSet)
	}
	block = append(block, orgSet)
	if d.signer != nil {
		lit := "'" + bctx.token + "'"
		tokenSet := ctxStmt{ctxTokenStmt, "SET LOCAL " + d.tokenSetting + " TO " + lit}
		if bctx.citus {
			local = append(local, tokenSet)
		} else {
			// SET LOCAL outside a transaction block makes PostgreSQL send a
			// WARNING, flushed on its own, which costs a wake-up of the
			// proxy per transaction: outside Citus the token is set_config
			// whatever tenancy.set_with says.
			selected = append(selected, setConfigCall(d.tokenSetting, lit))
			tokenSet.name = ctxTokenBlockStmt
		}
		block = append(block, tokenSet)
	}
	if selected = append(selected, calls...); len(selected) > 0 {
		name := cond(bctx.setConfig, ctxLocalStmt, ctxTenantStmt)
		local = append(local, ctxStmt{name, "SELECT " + strings.Join(selected, ", ")})
	}
	block = append(block, blockSets...)
	all = append(all, local...)
	for _, st := range block {
		if !slices.Contains(all, st) {
			all = append(all, st)
		}
	}
	return local, block, all
}

func setConfigCall(setting, lit string) string {
	return "pg_catalog.set_config('" + setting + "', " + lit + ", true)"
}

// escapeLiteral quotes s as an escape string literal, which reads the same
// whatever standard_conforming_strings a client set.
func escapeLiteral(s string) string {
	return "E'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(s) + "'"
}

// setContextStatements makes b execute the given statements from its next
// transaction on. They must be prepared on it.
func (b *backendConn) setContextStatements(local, block, all []ctxStmt) {
	b.injectLocal, b.injectBlock = b.injectLocal[:0], b.injectBlock[:0]
	for _, st := range local {
		b.injectLocal = execute(b.injectLocal, st.name)
	}
	for _, st := range block {
		b.injectBlock = execute(b.injectBlock, st.name)
	}
	b.localStmts, b.blockStmts, b.ctxStmts = len(local), len(block), all
}

// sign gives bctx a new token.
func (d *backendDialer) sign(bctx *backendContext, now time.Time) {
	bctx.token, bctx.expires = d.signer.Sign(bctx.org, bctx.identity, now)
	bctx.refreshAt = now.Add(bctx.expires.Sub(now) / 2)
}

// refresh returns, when b's token is past half its life or its tenant's
// settings changed, the Close and Parse messages that re-prepare its
// context statements; they go ahead of the next injected context, and
// their replies are swallowed with it. It returns nil otherwise.
func (d *backendDialer) refresh(b *backendConn, now time.Time, settings *TenantSettings) []byte {
	bctx := b.ctx
	expiring := d.signer != nil && !now.Before(bctx.refreshAt)
	if !expiring && settings == bctx.settings {
		return nil
	}
	if expiring {
		d.sign(bctx, now)
	}
	bctx.settings = settings
	buf := bctx.refreshPrepared[:0]
	for _, st := range b.ctxStmts {
		buf = encodeInto(buf, &pgproto3.Close{ObjectType: 'S', Name: st.name})
	}
	b.setContextStatements(d.contextStatements(bctx))
	for _, st := range b.ctxStmts {
		buf = encodeInto(buf, &pgproto3.Parse{Name: st.name, Query: st.sql})
	}
	bctx.refreshPrepared = buf
	return buf
}

// sessionContextQuery sets the context at session level, for statements
// that must run in their own transaction; resetQuery undoes it.
func (d *backendDialer) sessionContextQuery(b *backendConn, now time.Time) []byte {
	sql := "SET " + d.setting + " TO " + b.ctx.orgLit
	if d.signer != nil {
		token, _ := d.signer.Sign(b.ctx.org, b.ctx.identity, now)
		sql += "; SET " + d.tokenSetting + " TO '" + token + "'"
	}
	return encodeAll(&pgproto3.Query{String: sql})
}

func encodeInto(buf []byte, msgs ...pgproto3.FrontendMessage) []byte {
	for _, m := range msgs {
		var err error
		if buf, err = m.Encode(buf); err != nil {
			panic(err) // fixed messages built by the proxy itself
		}
	}
	return buf
}
