package proxy

import (
	"context"
	"strconv"
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
	refreshPrepared []byte // reused buffer for a token refresh
}

// detectCitus reports whether the database runs Citus.
func detectCitus(ctx context.Context, pc *pgconn.PgConn) (bool, error) {
	res, err := pc.Exec(ctx, "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'citus')").ReadAll()
	if err != nil {
		return false, err
	}
	return string(res[0].Rows[0][0]) == "t", nil
}

// prepareToken reads the connection's identity (the global pid on Citus,
// where worker nodes verify the token against the coordinator's backend,
// pg_backend_pid() elsewhere), signs its first token and prepares the
// statement that sets it. bctx.citus is known.
func (d *backendDialer) prepareToken(ctx context.Context, pc *pgconn.PgConn, bctx *backendContext) error {
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
	if _, err = pc.Prepare(ctx, ctxTokenStmt, d.tokenSQL(bctx), nil); err != nil || bctx.citus {
		return err
	}
	_, err = pc.Prepare(ctx, ctxTokenBlockStmt, d.tokenBlockSQL(bctx), nil)
	return err
}

// tokenSQL sets bctx's token for the current transaction. Outside Citus it
// is set_config whatever tenancy.set_with says: SET LOCAL outside a
// transaction block makes PostgreSQL send a WARNING, flushed on its own,
// which costs a wake-up of the proxy per transaction; one is enough.
func (d *backendDialer) tokenSQL(bctx *backendContext) string {
	if bctx.citus {
		return d.tokenBlockSQL(bctx)
	}
	return "SELECT pg_catalog.set_config('" + d.tokenSetting + "', '" + bctx.token + "', true)"
}

// tokenBlockSQL sets bctx's token with SET LOCAL, for transactions that
// start with BEGIN (see backendConn.injectBlock).
func (d *backendDialer) tokenBlockSQL(bctx *backendContext) string {
	return "SET LOCAL " + d.tokenSetting + " TO '" + bctx.token + "'"
}

// sign gives bctx a new token.
func (d *backendDialer) sign(bctx *backendContext, now time.Time) {
	bctx.token, bctx.expires = d.signer.Sign(bctx.org, bctx.identity, now)
	bctx.refreshAt = now.Add(bctx.expires.Sub(now) / 2)
}

// tokenRefresh returns, when b's token is past half its life, the Close and
// Parse that re-prepare the token statement with a new one; they go ahead of
// the next injectLocal, and their replies are swallowed with it. It returns
// nil otherwise.
func (d *backendDialer) tokenRefresh(b *backendConn, now time.Time) []byte {
	bctx := b.ctx
	if d.signer == nil || now.Before(bctx.refreshAt) {
		return nil
	}
	d.sign(bctx, now)
	bctx.refreshPrepared = encodeInto(bctx.refreshPrepared[:0],
		&pgproto3.Close{ObjectType: 'S', Name: ctxTokenStmt},
		&pgproto3.Parse{Name: ctxTokenStmt, Query: d.tokenSQL(bctx)},
	)
	if !bctx.citus {
		bctx.refreshPrepared = encodeInto(bctx.refreshPrepared,
			&pgproto3.Close{ObjectType: 'S', Name: ctxTokenBlockStmt},
			&pgproto3.Parse{Name: ctxTokenBlockStmt, Query: d.tokenBlockSQL(bctx)},
		)
	}
	return bctx.refreshPrepared
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
