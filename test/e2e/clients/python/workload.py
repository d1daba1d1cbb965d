"""psycopg 3 workload for pgtenant's client compatibility suite.

Run by test/e2e/compat_psycopg_test.go; the workload and the environment it
reads are described in test/e2e/compat_clients_test.go. Every statement with
parameters is bound server-side (psycopg 3 uses the extended protocol) and
prepared on first use (prepare_threshold=0), so the named statements are reused
across transactions. Exits non-zero on the first failed check.
"""

import os
import sys
import threading
import time

import psycopg
from psycopg import errors

CLIENT = "psycopg"


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def connect(org):
    return psycopg.connect(
        host=os.environ["PGT_HOST"],
        port=os.environ["PGT_PORT"],
        dbname=os.environ["PGT_DATABASE"],
        user="app",
        password=os.environ["PGT_TOKEN_" + org.upper()],
        sslmode="disable",
        connect_timeout=10,
        application_name="compat-psycopg",
        prepare_threshold=0,
    )


def visible(conn, org, want):
    """Checks the tenant setting and that only org's rows are visible."""
    with conn.cursor() as cur:
        cur.execute("SELECT current_setting('app.current_org', true)", prepare=True)
        (setting,) = cur.fetchone()
        check(setting == org, f"current_setting = {setting!r}, want {org!r}")
        cur.execute("SELECT org_id, name FROM items WHERE id > %s ORDER BY id", (0,), prepare=True)
        rows = cur.fetchall()
    conn.commit()
    check([r[1] for r in rows] == want, f"saw rows {rows}, want the names {want}")
    check(all(r[0] == org for r in rows), f"{org} saw another tenant's row: {rows}")


def prepared_reuse(conn, org, want):
    """Two prepared statements executed 40 times each: in explicit
    transactions (BEGIN ... COMMIT), in psycopg's implicit ones and in
    autocommit mode."""
    for i in range(40):
        mode = i % 3
        if mode != 1:
            conn.autocommit = True
        try:
            if mode == 0:
                with conn.transaction():
                    reuse_once(conn, org, want, i)
            else:
                reuse_once(conn, org, want, i)
                if mode == 1:
                    conn.commit()
        finally:
            conn.autocommit = False


def reuse_once(conn, org, want, i):
    with conn.cursor() as cur:
        cur.execute("SELECT count(*), current_setting('app.current_org') FROM items WHERE name <> %s",
                    (f"nothing-{i}",), prepare=True)
        n, setting = cur.fetchone()
        check((n, setting) == (len(want), org), f"execution {i}: got ({n}, {setting!r}), want ({len(want)}, {org!r})")
        cur.execute("SELECT %s::int + 1", (i,), prepare=True, binary=True)
        check(cur.fetchone()[0] == i + 1, f"execution {i}: wrong sum (binary results)")


def crud_rolled_back(conn, org, want):
    marker = f"compat-{CLIENT}-{org}"
    with conn.cursor() as cur:
        cur.execute("INSERT INTO items (name) VALUES (%s) RETURNING org_id", (marker,))
        (got,) = cur.fetchone()
        check(got == org, f"insert took org_id {got!r} from the context, want {org!r}")
        cur.execute("SELECT count(*) FROM items WHERE id > %s", (0,))
        check(cur.fetchone()[0] == len(want) + 1, "the inserted row is not visible in its transaction")
        cur.execute("UPDATE items SET name = %s WHERE name = %s", (marker + "-updated", marker))
        check(cur.rowcount == 1, f"update changed {cur.rowcount} rows, want 1")
        cur.execute("UPDATE items SET name = name WHERE org_id <> %s", (org,))
        check(cur.rowcount == 0, f"update reached {cur.rowcount} rows of other tenants")
        cur.execute("DELETE FROM items WHERE org_id <> %s", (org,))
        check(cur.rowcount == 0, f"delete reached {cur.rowcount} rows of other tenants")
        cur.execute("DELETE FROM items WHERE name = %s", (marker + "-updated",))
        check(cur.rowcount == 1, f"delete removed {cur.rowcount} rows, want 1")
        cur.executemany("INSERT INTO items (name) VALUES (%s)", [(marker,)] * 5)
        cur.execute("SELECT count(*) FROM items WHERE org_id = %s AND name = %s", (org, marker))
        check(cur.fetchone()[0] == 5, "executemany rows are not visible in their transaction")
    conn.rollback()
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM items WHERE name LIKE %s", (marker + "%",))
        check(cur.fetchone()[0] == 0, "rows of a rolled-back transaction are visible")
    conn.commit()

    # An error aborts the transaction; ROLLBACK makes the session usable.
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        try:
            cur.execute("SELECT 1 / %s", (0,))
            raise AssertionError("division by zero succeeded")
        except errors.DivisionByZero:
            pass
        try:
            cur.execute("SELECT 1")
            raise AssertionError("a statement ran in an aborted transaction")
        except errors.InFailedSqlTransaction:
            pass
    conn.rollback()


