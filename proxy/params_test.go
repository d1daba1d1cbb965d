package proxy

import (
	"slices"
	"testing"
)

func TestSetConfigNamesFollowsLiteralNamesOnly(t *testing.T) {
	s := &session{srv: &Server{cfg: Config{Setting: "tenant.org", TokenSetting: "tenant.token"}}}
	cases := []struct {
		sql   string
		names []string // nil: cannot be followed
	}{
		{"SELECT set_config('work_mem', '3MB', false)", []string{"work_mem"}},
		{"select PG_CATALOG.SET_CONFIG ( 'MyApp.User' , $1, false), set_config('search_path', 'x', true)", []string{"myapp.user", "search_path"}},
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
	}
	for _, c := range cases {
		names, ok := s.setConfigNames([]byte(c.sql))
		if c.names == nil && ok || c.names != nil && (!ok || !slices.Equal(names, c.names) && len(names)+len(c.names) > 0) {
			t.Errorf("setConfigNames(%q) = %q, %v; want %q", c.sql, names, ok, c.names)
		}
	}
}
