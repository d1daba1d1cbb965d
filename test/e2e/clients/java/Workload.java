// JDBC (pgjdbc) workload for pgtenant's client compatibility suite.
//
// Compiled and run by test/e2e/compat_jdbc_test.go; the workload and the
// environment it reads are described in test/e2e/compat_clients_test.go.
// prepareThreshold=1 makes every PreparedStatement a named server-side
// statement from its first execution, reused across transactions (and across
// PreparedStatement objects through the driver's statement cache). COPY goes
// through CopyManager, cancel through Statement.cancel() from another thread.
// Exits non-zero on the first failed check.

import java.io.StringReader;
import java.io.StringWriter;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Properties;

import org.postgresql.PGConnection;
import org.postgresql.copy.CopyManager;

public final class Workload {
    private static final String CLIENT = "jdbc";

    private final Connection conn;
    private final String org;
    private final List<String> want;

    private Workload(Connection conn, String org, List<String> want) {
        this.conn = conn;
        this.org = org;
        this.want = want;
    }

    private interface Step {
        void run() throws Exception;
    }

    static void check(boolean cond, String what) {
        if (!cond) {
            throw new AssertionError(what);
        }
    }

    static Connection connect(String org, String... extra) throws SQLException {
        String url = "jdbc:postgresql://" + System.getenv("PGT_HOST") + ":" + System.getenv("PGT_PORT") + "/"
                + System.getenv("PGT_DATABASE");
        Properties p = new Properties();
        p.setProperty("user", "app");
        p.setProperty("password", System.getenv("PGT_TOKEN_" + org.toUpperCase()));
        p.setProperty("sslmode", "disable");
        p.setProperty("prepareThreshold", "1");
        p.setProperty("connectTimeout", "10");
        p.setProperty("ApplicationName", "compat-jdbc");
        for (int i = 0; i + 1 < extra.length; i += 2) {
            p.setProperty(extra[i], extra[i + 1]);
        }
        return DriverManager.getConnection(url, p);
    }

    private long count(String sql, Object... params) throws SQLException {
        try (PreparedStatement ps = conn.prepareStatement(sql)) {
            for (int i = 0; i < params.length; i++) {
                ps.setObject(i + 1, params[i]);
            }
            try (ResultSet rs = ps.executeQuery()) {
                check(rs.next(), "no row from " + sql);
                return rs.getLong(1);
            }
        }
    }

