package tenants

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// DefaultPurgeBatchSize is the rows Purge deletes per transaction when
// batchSize is 0.
const DefaultPurgeBatchSize = 1000

// Purge deletes the org's rows (those whose orgColumn equals org) from each
// table in turn, in batches of batchSize rows (DefaultPurgeBatchSize when
// 0), each batch its own transaction, so a large tenant neither holds locks
// for long nor builds one huge transaction. It calls progress, when not
// nil, after every batch with the table as given and the rows that batch
// deleted. The leaf partitions of a partitioned table are purged one after
// the other, so that batches stay within batchSize; each table, or each
// partition, ends with a batch of fewer than batchSize rows (possibly 0).
// On error the rows already deleted stay deleted; running Purge again
// continues.
//
// tables are qualified names already quoted, as policies.Table's
// QualifiedName gives them; each must exist. conn is a connection to the
// tenant data database, not in a transaction, as a role that may delete
// from the tables and that row-level security does not apply to (a
// superuser or a role with BYPASSRLS, or the owner of tables that do not
// force RLS): every batch turns row_security off, so a role RLS would hold
// to gets an error instead of a purge that silently leaves the rows the
// policies hide. The caller owns conn.
func Purge(ctx context.Context, conn *pgx.Conn, org string, tables []string, orgColumn string, batchSize int, progress func(table string, deleted int64)) error {
	switch {
	case org == "":
		return errorf(ErrInvalid, "purge: no org: name the org whose rows to delete")
	case orgColumn == "":
		return errorf(ErrInvalid, "purge: no org column: name the column that holds the org id (usually org_id)")
	case batchSize < 0:
		return errorf(ErrInvalid, "purge: batch size %d cannot be negative (0 for %d)", batchSize, DefaultPurgeBatchSize)
	case batchSize == 0:
		batchSize = DefaultPurgeBatchSize
	}
	// Check every table first, so a typo deletes nothing.
	leaves := make([][]string, len(tables))
	for i, t := range tables {
		l, err := leafTables(ctx, conn, t)
		if err != nil {
			return err
		}
		leaves[i] = l
	}
	col := pgx.Identifier{orgColumn}.Sanitize()
	for i, t := range tables {
		for _, leaf := range leaves[i] {
			err := purgeTable(ctx, conn, leaf, col, org, batchSize, func(deleted int64) {
				if progress != nil {
					progress(t, deleted)
				}
			})
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// leafTables returns the tables that hold t's rows, as PostgreSQL quotes
// their names: t itself, or the leaf partitions of a partitioned t. Each
// is purged on its own because ctids are unique within one table only.
// Going through the catalog also means only table names reach the DELETE.
func leafTables(ctx context.Context, conn *pgx.Conn, t string) ([]string, error) {
	var name *string
	var leaves []string
	err := conn.QueryRow(ctx, `
		SELECT pg_catalog.to_regclass($1)::text,
			ARRAY(SELECT p.relid::pg_catalog.regclass::text
				FROM pg_catalog.pg_partition_tree(pg_catalog.to_regclass($1)) p
				WHERE p.isleaf ORDER BY 1)`, t).Scan(&name, &leaves)
	if err != nil {
		return nil, fmt.Errorf("purge: looking up table %s: %w", t, err)
	}
	if name == nil {
		return nil, errorf(ErrInvalid, "purge: table %s does not exist (give a quoted, schema-qualified name such as \"public\".\"items\")", t)
	}
	if len(leaves) == 0 {
		// Not partitioned (or a partitioned table without partitions).
		return []string{*name}, nil
	}
	return leaves, nil
}

// purgeTable deletes the org's rows from table, a table without
// partitions, in batches, calling done after each.
func purgeTable(ctx context.Context, conn *pgx.Conn, table, col, org string, batchSize int, done func(deleted int64)) error {
	del := "DELETE FROM " + table + " WHERE " + col + " = $1 AND ctid = ANY(ARRAY(" +
		"SELECT ctid FROM " + table + " WHERE " + col + " = $1 LIMIT $2))"
	for {
		var deleted int64
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SET LOCAL row_security = off"); err != nil {
				return err
			}
			tag, err := tx.Exec(ctx, del, org, batchSize)
			deleted = tag.RowsAffected()
			return err
		})
		if err != nil {
			return purgeError(err, table, org)
		}
		done(deleted)
		if deleted < int64(batchSize) {
			return nil
		}
	}
}

// purgeError explains the refusal row_security = off gives a role that
// RLS applies to.
func purgeError(err error, table, org string) error {
	if pe := pgError(err); pe != nil && pe.Code == "42501" {
		return fmt.Errorf("purge of org %s from %s refused: %w; purge as a superuser or a role with BYPASSRLS, "+
			"since row-level security would hide the org's rows from this role", org, table, err)
	}
	return fmt.Errorf("purging org %s from %s: %w", org, table, err)
}
