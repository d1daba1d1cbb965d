package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/internal/testcert"
	"github.com/pgtenant/pgtenant/test/testpg"
)

func signed(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestBadLoginsAreRefusedWithTheRightSQLSTATEAndNeverReachPostgreSQL(t *testing.T) {
	const iss, aud = "https://id.example.test", "pgtenant"
	e := startProxy(t, func(_ *proxyConfig, j *jwtConfig) { j.Issuer, j.Audience = iss, aud })
	now := time.Now()
	valid := func(extra jwt.MapClaims) jwt.MapClaims {
		c := jwt.MapClaims{"org_id": "acme", "sub": "u1", "iss": iss, "aud": aud, "exp": now.Add(time.Hour).Unix()}
		for k, v := range extra {
			if v == nil {
				delete(c, k)
			} else {
				c[k] = v
			}
		}
		return c
	}
	none := signed(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, valid(nil))
	cases := []struct {
		name, password, code string
	}{
		{"no password", "", "28P01"},
		{"garbage", "not-a-token", "28P01"},
		{"wrong signature", signed(t, jwt.SigningMethodHS256, []byte("another-secret-0123456789abcdef-xyz"), valid(nil)), "28P01"},
		{"alg none", none, "28P01"},
		{"expired", signed(t, jwt.SigningMethodHS256, secret, valid(jwt.MapClaims{"exp": now.Add(-time.Hour).Unix()})), "28P01"},
		{"not yet valid", signed(t, jwt.SigningMethodHS256, secret, valid(jwt.MapClaims{"nbf": now.Add(time.Hour).Unix()})), "28P01"},
		{"wrong issuer", signed(t, jwt.SigningMethodHS256, secret, valid(jwt.MapClaims{"iss": "https://evil.example"})), "28P01"},
		{"wrong audience", signed(t, jwt.SigningMethodHS256, secret, valid(jwt.MapClaims{"aud": "someone-else"})), "28P01"},
		{"missing org claim", signed(t, jwt.SigningMethodHS256, secret, valid(jwt.MapClaims{"org_id": nil})), "28000"},
		{"org with a quote", signed(t, jwt.SigningMethodHS256, secret, valid(jwt.MapClaims{"org_id": "acme'; DROP TABLE items; --"})), "28000"},
		{"org that is a number", signed(t, jwt.SigningMethodHS256, secret, valid(jwt.MapClaims{"org_id": 42})), "28000"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pgconn.Connect(testpg.Context(t), e.dsn(tc.password))
			if got := testpg.SQLState(err); got != tc.code {
				t.Fatalf("got %v (SQLSTATE %q), want SQLSTATE %s", err, got, tc.code)
			}
			var pe *pgconn.PgError
			if asPgError(err, &pe) && pe.Severity != "FATAL" {
				t.Errorf("severity %s, want FATAL", pe.Severity)
			}
			if tc.password != "" && len(tc.password) > 20 && containsString(err.Error(), tc.password) {
				t.Error("the error message contains the token")
			}
		})
	}
	if st := e.poolStat(); st.Dials != 0 || st.Acquires != 0 {
		t.Fatalf("a refused login reached PostgreSQL: %d dials, %d acquires", st.Dials, st.Acquires)
	}
	// The same proxy accepts a good token.
	c, err := pgconn.Connect(testpg.Context(t), e.dsn(signed(t, jwt.SigningMethodHS256, secret, valid(nil))))
	if err != nil {
		t.Fatal(err)
	}
	c.Close(context.Background())
}

func TestUnknownDatabaseIsReportedAtLogin(t *testing.T) {
	e := startProxy(t, nil)
	dsn := "postgres://app:" + token(t, "acme") + "@" + e.addr + "/no_such_db?sslmode=disable"
	_, err := pgconn.Connect(testpg.Context(t), dsn)
	if testpg.SQLState(err) != "3D000" {
		t.Fatalf("got %v, want SQLSTATE 3D000", err)
	}
}

