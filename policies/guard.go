package policies

import (
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/pganalyze/pg_query_go/v6/parser"
)

// DefaultGuardCacheSize is the number of decisions a Guard caches when
// GuardConfig.CacheSize is zero.
const DefaultGuardCacheSize = 10000

// MaxCachedStatementLen is the longest statement text whose decision is
// cached. Longer texts are rare, seldom repeated, and would let one client
// fill the cache's memory (at most CacheSize × 8 KiB); they are parsed every
// time.
const MaxCachedStatementLen = 8 << 10

// alwaysReserved are the settings tenants may never touch, whatever the
// configuration adds: the tenant context, pgtenant's own settings, and the
// settings that switch off row-level security or change the role.
var alwaysReserved = []string{"app.*", "pgtenant.*", "row_security", "role", "session_authorization"}

// GuardConfig configures a Guard. The zero value is the default policy.
type GuardConfig struct {
	// Allow lists rule names (see RuleNames) to switch off, such as "ddl"
	// or "truncate". RuleTooComplex cannot be switched off.
	Allow []string
	// BlockAdvisoryLocks switches on the advisory_lock rule, which is off by
	// default because applications use advisory locks legitimately; their
	// keys are shared by every tenant of a database.
	BlockAdvisoryLocks bool
	// ReservedSettings adds settings tenants may not SET, RESET or
	// set_config, on top of app.*, pgtenant.*, row_security, role and
	// session_authorization. An entry is a setting name or a prefix ending
	// in "." or "*" ("myext.*", "myext." and "myext.*" match myext.x).
	ReservedSettings []string
	// CacheSize bounds the number of cached decisions; zero means
	// DefaultGuardCacheSize and a negative value disables the cache.
	CacheSize int
}

// Guard classifies the statements a tenant sends and blocks those a tenant
// must never run (see RuleNames and DESIGN.md, "The tenancy contract", item
// 5). It uses PostgreSQL's own parser (libpg_query, PostgreSQL 17 grammar).
// A Guard is safe for concurrent use.
//
// Check first runs a cheap lexical pre-check that lets plain SELECT, INSERT,
// UPDATE, DELETE, WITH, VALUES, SHOW and transaction-control statements
// through without parsing when they contain nothing that could be risky;
// other texts are parsed once and their decision is cached by exact text.
//
// The guard is a second layer: the signed tenant context is what holds if
// the guard misses something.
type Guard struct {
	enabled  [numRules]bool
	reserved settingPatterns
	cache    *verdictCache

	checks, prechecked, cacheHits, parses, parseErrors, blocked atomic.Uint64
}

// GuardStats is a snapshot of a Guard's counters since it was created.
type GuardStats struct {
	Checks      uint64 // calls to Check
	Prechecked  uint64 // allowed by the pre-check, without a parse or a cache look-up
	CacheHits   uint64 // decided by the cache
	Parses      uint64 // texts parsed
	ParseErrors uint64 // parsed texts that are not valid SQL (allowed; PostgreSQL rejects them)
	Blocked     uint64 // calls to Check that returned a blocked Verdict
}

// Verdict is the guard's decision on a statement text. The zero value means
// allowed.
type Verdict struct {
	// Rule is the name of the rule that blocked the statement.
	Rule string
	// Message is the error message for the client, to be sent with SQLSTATE
	// 42501. It names the rule and never contains statement text.
	Message string
	// Hint says what to do instead.
	Hint string
}

// Blocked reports whether the statement must not be forwarded.
func (v Verdict) Blocked() bool { return v.Rule != "" }

// RuleNames returns the names of all rules, for configuration validation
// and documentation.
func RuleNames() []string {
	names := make([]string, 0, numRules-1)
	for id := ruleID(1); id < numRules; id++ {
		names = append(names, rules[id].name)
	}
	return names
}

