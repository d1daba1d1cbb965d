package proxy

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

func TestSetConfigNamesFollowsLiteralNamesOnly(t *testing.T) {
	s := &session{srv: &Server{cfg: Config{Setting: "tenant.org", TokenSetting: "tenant.token"}}}
	cases := []struct {
		sql   string
		names []string // nil: cannot be followed
	}{
		{"SELECT set_config('work_mem', '3MB', false)", []string{"work_mem"}},
		{"select PG_CATALOG.SET_CONFIG ( 'MyApp.User' , $1, false), set_config('search_path', 'x', false)", []string{"myapp.user", "search_path"}},
		{"SELECT 1", []string{}},
		{"SELECT set_config($1, $2, false)", nil},
		{"SELECT set_config('a' || 'b', 'x', false)", nil},
		{"SELECT set_config(E'work_mem', '1MB', false)", nil},
		{"SELECT set_config('it''s', 'x', false)", nil},
		{"SELECT set_config('work mem', 'x', false)", nil},
		{"SELECT set_config('app.anything', 'x', false)", nil},
		{"SELECT set_config('tenant.org', 'x', false)", nil},
		{"SELECT set_config('Tenant.Token', 'x', false)", nil},
		{"SELECT set_config('role', 'x', false)", nil},
		{"SELECT set_config", nil},
		{"SELECT set_config('work_mem", nil},
		{"SELECT my_set_config('x'), set_configs('y')", []string{}},
		{"SELECT set_config('request.jwt.claims', $1, true), set_config('search_path', 'x', TRUE )", []string{}},
		{"SELECT set_config('a', lower($1), true), set_config('b', 'x,y', false)", []string{"b"}},
		{"SELECT set_config('a', 'x'', true)', false)", []string{"a"}},
		{"SELECT set_config('a', $$,true)$$, false)", []string{"a"}},
		{"SELECT set_config('a', E'\\',true)', false)", []string{"a"}},
		{"SELECT set_config('a', 'v', /*,true)*/ false)", []string{"a"}},
		{"SELECT set_config('a', 'v', -- ,true)\n false)", []string{"a"}},
		{"SELECT set_config('a', 'v', \"true\")", []string{"a"}},
		{"SELECT set_config('a', 'v', NOT true)", []string{"a"}},
		{"SELECT set_config('a', 'v', true", []string{"a"}},
		{"DO $$BEGIN PERFORM set_config('a', 'v', false); END$$", nil},
		{"SELECT 'set_config(''a'', ''v'', false)'", nil},
		{"SELECT set_config('a', 'v', true) -- and set_config", nil},
		{`SELECT "set_config"('a', 'v', false)`, nil},
	}
	for _, c := range cases {
		names, ok := s.setConfigNames([]byte(c.sql))
		if c.names == nil && ok || c.names != nil && (!ok || !slices.Equal(names, c.names) && len(names)+len(c.names) > 0) {
			t.Errorf("setConfigNames(%q) = %q, %v; want %q", c.sql, names, ok, c.names)
		}
	}
}

// FuzzSetConfigNames checks setConfigNames against PostgreSQL's own parser:
// when it leaves a set_config('a', ...) out as transaction-local, every
// set_config call naming 'a' in the parse tree has the constant true for
// is_local. A wrong answer there would leave a session setting on a pooled
// backend connection unrecorded.
func FuzzSetConfigNames(f *testing.F) {
	for _, s := range []string{"'v', true)", "$1, true), set_config('a', 'w', false)", "'x,y', TRUE) FROM t", "lower('a'), true)",
		"'v', /*,true)*/ false)", "$$,true)$$, false)", "'v', true) + 1", "'v', 'true')", "'v', (true))"} {
		f.Add(s)
	}
	s := &session{srv: &Server{cfg: Config{Setting: "tenant.org", TokenSetting: "tenant.token"}}}
	f.Fuzz(func(t *testing.T, args string) {
		sql := "SELECT set_config('a', " + args
		names, ok := s.setConfigNames([]byte(sql))
		if !ok || slices.Contains(names, "a") {
			return
		}
		tree, err := pg_query.ParseToJSON(sql)
		if err != nil {
			return // PostgreSQL would not run it
		}
		var root any
		if err := json.Unmarshal([]byte(tree), &root); err != nil {
			t.Fatal(err)
		}
		walkJSON(root, func(m map[string]any) {
			call, _ := m["FuncCall"].(map[string]any)
			if call == nil || !strings.Contains(fmt.Sprint(call["funcname"]), "set_config") {
				return
			}
			args, _ := call["args"].([]any)
			if len(args) == 0 || !strings.Contains(fmt.Sprint(args[0]), "sval:a]") {
				return
			}
			if len(args) != 3 || fmt.Sprint(args[2]) != "map[A_Const:map[boolval:map[boolval:true] location:"+fmt.Sprint(locationOf(args[2]))+"]]" {
				t.Fatalf("%q: set_config('a', ...) left out as transaction-local, but PostgreSQL reads %v", sql, args)
			}
		})
	})
}

func locationOf(node any) any {
	m, _ := node.(map[string]any)
	c, _ := m["A_Const"].(map[string]any)
	return c["location"]
}

func walkJSON(v any, fn func(map[string]any)) {
	switch v := v.(type) {
	case map[string]any:
		fn(v)
		for _, x := range v {
			walkJSON(x, fn)
		}
	case []any:
		for _, x := range v {
			walkJSON(x, fn)
		}
	}
}
