package policies

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	keyA = ContextKey{ID: "primary", Secret: bytes.Repeat([]byte("k"), 32)}
	keyB = ContextKey{ID: "next-2", Secret: []byte("a second context key, 32 bytes or more")}
	// keyLong is longer than SHA-256's block, so HMAC hashes it first.
	keyLong = ContextKey{ID: "long_key", Secret: bytes.Repeat([]byte("0123456789"), 10)}
)

func mustSigner(t testing.TB, ttl time.Duration, keys ...ContextKey) *Signer {
	t.Helper()
	s, err := NewSigner(keys, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSignIsDeterministicAndMatchesAnIndependentHMAC(t *testing.T) {
	t.Parallel()
	s := mustSigner(t, 5*time.Minute, keyA, keyB)
	now := time.Unix(1700000000, 999_000_000)
	tok, exp := s.Sign("acme.corp", 4242, now)
	// Computed with Python's hmac module from the documented format.
	const want = "v1.primary.4242.1700000300.61636d652e636f7270.dd510f2eb5d1d8420e05dd4f19a67064639a6dff9520d2607de0f7ac4558ba6f"
	if tok != want {
		t.Errorf("token\n got %s\nwant %s", tok, want)
	}
	if !exp.Equal(time.Unix(1700000300, 0)) {
		t.Errorf("expires = %v, want %v", exp, time.Unix(1700000300, 0))
	}
	if again, _ := s.Sign("acme.corp", 4242, now); again != tok {
		t.Errorf("a second Sign with the same inputs gave %s", again)
	}
}

func TestTokensAreSafeAsSQLLiteralsWhateverTheOrg(t *testing.T) {
	t.Parallel()
	s := mustSigner(t, 0, keyA)
	safe := regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
	for _, org := range []string{"acme", "a.b-c_d", "o'brien", `back\slash`, "x'; DROP TABLE items; --", "ünïcødé", "new\nline"} {
		tok, _ := s.Sign(org, -7, time.Unix(1, 0))
		if !safe.MatchString(tok) {
			t.Errorf("token for org %q has characters outside A-Z a-z 0-9 . _ -: %s", org, tok)
		}
		if n := strings.Count(tok, "."); n != 5 {
			t.Errorf("token for org %q has %d separators, want 5: %s", org, n, tok)
		}
	}
}

func TestSignUsesTheFirstKeyAndTheTTL(t *testing.T) {
	t.Parallel()
	s := mustSigner(t, 90*time.Second, keyB, keyA)
	tok, exp := s.Sign("acme", 1, time.Unix(1000, 0))
	f := strings.Split(tok, ".")
	if f[1] != keyB.ID {
		t.Errorf("key id = %s, want %s", f[1], keyB.ID)
	}
	if f[3] != strconv.FormatInt(exp.Unix(), 10) || exp.Unix() != 1090 {
		t.Errorf("expiry field %s, expires %v; want 1090", f[3], exp)
	}
	if s.TTL() != 90*time.Second {
		t.Errorf("TTL() = %s", s.TTL())
	}
	if d := mustSigner(t, 0, keyA).TTL(); d != DefaultContextTTL {
		t.Errorf("zero TTL gave %s, want DefaultContextTTL", d)
	}
}

func TestNewSignerRejectsBadKeys(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		keys []ContextKey
		ttl  time.Duration
		want string
	}{
		"no key":         {nil, 0, "no context key"},
		"empty id":       {[]ContextKey{{ID: "", Secret: keyA.Secret}}, 0, "must be 1 to 32 characters"},
		"dot in id":      {[]ContextKey{{ID: "a.b", Secret: keyA.Secret}}, 0, "must be 1 to 32 characters"},
		"long id":        {[]ContextKey{{ID: strings.Repeat("a", 33), Secret: keyA.Secret}}, 0, "must be 1 to 32 characters"},
		"short secret":   {[]ContextKey{{ID: "k", Secret: []byte("short")}}, 0, "at least 32 bytes"},
		"duplicate id":   {[]ContextKey{keyA, {ID: keyA.ID, Secret: keyB.Secret}}, 0, "configured twice"},
		"negative ttl":   {[]ContextKey{keyA}, -time.Second, "too short"},
		"sub-second ttl": {[]ContextKey{keyA}, time.Millisecond, "too short"},
	} {
		_, err := NewSigner(tc.keys, tc.ttl)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one containing %q", name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), string(keyA.Secret)) {
			t.Errorf("%s: the error shows the secret: %v", name, err)
		}
	}
}