// NewGuard returns a Guard for cfg. It fails on an unknown rule name in
// Allow, on an attempt to allow RuleTooComplex, and on a malformed
// reserved setting.
func NewGuard(cfg GuardConfig) (*Guard, error) {
	g := &Guard{}
	for id := range g.enabled {
		g.enabled[id] = ruleID(id) != allowed
	}
	g.enabled[ruleAdvisoryLock] = cfg.BlockAdvisoryLocks
	for _, name := range cfg.Allow {
		id, ok := ruleByName(name)
		if !ok {
			return nil, fmt.Errorf("policies: guard: unknown rule %q in allow list (known rules: %s)", name, strings.Join(RuleNames(), ", "))
		}
		if id == ruleTooComplex {
			return nil, fmt.Errorf("policies: guard: rule %q cannot be allowed: it keeps the parser within its stack and time limits", name)
		}
		g.enabled[id] = false
	}
	var err error
	if g.reserved, err = newSettingPatterns(append(append([]string(nil), alwaysReserved...), cfg.ReservedSettings...)); err != nil {
		return nil, err
	}
	size := cfg.CacheSize
	if size == 0 {
		size = DefaultGuardCacheSize
	}
	if size > 0 {
		g.cache = newVerdictCache(size)
	}
	return g, nil
}

// Check decides whether a tenant may run sql, which may hold several
// statements separated by semicolons: if any is blocked, the whole text is.
// Text that is not valid SQL for PostgreSQL 17's grammar is allowed, because
// PostgreSQL rejects it itself (SQLSTATE 42601) and nothing of it runs; text
// nested too deeply or slow to scan is blocked (RuleTooComplex). Like
// PostgreSQL, the parser reads sql up to its first NUL byte.
func (g *Guard) Check(sql string) Verdict {
	g.checks.Add(1)
	if precheckAllows(sql) {
		g.prechecked.Add(1)
		return Verdict{}
	}
	id, ok := g.cache.get(sql)
	if ok {
		g.cacheHits.Add(1)
	} else {
		id = g.classify(sql)
		g.cache.put(sql, id)
	}
	if id == allowed {
		return Verdict{}
	}
	g.blocked.Add(1)
	return verdicts[id]
}

// Stats returns a snapshot of the guard's counters.
func (g *Guard) Stats() GuardStats {
	return GuardStats{
		Checks:      g.checks.Load(),
		Prechecked:  g.prechecked.Load(),
		CacheHits:   g.cacheHits.Load(),
		Parses:      g.parses.Load(),
		ParseErrors: g.parseErrors.Load(),
		Blocked:     g.blocked.Load(),
	}
}

// classify parses sql and walks its whole tree, bypassing pre-check and
// cache.
func (g *Guard) classify(sql string) ruleID {
	if tooComplex(sql) {
		return ruleTooComplex
	}
	g.parses.Add(1)
	tree, err := parser.ParseToJSON(sql)
	if err != nil {
		g.parseErrors.Add(1)
		return allowed
	}
	return g.checkTree(tree)
}

// settingPatterns matches setting names against exact names and prefixes.
type settingPatterns struct {
	exact    map[string]bool
	prefixes []string
}

func newSettingPatterns(entries []string) (settingPatterns, error) {
	p := settingPatterns{exact: map[string]bool{}}
	for _, e := range entries {
		name := strings.ToLower(strings.TrimSpace(e))
		prefix := strings.HasSuffix(name, "*") || strings.HasSuffix(name, ".")
		name = strings.TrimSuffix(name, "*")
		if name == "" || strings.Contains(name, "*") || !plainSettingName(name) {
			return settingPatterns{}, fmt.Errorf("policies: guard: reserved setting %q is not a setting name or a prefix ending in \".\" or \"*\"", e)
		}
		if prefix {
			p.prefixes = append(p.prefixes, name)
		} else {
			p.exact[name] = true
		}
	}
	return p, nil
}

// contains reports whether the lowercase setting name is reserved.
func (p settingPatterns) contains(name string) bool {
	if p.exact[name] {
		return true
	}
	for _, pre := range p.prefixes {
		if strings.HasPrefix(name, pre) {
			return true
		}
	}
	return false
}