    void visible() throws SQLException {
        try (PreparedStatement ps = conn.prepareStatement("SELECT current_setting('app.current_org', true)");
                ResultSet rs = ps.executeQuery()) {
            check(rs.next(), "no setting");
            check(org.equals(rs.getString(1)), "current_setting = " + rs.getString(1) + ", want " + org);
        }
        List<String> names = new ArrayList<>();
        try (PreparedStatement ps = conn.prepareStatement("SELECT org_id, name FROM items WHERE id > ? ORDER BY id")) {
            ps.setInt(1, 0);
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    check(org.equals(rs.getString(1)), org + " saw a row of " + rs.getString(1));
                    names.add(rs.getString(2));
                }
            }
        }
        check(names.equals(want), "saw " + names + ", want " + want);
    }

    // One PreparedStatement executed 40 times, and a second one created anew
    // each time (the driver's cache keeps the server statement), alternately
    // in transactions and in autocommit mode.
    void preparedReuse() throws SQLException {
        try (PreparedStatement ps = conn.prepareStatement(
                "SELECT count(*), current_setting('app.current_org') FROM items WHERE name <> ?")) {
            for (int i = 0; i < 40; i++) {
                boolean tx = i % 2 == 0;
                conn.setAutoCommit(!tx);
                ps.setString(1, "nothing-" + i);
                try (ResultSet rs = ps.executeQuery()) {
                    check(rs.next(), "no row");
                    check(rs.getLong(1) == want.size() && org.equals(rs.getString(2)),
                            "execution " + i + ": got (" + rs.getLong(1) + ", " + rs.getString(2) + ")");
                }
                check(count("SELECT ?::int + 1", i) == i + 1, "execution " + i + ": sum");
                if (tx) {
                    conn.commit();
                }
            }
        } finally {
            conn.setAutoCommit(true);
        }
    }

    // setTransactionIsolation and setReadOnly send SET SESSION
    // CHARACTERISTICS, which must follow this connection to the backend
    // connection of its next transaction.
    void isolation() throws SQLException {
        conn.setTransactionIsolation(Connection.TRANSACTION_SERIALIZABLE);
        conn.setReadOnly(true);
        conn.setAutoCommit(false);
        try (PreparedStatement ps = conn.prepareStatement(
                "SELECT current_setting('transaction_isolation'), current_setting('transaction_read_only'), count(*) FROM items WHERE id > ?")) {
            for (int i = 0; i < 3; i++) {
                ps.setInt(1, 0);
                try (ResultSet rs = ps.executeQuery()) {
                    check(rs.next(), "no row");
                    String got = rs.getString(1) + " " + rs.getString(2) + " " + rs.getLong(3);
                    check(got.equals("serializable on " + want.size()), "transaction " + i + ": got " + got);
                }
                conn.commit();
            }
        } finally {
            conn.setAutoCommit(true);
            conn.setReadOnly(false);
            conn.setTransactionIsolation(Connection.TRANSACTION_READ_COMMITTED);
        }
        check(count("SELECT CASE WHEN current_setting('transaction_isolation') = 'read committed' THEN ?::int ELSE 0 END", 1) == 1,
                "the isolation level was not reset");
    }

    void crudRolledBack() throws SQLException {
        String marker = "compat-" + CLIENT + "-" + org;
        conn.setAutoCommit(false);
        try {
            try (PreparedStatement ps = conn.prepareStatement("INSERT INTO items (name) VALUES (?) RETURNING org_id")) {
                ps.setString(1, marker);
                try (ResultSet rs = ps.executeQuery()) {
                    check(rs.next() && org.equals(rs.getString(1)), "insert took the wrong org_id from the context");
                }
            }
            check(count("SELECT count(*) FROM items WHERE id > ?", 0) == want.size() + 1,
                    "the inserted row is not visible in its transaction");
            check(update("UPDATE items SET name = ? WHERE name = ?", marker + "-updated", marker) == 1, "update");
            check(update("UPDATE items SET name = name WHERE org_id <> ?", org) == 0, "update reached another tenant");
            check(update("DELETE FROM items WHERE org_id <> ?", org) == 0, "delete reached another tenant");
            check(update("DELETE FROM items WHERE name = ?", marker + "-updated") == 1, "delete");
            // A batch: the driver sends every Bind/Execute before one Sync.
            try (PreparedStatement ps = conn.prepareStatement("INSERT INTO items (name) VALUES (?)")) {
                for (int i = 0; i < 5; i++) {
                    ps.setString(1, marker + "-batch");
                    ps.addBatch();
                }
                int[] counts = ps.executeBatch();
                check(counts.length == 5, "batch counts " + Arrays.toString(counts));
            }
            check(count("SELECT count(*) FROM items WHERE org_id = ? AND name = ?", org, marker + "-batch") == 5,
                    "batch rows");
            conn.rollback();
            check(count("SELECT count(*) FROM items WHERE name LIKE ?", marker + "%") == 0,
                    "rows of a rolled-back transaction are visible");
            conn.commit();

            // An error aborts the transaction; rollback makes the session usable.
            try {
                count("SELECT 1 / ?", 0);
                throw new AssertionError("division by zero succeeded");
            } catch (SQLException e) {
                check("22012".equals(e.getSQLState()), "SQLSTATE " + e.getSQLState() + ", want 22012: " + e);
            }
            try {
                count("SELECT ?::int + 1", 1);
                throw new AssertionError("a statement ran in an aborted transaction");
            } catch (SQLException e) {
                check("25P02".equals(e.getSQLState()), "SQLSTATE " + e.getSQLState() + ", want 25P02: " + e);
            }
            conn.rollback();
            check(count("SELECT ?::int + 1", 1) == 2, "the session is not usable after rollback");
            conn.commit();
        } finally {
            conn.setAutoCommit(true);
        }
    }

    private int update(String sql, Object... params) throws SQLException {
        try (PreparedStatement ps = conn.prepareStatement(sql)) {
            for (int i = 0; i < params.length; i++) {
                ps.setObject(i + 1, params[i]);
            }
            return ps.executeUpdate();
        }
    }

    // A fetch size in a transaction makes the driver read through a named
    // portal a row at a time (Execute with a row limit, PortalSuspended).
    void fetchSize() throws SQLException {
        conn.setAutoCommit(false);
        List<String> names = new ArrayList<>();
        try (PreparedStatement ps = conn.prepareStatement("SELECT name FROM items WHERE id > ? ORDER BY id")) {
            ps.setFetchSize(1);
            ps.setInt(1, 0);
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    names.add(rs.getString(1));
                }
            }
            conn.commit();
        } finally {
            conn.setAutoCommit(true);
        }
        check(names.equals(want), "fetching a row at a time saw " + names + ", want " + want);
    }

    // autosave=always, as many frameworks configure pgjdbc: a SAVEPOINT before
    // each statement and ROLLBACK TO SAVEPOINT after a failed one, so the
    // transaction survives the error and keeps the tenant context.
    void autosave() throws SQLException {
        String marker = "compat-" + CLIENT + "-autosave-" + org;
        try (Connection c = connect(org, "autosave", "always")) {
            c.setAutoCommit(false);
            Workload w = new Workload(c, org, want);
            check(w.update("INSERT INTO items (name) VALUES (?)", marker) == 1, "insert");
            try {
                w.count("SELECT 1 / ?", 0);
                throw new AssertionError("division by zero succeeded");
            } catch (SQLException e) {
                check("22012".equals(e.getSQLState()), "SQLSTATE " + e.getSQLState() + ", want 22012: " + e);
            }
            check(w.count("SELECT count(*) FROM items WHERE org_id = current_setting('app.current_org') AND name = ?",
                    marker) == 1, "the transaction lost its insert or its context after the failed statement");
            c.rollback();
            check(w.count("SELECT count(*) FROM items WHERE name = ?", marker) == 0,
                    "rows of a rolled-back transaction are visible");
            c.commit();
        }
    }

    void copyBothWays() throws Exception {
        CopyManager copy = conn.unwrap(PGConnection.class).getCopyAPI();
        StringWriter out = new StringWriter();
        long n = copy.copyOut("COPY (SELECT org_id, name FROM items ORDER BY id) TO STDOUT", out);
        StringBuilder expected = new StringBuilder();
        for (String name : want) {
            expected.append(org).append('\t').append(name).append('\n');
        }
        check(n == want.size() && out.toString().equals(expected.toString()), "COPY TO returned " + out);

        String marker = "compat-" + CLIENT + "-copy-" + org;
        StringBuilder in = new StringBuilder();
        for (int i = 0; i < 500; i++) {
            in.append(i).append('\t').append(marker).append('\n');
        }
        conn.setAutoCommit(false);
        try {
            n = copy.copyIn("COPY app_owned (id, note) FROM STDIN", new StringReader(in.toString()));
            check(n == 500, "COPY FROM reported " + n + " rows");
            check(count("SELECT count(*) FROM app_owned WHERE note = ?", marker) == 500,
                    "copied rows are not visible in their transaction");
            conn.rollback();
            check(count("SELECT count(*) FROM app_owned WHERE note = ?", marker) == 0,
                    "rows copied in a rolled-back transaction are visible");
            conn.commit();
        } finally {
            conn.setAutoCommit(true);
        }
    }

    void cancel() throws Exception {
        try (Statement st = conn.createStatement()) {
            Thread canceler = new Thread(() -> {
                try {
                    Thread.sleep(300);
                    st.cancel();
                } catch (Exception e) {
                    e.printStackTrace();
                }
            });
            long start = System.nanoTime();
            canceler.start();
            try {
                st.execute("SELECT pg_sleep(30)");
                throw new AssertionError("pg_sleep(30) was not canceled");
            } catch (SQLException e) {
                check("57014".equals(e.getSQLState()), "SQLSTATE " + e.getSQLState() + ", want 57014: " + e);
            } finally {
                canceler.join();
            }
            long tookMs = (System.nanoTime() - start) / 1_000_000;
            check(tookMs < 10_000, "the cancel took " + tookMs + "ms");
        }
    }

    public static void main(String[] args) throws Exception {
        String driver = "";
        for (String org : System.getenv("PGT_TENANTS").split(",")) {
            List<String> want = Arrays.asList(System.getenv("PGT_ROWS_" + org.toUpperCase()).split(","));
            try (Connection conn = connect(org)) {
                driver = conn.getMetaData().getDriverVersion();
                Workload w = new Workload(conn, org, want);
                Object[][] steps = {
                    {"visible", (Step) w::visible},
                    {"preparedReuse", (Step) w::preparedReuse},
                    {"crudRolledBack", (Step) w::crudRolledBack},
                    {"isolation", (Step) w::isolation},
                    {"fetchSize", (Step) w::fetchSize},
                    {"autosave", (Step) w::autosave},
                    {"copyBothWays", (Step) w::copyBothWays},
                    {"cancel", (Step) w::cancel},
                    {"visible", (Step) w::visible},
                };
                for (Object[] step : steps) {
                    long start = System.nanoTime();
                    try {
                        ((Step) step[1]).run();
                    } catch (Throwable e) {
                        System.out.println("FAIL " + org + ": " + step[0] + ": " + e);
                        e.printStackTrace(System.out);
                        System.exit(1);
                    }
                    System.out.printf("ok %s: %s (%.2fs)%n", org, step[0], (System.nanoTime() - start) / 1e9);
                }
            }
        }
        System.out.println("java " + System.getProperty("java.version") + ", " + driver + ": all checks passed");
    }
}