func TestSignerKeepsItsOwnCopyOfTheSecrets(t *testing.T) {
	t.Parallel()
	secret := bytes.Repeat([]byte("s"), 32)
	s := mustSigner(t, 0, ContextKey{ID: "k", Secret: secret})
	before, _ := s.Sign("acme", 1, time.Unix(0, 0))
	secret[0] = 'x'
	if after, _ := s.Sign("acme", 1, time.Unix(0, 0)); after != before {
		t.Error("changing the caller's secret changed the Signer's tokens")
	}
}

func TestBackendIdentityQueryNamesTheCitusGlobalPid(t *testing.T) {
	t.Parallel()
	if q := BackendIdentityQuery(true); !strings.Contains(q, "citus_backend_gpid()") {
		t.Errorf("Citus query = %s", q)
	}
	if q := BackendIdentityQuery(false); !strings.Contains(q, "pg_backend_pid()") {
		t.Errorf("PostgreSQL query = %s", q)
	}
}

// TestContextTokenDecidesWhatTheAppRoleSees runs as the application role
// against a table whose policy is org_id = tenancy.current_org().
func TestContextTokenDecidesWhatTheAppRoleSees(t *testing.T) {
	t.Parallel()
	d := newTenantDB(t)
	d.withItems(keyA, keyB, keyLong)
	app := d.connect(d.app)
	pid := identity(t, app)
	now := time.Now()
	signA := mustSigner(t, 0, keyA)
	tok := func(s *Signer, org string, id int64, at time.Time) string {
		tk, _ := s.Sign(org, id, at)
		return tk
	}
	valid := tok(signA, "acme", pid, now)
	// tamper replaces field i of a valid token.
	tamper := func(i int, v string) string {
		f := strings.Split(valid, ".")
		f[i] = v
		return strings.Join(f, ".")
	}
	lastSigChar := func() string {
		f := strings.Split(valid, ".")
		c := "0"
		if strings.HasSuffix(f[5], "0") {
			c = "1"
		}
		return f[5][:63] + c
	}
	unknown := ContextKey{ID: "unknown", Secret: bytes.Repeat([]byte("u"), 32)}
	for _, tc := range []struct {
		name       string
		token      string
		currentOrg string
		want       []string
		code       string
	}{
		{name: "no token sees no rows", want: nil},
		{name: "a forged app.current_org alone sees no rows", currentOrg: "globex", want: nil},
		{name: "valid token sees its org's rows", token: valid, want: []string{"anvil", "rocket"}},
		{name: "valid token with matching app.current_org", token: valid, currentOrg: "acme", want: []string{"anvil", "rocket"}},
		{name: "other org's valid token sees that org's rows", token: tok(signA, "globex", pid, now), want: []string{"doomsday"}},
		{name: "second configured key is accepted", token: tok(mustSigner(t, 0, keyB), "acme", pid, now), want: []string{"anvil", "rocket"}},
		{name: "key longer than a block is accepted", token: tok(mustSigner(t, 0, keyLong), "globex", pid, now), want: []string{"doomsday"}},
		{name: "signed empty org sees no rows", token: tok(signA, "", pid, now), want: nil},
		{name: "org changed", token: tamper(4, "676c6f626578"), code: SQLStateForged},
		{name: "signature changed", token: tamper(5, lastSigChar()), code: SQLStateForged},
		{name: "expiry extended", token: tamper(3, "9999999999"), code: SQLStateForged},
		{name: "key id swapped", token: tamper(1, keyB.ID), code: SQLStateForged},
		{name: "unknown key", token: tok(mustSigner(t, 0, unknown), "acme", pid, now), code: SQLStateForged},
		{name: "other version", token: tamper(0, "v2"), code: SQLStateForged},
		{name: "garbage", token: "not-a-token", code: SQLStateForged},
		{name: "extra field", token: valid + ".00", code: SQLStateForged},
		{name: "another backend's token", token: tok(signA, "acme", pid+1, now), code: SQLStateReplayed},
		{name: "expired token", token: tok(signA, "acme", pid, now.Add(-DefaultContextTTL-2*time.Second)), code: SQLStateExpired},
		{name: "app.current_org differs from the signed org", token: valid, currentOrg: "globex", code: SQLStateOrgMismatch},
	} {
		got, err := visible(t, app, tc.token, tc.currentOrg)
		if tc.code != "" {
			if code := sqlState(err); code != tc.code {
				t.Errorf("%s: err = %v (SQLSTATE %q), want SQLSTATE %s", tc.name, err, code, tc.code)
			} else if !strings.Contains(err.Error(), "pgtenant:") {
				t.Errorf("%s: message does not start with pgtenant: %v", tc.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s: saw %q, want %q", tc.name, got, tc.want)
		}
	}
	if !IsContextSQLState(SQLStateOrgMismatch) || IsContextSQLState("42501") {
		t.Error("IsContextSQLState does not match the PT codes only")
	}
}

func TestTokenValidAtTransactionStartHoldsUntilCommit(t *testing.T) {
	t.Parallel()
	d := newTenantDB(t)
	d.withItems(keyA)
	app := d.connect(d.app)
	s := mustSigner(t, time.Second, keyA)
	ctx := ctxT(t)
	tok, exp := s.Sign("acme", identity(t, app), time.Now())
	tx, err := app.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SET LOCAL "+TokenSetting+" TO '"+tok+"'"); err != nil {
		t.Fatal(err)
	}
	count := func() (n int, err error) {
		err = tx.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&n)
		return n, err
	}
	if n, err := count(); err != nil || n != 2 {
		t.Fatalf("before expiry: %d rows, %v", n, err)
	}
	time.Sleep(time.Until(exp) + 1100*time.Millisecond)
	if n, err := count(); err != nil || n != 2 {
		t.Fatalf("after expiry, same transaction: %d rows, %v; want 2 (the token is checked against the transaction's start)", n, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := visible(t, app, tok, ""); sqlState(err) != SQLStateExpired {
		t.Fatalf("next transaction: err = %v, want SQLSTATE %s", err, SQLStateExpired)
	}
}

// BenchmarkPolicyScan measures what tenancy.current_org() costs a policy on
// a sequential scan of 100,000 rows, half of them the tenant's: called per
// row (org_id = tenancy.current_org(), the form Citus accepts) against once
// per query (org_id = (SELECT tenancy.current_org())), and the unsigned
// setting alone as the baseline.
func BenchmarkPolicyScan(b *testing.B) {
	d := newTenantDB(b)
	owner := d.connect(d.owner)
	d.install(owner, keyA)
	d.exec(owner, `
		CREATE TABLE bench (org_id text NOT NULL, v int NOT NULL);
		INSERT INTO bench SELECT CASE WHEN i % 2 = 0 THEN 'acme' ELSE 'globex' END, i FROM generate_series(1, 100000) i;
		ANALYZE bench;
		GRANT SELECT ON bench TO `+ident(d.app))
	app := d.connect(d.app)
	tok, _ := mustSigner(b, 0, keyA).Sign("acme", identity(b, app), time.Now())
	for _, form := range []struct{ name, qual string }{
		{"setting", "org_id = current_setting('app.current_org', true)"},
		{"function", "org_id = tenancy.current_org()"},
		{"subquery", "org_id = (SELECT tenancy.current_org())"},
	} {
		b.Run(form.name, func(b *testing.B) {
			ctx := ctxT(b)
			tx, err := app.Begin(ctx)
			if err != nil {
				b.Fatal(err)
			}
			defer tx.Rollback(ctx)
			if _, err := tx.Exec(ctx, "SET LOCAL "+TokenSetting+" TO '"+tok+"'; SET LOCAL app.current_org TO 'acme'; SET LOCAL max_parallel_workers_per_gather = 0"); err != nil {
				b.Fatal(err)
			}
			query := "SELECT count(*) FROM bench WHERE " + form.qual
			var n int
			for b.Loop() {
				if err := tx.QueryRow(ctx, query).Scan(&n); err != nil {
					b.Fatal(err)
				}
			}
			if n != 50000 {
				b.Fatalf("counted %d rows, want 50000", n)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100000, "ns/row")
		})
	}
}
