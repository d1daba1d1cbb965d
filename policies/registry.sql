-- pgtenant's tenancy schema, version 2: the tenant registry. Which orgs
-- exist, their status and settings, who may act for them, and the history of
-- every change to them.
--
-- pgtenant policies install runs this file right after tenancy.sql, in the
-- same transaction. Running it again is harmless: every statement is
-- idempotent. Application roles get nothing here: the registry is read by
-- the proxy's control connection and written by the admin API (package
-- tenants), both as the schema's owner or a role it grants to.
--
-- Every change to tenancy.orgs or tenancy.org_members sends a notification
-- on channel pgtenant_registry whose payload is the org id, so running
-- proxies reload that org.

SELECT pg_catalog.set_config('search_path', 'pg_catalog', true);

-- The tenants. id is the org claim of the tenants' tokens; slug is a
-- lower-case handle for URLs and humans. settings, flags and pool are JSON
-- objects read by pgtenant (package tenants documents their keys). version
-- increases on every change, for optimistic concurrency.
CREATE TABLE IF NOT EXISTS tenancy.orgs (
	id         text        CONSTRAINT orgs_pkey PRIMARY KEY
	                       CONSTRAINT orgs_id_check CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$'),
	slug       text        NOT NULL
	                       CONSTRAINT orgs_slug_key UNIQUE
	                       CONSTRAINT orgs_slug_check CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
	name       text        NOT NULL CONSTRAINT orgs_name_check CHECK (pg_catalog.length(name) BETWEEN 1 AND 200),
	status     text        NOT NULL DEFAULT 'active'
	                       CONSTRAINT orgs_status_check CHECK (status IN ('active', 'suspended', 'deprovisioned')),
	settings   jsonb       NOT NULL DEFAULT '{}'
	                       CONSTRAINT orgs_settings_check CHECK (pg_catalog.jsonb_typeof(settings) = 'object'),
	flags      jsonb       NOT NULL DEFAULT '{}'
	                       CONSTRAINT orgs_flags_check CHECK (pg_catalog.jsonb_typeof(flags) = 'object'),
	pool       jsonb       NOT NULL DEFAULT '{}'
	                       CONSTRAINT orgs_pool_check CHECK (pg_catalog.jsonb_typeof(pool) = 'object'),
	version    bigint      NOT NULL DEFAULT 1,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	created_by text        NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_by text        NOT NULL
);
-- Listing by status in id order, and prefix search on names. Substring
-- search (ILIKE '%x%') scans the table, which at tens of thousands of orgs
-- takes milliseconds and needs no extension.
CREATE INDEX IF NOT EXISTS orgs_status_id ON tenancy.orgs (status, id);
CREATE INDEX IF NOT EXISTS orgs_lower_name ON tenancy.orgs (pg_catalog.lower(name) text_pattern_ops);
REVOKE ALL ON tenancy.orgs FROM PUBLIC;

-- Who may act for an org: the sub claims of its users' tokens. Checked by
-- the proxy for orgs whose settings have require_membership.
CREATE TABLE IF NOT EXISTS tenancy.org_members (
	org_id     text        NOT NULL REFERENCES tenancy.orgs (id) ON DELETE CASCADE,
	subject    text        NOT NULL CONSTRAINT org_members_subject_check CHECK (pg_catalog.length(subject) BETWEEN 1 AND 256),
	role       text        NOT NULL DEFAULT 'member' CONSTRAINT org_members_role_check CHECK (role IN ('admin', 'member')),
	status     text        NOT NULL DEFAULT 'active' CONSTRAINT org_members_status_check CHECK (status IN ('active', 'disabled')),
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	created_by text        NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_by text        NOT NULL,
	PRIMARY KEY (org_id, subject)
);
REVOKE ALL ON tenancy.org_members FROM PUBLIC;

-- Who changed what: one row per change to an org or its members, written in
-- the change's transaction. Rows with to_status set are the status history.
-- No foreign key: the history of an org outlives its row.
CREATE TABLE IF NOT EXISTS tenancy.org_history (
	id          bigserial   PRIMARY KEY,
	org_id      text        NOT NULL,
	at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
	actor       text        NOT NULL,
	action      text        NOT NULL,
	from_status text,
	to_status   text,
	reason      text,
	detail      jsonb
);
CREATE INDEX IF NOT EXISTS org_history_org_id ON tenancy.org_history (org_id, id DESC);
REVOKE ALL ON tenancy.org_history FROM PUBLIC;
REVOKE ALL ON SEQUENCE tenancy.org_history_id_seq FROM PUBLIC;

-- Tells listening proxies which org changed. Notifications are sent at
-- commit, and identical ones of a transaction are folded into one.
CREATE OR REPLACE FUNCTION tenancy.registry_notify() RETURNS trigger
	LANGUAGE plpgsql SECURITY INVOKER
	SET search_path = pg_catalog
AS $$
DECLARE
	org text;
BEGIN
	IF TG_TABLE_NAME = 'orgs' THEN
		IF TG_OP = 'DELETE' THEN org := OLD.id; ELSE org := NEW.id; END IF;
	ELSE
		IF TG_OP = 'DELETE' THEN org := OLD.org_id; ELSE org := NEW.org_id; END IF;
	END IF;
	PERFORM pg_catalog.pg_notify('pgtenant_registry', org);
	RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION tenancy.registry_notify() FROM PUBLIC;

DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger
			WHERE tgrelid = 'tenancy.orgs'::pg_catalog.regclass AND tgname = 'orgs_notify') THEN
		CREATE TRIGGER orgs_notify AFTER INSERT OR UPDATE OR DELETE ON tenancy.orgs
			FOR EACH ROW EXECUTE FUNCTION tenancy.registry_notify();
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger
			WHERE tgrelid = 'tenancy.org_members'::pg_catalog.regclass AND tgname = 'org_members_notify') THEN
		CREATE TRIGGER org_members_notify AFTER INSERT OR UPDATE OR DELETE ON tenancy.org_members
			FOR EACH ROW EXECUTE FUNCTION tenancy.registry_notify();
	END IF;
END $$;
