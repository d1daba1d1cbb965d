-- pgtenant's tenancy schema, version 1: the signed tenant context that
-- Row-Level Security policies trust, and the audit table.
--
-- pgtenant policies install runs this file in one transaction, then the
-- files of the later versions (registry.sql), records the version in
-- tenancy.schema_version, stores the context keys and grants the application
-- roles what they need; it refuses, before running anything, a schema newer
-- than itself. Running it again is harmless: every statement is idempotent.
-- Run it as the role that should own the schema, never as an application
-- role.
--
-- Policies compare tenant rows with tenancy.current_org(), which returns the
-- org of the transaction's verified context token (app.tenant_token), NULL
-- when there is none (so a policy matches no row), and raises an error in
-- class PT when the token is forged, replayed, expired or contradicts
-- app.current_org. Everything in the security definer functions is
-- schema-qualified and they run with an empty search_path.

SELECT pg_catalog.set_config('search_path', 'pg_catalog', true);

CREATE SCHEMA IF NOT EXISTS tenancy;
COMMENT ON SCHEMA tenancy IS 'pgtenant: signed tenant context, audit events and the tenant registry; managed by pgtenant policies install';
REVOKE ALL ON SCHEMA tenancy FROM PUBLIC;

-- The version of the schema, written by install after the last file ran.
CREATE TABLE IF NOT EXISTS tenancy.schema_version (
	singleton    boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
	version      integer     NOT NULL,
	installed_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- HMAC-SHA256 keys for context tokens, stored as their pads: inner_key is the
-- key (hashed when longer than 64 bytes, zero-padded to 64) XOR 0x36,
-- outer_key the same XOR 0x5c, so HMAC(key, msg) =
-- sha256(outer_key || sha256(inner_key || msg)). Readable by the owner only.
CREATE TABLE IF NOT EXISTS tenancy.context_keys (
	key_id     text        PRIMARY KEY CHECK (key_id ~ '^[A-Za-z0-9_-]{1,32}$'),
	inner_key  bytea       NOT NULL CHECK (pg_catalog.length(inner_key) = 64),
	outer_key  bytea       NOT NULL CHECK (pg_catalog.length(outer_key) = 64),
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
REVOKE ALL ON tenancy.context_keys FROM PUBLIC;

-- Blocked statements, forged contexts, RLS violations, failed logins:
-- written in batches by pgtenant's audit writer. With the tenant registry,
-- also the organizations' lifecycle (reason tenant_lifecycle), written by
-- package tenants with each change.
CREATE TABLE IF NOT EXISTS tenancy.audit_events (
	id          bigserial   PRIMARY KEY,
	at          timestamptz NOT NULL,
	org         text,
	subject     text,
	token_id    text,
	client_addr text,
	reason      text        NOT NULL,
	rule        text,
	sqlstate    text,
	fingerprint text,
	detail      text,
	instance    text
);
CREATE INDEX IF NOT EXISTS audit_events_at ON tenancy.audit_events (at DESC);
CREATE INDEX IF NOT EXISTS audit_events_org_at ON tenancy.audit_events (org, at DESC);
REVOKE ALL ON tenancy.audit_events FROM PUBLIC;
REVOKE ALL ON SEQUENCE tenancy.audit_events_id_seq FROM PUBLIC;

-- The tenant tables pgtenant policies apply has made tenant-safe, with the
-- version of the policies it wrote (policies.PolicyVersion).
CREATE TABLE IF NOT EXISTS tenancy.tables (
	table_name     text        PRIMARY KEY,
	policy_version integer     NOT NULL,
	applied_at     timestamptz NOT NULL DEFAULT pg_catalog.now()
);
REVOKE ALL ON tenancy.tables FROM PUBLIC;

-- The identity a token is bound to: the backend's pid, or on Citus its
-- global pid, which workers see as the coordinator backend's. Chosen when
-- this file runs; install again after adding Citus. A plain SQL function, so
-- the planner inlines it into current_org().
DO $$
BEGIN
	IF EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'citus') THEN
		CREATE OR REPLACE FUNCTION tenancy.backend_identity() RETURNS bigint
			LANGUAGE sql VOLATILE
			AS $fn$SELECT pg_catalog.citus_backend_gpid()$fn$;
	ELSE
		CREATE OR REPLACE FUNCTION tenancy.backend_identity() RETURNS bigint
			LANGUAGE sql VOLATILE
			AS $fn$SELECT pg_catalog.pg_backend_pid()::bigint$fn$;
	END IF;
END $$;
REVOKE ALL ON FUNCTION tenancy.backend_identity() FROM PUBLIC;

-- The tenant of the current transaction, from its verified context token.
--
-- The token is v1.<key id>.<identity>.<expiry unix seconds>.<hex(org)>.<hex(MAC)>,
-- the MAC being HMAC-SHA256 of everything before its separator. The checks
-- run in the order below; the first that fails raises:
--   PT001  malformed token, unknown key id, or MAC mismatch (forged)
--   PT002  identity is not this backend's (replayed from another connection)
--   PT003  expiry before the transaction's start
--   PT004  app.current_org set and different from the token's org
-- The expiry is compared with now(), the transaction's start, so a token
-- valid when a transaction starts holds until it ends.
--
-- PARALLEL RESTRICTED: in a parallel worker pg_backend_pid() is the worker's.
CREATE OR REPLACE FUNCTION tenancy.current_org() RETURNS text
	LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SECURITY DEFINER
	SET search_path = ''
AS $$
DECLARE
	token text := pg_catalog.current_setting('app.tenant_token', true);
	f text[];
	mac text;
	org text;
	claimed text;
BEGIN
	IF token IS NULL OR token = '' THEN
		RETURN NULL;
	END IF;
	f := pg_catalog.string_to_array(token, '.');
	IF pg_catalog.cardinality(f) <> 6 OR f[1] <> 'v1' THEN
		RAISE EXCEPTION USING ERRCODE = 'PT001',
			MESSAGE = 'pgtenant: the tenant context token is malformed';
	END IF;
	SELECT pg_catalog.encode(pg_catalog.sha256(k.outer_key ||
			pg_catalog.sha256(k.inner_key || pg_catalog.convert_to(pg_catalog.left(token, -65), 'UTF8'))), 'hex')
		INTO mac
		FROM tenancy.context_keys k
		WHERE k.key_id = f[2];
	IF mac IS NULL THEN
		RAISE EXCEPTION USING ERRCODE = 'PT001',
			MESSAGE = 'pgtenant: the tenant context token is signed with an unknown key';
	END IF;
	IF mac <> f[6] THEN
		RAISE EXCEPTION USING ERRCODE = 'PT001',
			MESSAGE = 'pgtenant: the tenant context token''s signature does not verify';
	END IF;
	IF f[3] <> tenancy.backend_identity()::text THEN
		RAISE EXCEPTION USING ERRCODE = 'PT002',
			MESSAGE = 'pgtenant: the tenant context token belongs to another backend connection';
	END IF;
	IF f[4]::bigint < pg_catalog.date_part('epoch', pg_catalog.now()) THEN
		RAISE EXCEPTION USING ERRCODE = 'PT003',
			MESSAGE = 'pgtenant: the tenant context token has expired';
	END IF;
	org := pg_catalog.convert_from(pg_catalog.decode(f[5], 'hex'), 'UTF8');
	claimed := pg_catalog.current_setting('app.current_org', true);
	IF claimed <> '' AND claimed <> org THEN
		RAISE EXCEPTION USING ERRCODE = 'PT004',
			MESSAGE = 'pgtenant: app.current_org does not match the signed tenant context';
	END IF;
	-- An empty org is no tenant: like a missing token, it matches no row.
	RETURN NULLIF(org, '');
END $$;
REVOKE ALL ON FUNCTION tenancy.current_org() FROM PUBLIC;
COMMENT ON FUNCTION tenancy.current_org() IS
	'pgtenant: the org of the transaction''s verified context token (app.tenant_token); NULL without one; SQLSTATE PT001-PT004 when forged, replayed, expired or contradicting app.current_org';