def pipeline(conn, org, want):
    """psycopg's pipeline mode: several statements sent before any reply."""
    marker = f"compat-{CLIENT}-pipeline-{org}"
    with conn.pipeline():
        with conn.cursor() as a, conn.cursor() as b, conn.cursor() as c:
            a.execute("INSERT INTO items (name) VALUES (%s) RETURNING org_id", (marker,))
            b.execute("SELECT count(*) FROM items WHERE name = %s", (marker,))
            c.execute("SELECT current_setting('app.current_org')")
            check(a.fetchone()[0] == org, "pipelined insert got the wrong org_id")
            check(b.fetchone()[0] == 1, "pipelined select did not see the insert")
            check(c.fetchone()[0] == org, "pipelined select saw the wrong setting")
    conn.rollback()
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM items WHERE name = %s", (marker,))
        check(cur.fetchone()[0] == 0, "a rolled-back pipelined insert is visible")
    conn.commit()


def isolation(conn, org, want):
    """psycopg sends BEGIN ISOLATION LEVEL ... READ ONLY on its own."""
    conn.isolation_level = psycopg.IsolationLevel.SERIALIZABLE
    conn.read_only = True
    try:
        for i in range(3):
            with conn.cursor() as cur:
                cur.execute("SELECT current_setting('transaction_isolation'), current_setting('transaction_read_only'), "
                            "count(*) FROM items WHERE id > %s", (0,))
                got = cur.fetchone()
            conn.commit()
            check(got == ("serializable", "on", len(want)), f"transaction {i}: got {got}")
    finally:
        conn.isolation_level = None
        conn.read_only = None


def server_cursor(conn, org, want):
    """A named (DECLARE) cursor fetched one row at a time."""
    with conn.cursor(name="compat_cursor") as cur:
        cur.itersize = 1
        cur.execute("SELECT name FROM items WHERE id > %s ORDER BY id", (0,))
        names = [r[0] for r in cur]
    conn.commit()
    check(names == want, f"server-side cursor saw {names}, want {want}")


def copy_both_ways(conn, org, want):
    with conn.cursor() as cur:
        with cur.copy("COPY (SELECT org_id, name FROM items ORDER BY id) TO STDOUT") as copy:
            rows = list(copy.rows())
        check(rows == [(org, n) for n in want], f"COPY TO returned {rows}")
    conn.commit()

    marker = f"compat-{CLIENT}-copy-{org}"
    with conn.cursor() as cur:
        with cur.copy("COPY app_owned (id, note) FROM STDIN") as copy:
            for i in range(500):
                copy.write_row((i, marker))
        check(cur.rowcount == 500, f"COPY FROM reported {cur.rowcount} rows")
        cur.execute("SELECT count(*) FROM app_owned WHERE note = %s", (marker,))
        check(cur.fetchone()[0] == 500, "copied rows are not visible in their transaction")
    conn.rollback()
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM app_owned WHERE note = %s", (marker,))
        check(cur.fetchone()[0] == 0, "rows copied in a rolled-back transaction are visible")
    conn.commit()


def cancel(conn, org, want):
    conn.autocommit = True
    timer = threading.Timer(0.3, conn.cancel)
    start = time.monotonic()
    timer.start()
    try:
        conn.execute("SELECT pg_sleep(30)")
        raise AssertionError("pg_sleep(30) was not canceled")
    except errors.QueryCanceled as e:
        check(e.sqlstate == "57014", f"SQLSTATE {e.sqlstate}, want 57014")
    finally:
        timer.cancel()
        conn.autocommit = False
    took = time.monotonic() - start
    check(took < 10, f"the cancel took {took:.1f}s")


STEPS = [visible, prepared_reuse, crud_rolled_back, isolation, pipeline, server_cursor, copy_both_ways, cancel, visible]


def main():
    for org in os.environ["PGT_TENANTS"].split(","):
        want = os.environ["PGT_ROWS_" + org.upper()].split(",")
        with connect(org) as conn:
            for step in STEPS:
                start = time.monotonic()
                try:
                    step(conn, org, want)
                except Exception as e:
                    print(f"FAIL {org}: {step.__name__}: {type(e).__name__}: {e}", flush=True)
                    raise
                print(f"ok {org}: {step.__name__} ({time.monotonic() - start:.2f}s)", flush=True)
    print(f"psycopg {psycopg.__version__}, libpq {psycopg.pq.version()}: all checks passed")


if __name__ == "__main__":
    main()