func TestTLSIsOfferedAndCanBeRequired(t *testing.T) {
	cert := selfSigned(t)
	e := startProxy(t, func(c *proxyConfig, _ *jwtConfig) {
		c.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		c.RequireTLS = true
	})
	_, err := pgconn.Connect(testpg.Context(t), e.dsn(token(t, "acme")))
	if testpg.SQLState(err) != "28000" {
		t.Fatalf("plaintext login with TLS required: got %v, want 28000", err)
	}
	dsn := "postgres://app:" + token(t, "acme") + "@" + e.addr + "/" + database + "?sslmode=require"
	c, err := pgconn.Connect(testpg.Context(t), dsn)
	if err != nil {
		t.Fatalf("TLS login: %v", err)
	}
	defer c.Close(context.Background())
	if _, ok := c.Conn().(*tls.Conn); !ok {
		t.Fatal("connection is not TLS")
	}
	res := c.ExecParams(testpg.Context(t), "SELECT current_setting('app.current_org')", nil, nil, nil, nil).Read()
	if res.Err != nil || string(res.Rows[0][0]) != "acme" {
		t.Fatalf("query over TLS: %v %v", res.Rows, res.Err)
	}
}

func TestWithoutACertificateSSLRequestIsDeclined(t *testing.T) {
	e := startProxy(t, nil)
	dsn := "postgres://app:" + token(t, "acme") + "@" + e.addr + "/" + database + "?sslmode=prefer"
	c, err := pgconn.Connect(testpg.Context(t), dsn)
	if err != nil {
		t.Fatalf("sslmode=prefer must fall back to plaintext: %v", err)
	}
	c.Close(context.Background())
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	c, err := testcert.New(nil, "127.0.0.1", net.ParseIP("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	return c.TLS()
}

func TestASessionEndsAtTheFirstTransactionAfterItsTokenExpires(t *testing.T) {
	e := startProxy(t, func(c *proxyConfig, j *jwtConfig) {
		c.ExpireSessions = true
		j.Leeway = time.Nanosecond
	})
	tok, err := auth.Mint(secret, auth.MintClaims{Org: "acme", TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c, err := pgconn.Connect(testpg.Context(t), e.dsn(tok))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(testpg.Context(t), "SELECT 1").ReadAll(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond)
	_, err = c.Exec(testpg.Context(t), "SELECT 1").ReadAll()
	if testpg.SQLState(err) != "28P01" {
		t.Fatalf("got %v, want SQLSTATE 28P01 for the expired session", err)
	}
}

func TestTokensNeverReachTheLog(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	log := zerolog.New(lockedWriter{&mu, &buf}).Level(zerolog.TraceLevel)
	e := startProxyLogging(t, log, nil)
	good := token(t, "acme")
	forged := signed(t, jwt.SigningMethodHS256, []byte("not-the-secret-0123456789abcdef-xyz"), jwt.MapClaims{"org_id": "acme"})
	if _, err := pgconn.Connect(testpg.Context(t), e.dsn(forged)); err == nil {
		t.Fatal("forged token accepted")
	}
	c, err := pgconn.Connect(testpg.Context(t), e.dsn(good))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(testpg.Context(t), "SELECT 1/0").ReadAll(); err == nil {
		t.Fatal("want an error to be logged")
	}
	c.Close(context.Background())
	e.srv.Close()
	mu.Lock()
	defer mu.Unlock()
	out := buf.String()
	if !strings.Contains(out, "password authentication failed") {
		t.Fatalf("the refused login was not logged:\n%s", out)
	}
	for _, tok := range []string{good, forged} {
		sig := tok[strings.LastIndexByte(tok, '.')+1:]
		if strings.Contains(out, tok) || strings.Contains(out, sig) || strings.Contains(out, string(secret)) {
			t.Fatalf("a token or the secret reached the log:\n%s", out)
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
