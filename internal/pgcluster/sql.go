package pgcluster

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"

	"github.com/jackc/pgx/v5"
)

// Addr returns the server's TCP address, "127.0.0.1:port".
func (c *Cluster) Addr() string {
	return net.JoinHostPort(c.Host, strconv.Itoa(c.Port))
}

// SuperuserDSN returns a postgres:// URL that connects to database as the
// superuser over TCP, with the password and sslmode=disable.
func (c *Cluster) SuperuserDSN(database string) string {
	return c.DSN(c.Superuser, c.SuperuserPassword, database)
}

// DSN returns a postgres:// URL that connects to database as user with
// password over TCP, sslmode=disable. The parts are escaped as URLs require.
func (c *Cluster) DSN(user, password, database string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(user, password),
		Host:     c.Addr(),
		Path:     "/" + database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Connect opens a connection to database as the superuser. The caller owns
// the connection and must Close it; like any *pgx.Conn it is not safe for
// concurrent use.
func (c *Cluster) Connect(ctx context.Context, database string) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, c.SuperuserDSN(database))
	if err != nil {
		return nil, fmt.Errorf("pgcluster: connecting to %q as %s: %w", database, c.Superuser, err)
	}
	return conn, nil
}

// Exec runs sql as the superuser in the "postgres" database, on a connection
// of its own. Without args, sql may hold several statements (simple
// protocol, one implicit transaction).
func (c *Cluster) Exec(ctx context.Context, sql string, args ...any) error {
	return c.ExecIn(ctx, "postgres", sql, args...)
}

// ExecIn is Exec in the given database.
func (c *Cluster) ExecIn(ctx context.Context, database, sql string, args ...any) error {
	conn, err := c.Connect(ctx, database)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("pgcluster: in database %q: %w", database, err)
	}
	return nil
}

// CreateDatabase creates an empty database named name, owned by the
// superuser.
func (c *Cluster) CreateDatabase(ctx context.Context, name string) error {
	return c.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
}

// CreateRole creates a login role with password that is neither superuser
// nor exempt from row-level security, as a tenant-facing role must be.
func (c *Cluster) CreateRole(ctx context.Context, name, password string) error {
	conn, err := c.Connect(ctx, "postgres")
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// DDL takes no parameters; let the server quote them.
	var stmt string
	err = conn.QueryRow(ctx,
		"SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD %L', $1::text, $2::text)",
		name, password).Scan(&stmt)
	if err == nil {
		_, err = conn.Exec(ctx, stmt)
	}
	if err != nil {
		return fmt.Errorf("pgcluster: creating role %q: %w", name, err)
	}
	return nil
}
