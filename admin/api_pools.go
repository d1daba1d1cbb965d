package admin

import (
	"net/http"
	"time"

	"github.com/pgtenant/pgtenant/poolmgr"
)

// poolJSON is one live pool of one tenant and database.
type poolJSON struct {
	Database     string  `json:"database"`
	Tenant       string  `json:"tenant"`
	Size         int     `json:"size"`
	MinIdle      int     `json:"min_idle"`
	Total        int     `json:"total"`
	Active       int     `json:"active"`
	Idle         int     `json:"idle"`
	Dialing      int     `json:"dialing"`
	Waiting      int     `json:"waiting"`
	Acquires     int64   `json:"acquires"`
	WaitCount    int64   `json:"wait_count"`
	WaitSeconds  float64 `json:"wait_seconds"`
	WaitTimeouts int64   `json:"wait_timeouts"`
	Dials        int64   `json:"dials"`
	DialErrors   int64   `json:"dial_errors"`
	WaitP99      float64 `json:"wait_p99_seconds"`
}

// poolsPage is the answer of the pool endpoints.
type poolsPage struct {
	Pools []poolJSON `json:"pools"`
}

func (a *API) allPools(w http.ResponseWriter, _ *http.Request, _ *caller) error {
	writeJSON(w, http.StatusOK, a.poolsOf(func(poolmgr.PoolStat) bool { return true }))
	return nil
}

func (a *API) orgPools(w http.ResponseWriter, r *http.Request, _ *caller) error {
	id := r.PathValue("id")
	if _, err := a.Store.Get(r.Context(), id); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a.poolsOf(func(p poolmgr.PoolStat) bool { return p.Key.Tenant == id }))
	return nil
}

func (a *API) poolsOf(keep func(poolmgr.PoolStat) bool) poolsPage {
	page := poolsPage{Pools: []poolJSON{}}
	var p99 map[string]float64
	if a.WaitP99 != nil {
		p99 = a.WaitP99()
	}
	for _, p := range a.poolStats() {
		if !keep(p) {
			continue
		}
		page.Pools = append(page.Pools, poolJSON{
			Database: p.Key.Database, Tenant: p.Key.Tenant,
			Size: p.Size, MinIdle: p.MinIdle, Total: p.Total, Active: p.InUse, Idle: p.Idle, Dialing: p.Dialing, Waiting: p.Waiting,
			Acquires: p.Acquires, WaitCount: p.WaitCount, WaitSeconds: p.WaitDuration.Seconds(), WaitTimeouts: p.WaitTimeouts,
			Dials: p.Dials, DialErrors: p.DialErrors, WaitP99: p99[p.Key.Tenant],
		})
	}
	return page
}

// Permissions /me lists, for a UI to show what the caller may use.
const (
	permOrgsCreate   = "orgs:create"
	permOrgsList     = "orgs:list"
	permOrgsRead     = "orgs:read"
	permOrgsUpdate   = "orgs:update"
	permOrgsPool     = "orgs:update_pool"
	permOrgsStatus   = "orgs:change_status"
	permMembers      = "members:manage"
	permAuditRead    = "audit:read"
	permPoolsReadAll = "pools:read_all"
)

// meJSON is the answer of GET /me.
type meJSON struct {
	Subject   string     `json:"subject"`
	Org       string     `json:"org,omitempty"`
	Roles     []string   `json:"roles"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// PlatformAdmin: the caller may do everything, in every org.
	PlatformAdmin bool `json:"platform_admin"`
	// OrgAdmin: the caller administers Org.
	OrgAdmin bool `json:"org_admin"`
	// Permissions lists what the caller may do (in Org, for an org admin).
	Permissions []string `json:"permissions"`
}

// me says who the caller is and what it may do: everywhere for a platform
// admin, else in the org its token names, or in ?org= for a token that
// names none (an admin by membership).
func (a *API) me(w http.ResponseWriter, r *http.Request, c *caller) error {
	org := c.Org
	if org == "" {
		org = r.URL.Query().Get("org")
	}
	out := meJSON{Subject: c.Subject, Org: org, Roles: c.Roles, PlatformAdmin: c.platform, Permissions: []string{}}
	if out.Roles == nil {
		out.Roles = []string{}
	}
	if !c.ExpiresAt.IsZero() {
		out.ExpiresAt = &c.ExpiresAt
	}
	switch {
	case c.platform:
		out.OrgAdmin = org != ""
		out.Permissions = []string{permOrgsCreate, permOrgsList, permOrgsRead, permOrgsUpdate, permOrgsPool,
			permOrgsStatus, permMembers, permAuditRead, permPoolsReadAll}
	case org != "":
		ok, err := a.isOrgAdmin(r.Context(), c, org)
		if err != nil {
			return err
		}
		if out.OrgAdmin = ok; ok {
			out.Permissions = []string{permOrgsList, permOrgsRead, permOrgsUpdate, permMembers, permAuditRead}
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
