package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/audit"
	"github.com/pgtenant/pgtenant/poolmgr"
	"github.com/pgtenant/pgtenant/tenants"
)

// orgView is an org as GET /orgs lists it: the stored org plus what is live
// right now in this pgtenant instance.
type orgView struct {
	tenants.Org
	// LiveSessions is the number of client sessions of the org.
	LiveSessions int `json:"live_sessions"`
	// PoolUsage sums the org's pools over its databases. ("pool" is the
	// org's pool overrides.)
	PoolUsage poolUsage `json:"pool_usage"`
	// Blocked24h counts the org's audit events of the last 24 hours; null
	// without an audit database.
	Blocked24h *int64 `json:"blocked_24h"`
}

// poolUsage sums the gauges of a tenant's pools.
type poolUsage struct {
	Size    int `json:"size"`
	Total   int `json:"total"`
	Active  int `json:"active"`
	Idle    int `json:"idle"`
	Waiting int `json:"waiting"`
}

// orgPage is the answer of GET /orgs.
type orgPage struct {
	Orgs   []orgView `json:"orgs"`
	Total  int       `json:"total"`
	Limit  int       `json:"limit"`
	Offset int       `json:"offset"`
}

func (a *API) listOrgs(w http.ResponseWriter, r *http.Request, c *caller) error {
	if err := a.requireOrgAdmin(r.Context(), c, c.Org); err != nil {
		return err
	}
	q := r.URL.Query()
	opts := tenants.ListOptions{Search: q.Get("search")}
	var err error
	if opts.Status, err = statusParam(q); err != nil {
		return err
	}
	if opts.Limit, err = intParam(q, "limit", tenants.DefaultListLimit, 1, tenants.MaxListLimit); err != nil {
		return err
	}
	if opts.Offset, err = intParam(q, "offset", 0, 0, 1<<31-1); err != nil {
		return err
	}
	var page tenants.Page
	if c.platform {
		if page, err = a.Store.List(r.Context(), opts); err != nil {
			return err
		}
	} else if page, err = a.ownOrgPage(r, c.Org, opts); err != nil {
		return err
	}
	usage := a.poolUsage()
	sessions := a.sessions()
	blocked, err := a.blockedSince(r.Context(), page.Orgs, 24*time.Hour)
	if err != nil {
		return err
	}
	out := orgPage{Orgs: make([]orgView, 0, len(page.Orgs)), Total: page.Total, Limit: page.Limit, Offset: page.Offset}
	for _, o := range page.Orgs {
		v := orgView{Org: o, LiveSessions: sessions[o.ID], PoolUsage: usage[o.ID]}
		if blocked != nil {
			n := blocked[o.ID]
			v.Blocked24h = &n
		}
		out.Orgs = append(out.Orgs, v)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// blockedSince counts the audit events of each of orgs in the last period,
// in one query; nil without an audit database.
func (a *API) blockedSince(ctx context.Context, orgs []tenants.Org, period time.Duration) (map[string]int64, error) {
	if a.Audit == nil || len(orgs) == 0 {
		return nil, nil
	}
	ids := make([]string, len(orgs))
	for i, o := range orgs {
		ids[i] = o.ID
	}
	rows, err := a.Audit.Query(ctx, `SELECT org, count(*) FROM `+audit.Table+`
		WHERE org = ANY($1) AND at > now() - make_interval(secs => $2) AND reason <> $3 GROUP BY org`,
		ids, period.Seconds(), audit.ReasonTenantLifecycle)
	if err != nil {
		return nil, fmt.Errorf("counting recent audit events: %w", err)
	}
	out := map[string]int64{}
	var org string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&org, &n}, func() error { out[org] = n; return nil })
	if err != nil {
		return nil, fmt.Errorf("counting recent audit events: %w", err)
	}
	return out, nil
}

// ownOrgPage is an org admin's list: its own org, when the filters keep it.
func (a *API) ownOrgPage(r *http.Request, org string, opts tenants.ListOptions) (tenants.Page, error) {
	page := tenants.Page{Orgs: []tenants.Org{}, Limit: opts.Limit, Offset: opts.Offset}
	o, err := a.Store.Get(r.Context(), org)
	if errors.Is(err, tenants.ErrNotFound) {
		return page, nil
	}
	if err != nil {
		return page, err
	}
	search := strings.ToLower(opts.Search)
	matches := (opts.Status == "" || o.Status == opts.Status) &&
		(search == "" || strings.Contains(strings.ToLower(o.ID+"\x00"+o.Slug+"\x00"+o.Name), search))
	if matches {
		page.Total = 1
		if opts.Offset == 0 {
			page.Orgs = append(page.Orgs, o)
		}
	}
	return page, nil
}

func (a *API) createOrg(w http.ResponseWriter, r *http.Request, c *caller) error {
	var n tenants.NewOrg
	if err := decodeBody(w, r, &n, false); err != nil {
		return err
	}
	o, err := a.Store.Create(r.Context(), c.Subject, n)
	if err != nil {
		return err
	}
	a.logChange(c, o.ID, "create").Msg("admin API: org created")
	w.Header().Set("Location", APIPrefix+"/orgs/"+url.PathEscape(o.ID))
	writeOrg(w, http.StatusCreated, o)
	return nil
}

func (a *API) getOrg(w http.ResponseWriter, r *http.Request, _ *caller) error {
	o, err := a.Store.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeOrg(w, http.StatusOK, o)
	return nil
}

// patchBody is a PATCH request: the change, and optionally the version it
// was made against (instead of If-Match).
type patchBody struct {
	tenants.Patch
	Version *int64 `json:"version"`
}

func (a *API) patchOrg(w http.ResponseWriter, r *http.Request, c *caller) error {
	id := r.PathValue("id")
	var body patchBody
	if err := decodeBody(w, r, &body, false); err != nil {
		return err
	}
	version, err := expectedVersion(r, body.Version)
	if err != nil {
		return err
	}
	if !c.platform {
		if err := a.checkOrgAdminPatch(r, id, body.Patch); err != nil {
			return err
		}
	}
	o, err := a.Store.Update(r.Context(), c.Subject, id, version, body.Patch)
	if errors.Is(err, tenants.ErrVersionConflict) {
		return a.versionConflict(r, id, version)
	}
	if err != nil {
		return err
	}
	a.logChange(c, id, "update").Int64("version", o.Version).Strs("fields", patchedFields(body.Patch)).Msg("admin API: org updated")
	writeOrg(w, http.StatusOK, o)
	return nil
}

// checkOrgAdminPatch refuses the parts of a patch only platform admins may
// make: pool overrides and max_connections, which share the capacity of
// all tenants.
func (a *API) checkOrgAdminPatch(r *http.Request, id string, p tenants.Patch) error {
	if p.Pool != nil {
		return forbidden("pool overrides are set by platform admins; leave out \"pool\"")
	}
	if p.Settings == nil {
		return nil
	}
	cur, err := a.Store.Get(r.Context(), id)
	if err != nil {
		return err
	}
	if p.Settings.MaxConnections != cur.Settings.MaxConnections {
		return forbidden("settings.max_connections is set by platform admins; send the current value %d", cur.Settings.MaxConnections)
	}
	return nil
}

// expectedVersion reads the version a PATCH was made against from If-Match
// or the body's "version". Without one the change could overwrite another
// admin's: 428.
func expectedVersion(r *http.Request, inBody *int64) (int64, error) {
	header := strings.TrimSpace(r.Header.Get("If-Match"))
	if header == "" && inBody == nil {
		return 0, &apiError{http.StatusPreconditionRequired, "precondition_required",
			"send the version you edited, as If-Match: \"<version>\" (the ETag of GET) or \"version\" in the body, " +
				"so that a change saved meanwhile by another admin is not overwritten"}
	}
	if header == "" {
		if *inBody < 1 {
			return 0, badRequest("\"version\" must be the org's version, a number from 1 up")
		}
		return *inBody, nil
	}
	if header == "*" || strings.HasPrefix(header, "W/") || strings.Contains(header, ",") {
		return 0, badRequest("If-Match must be the one ETag of the org as GET returned it, such as \"3\"")
	}
	v, err := strconv.ParseInt(strings.Trim(header, `"`), 10, 64)
	if err != nil || v < 1 {
		return 0, badRequest("If-Match %q is not an ETag of this API; send the ETag of GET, such as \"3\"", header)
	}
	if inBody != nil && *inBody != v {
		return 0, badRequest("If-Match says version %d but the body says %d; send one", v, *inBody)
	}
	return v, nil
}

// versionConflict explains a 412: another admin saved first.
func (a *API) versionConflict(r *http.Request, id string, version int64) error {
	msg := fmt.Sprintf("another admin saved org %q first: your change was made against version %d", id, version)
	if cur, err := a.Store.Get(r.Context(), id); err == nil {
		msg += fmt.Sprintf(", the org is now at version %d (by %s)", cur.Version, cur.UpdatedBy)
	}
	return &apiError{http.StatusPreconditionFailed, "version_conflict",
		msg + "; nothing was changed: reload the org, reapply your change and send the new ETag"}
}

// patchedFields names the parts of p that are set, for the log.
func patchedFields(p tenants.Patch) []string {
	var f []string
	if p.Name != nil {
		f = append(f, "name")
	}
	if p.Settings != nil {
		f = append(f, "settings")
	}
	if p.Flags != nil {
		f = append(f, "flags")
	}
	if p.Pool != nil {
		f = append(f, "pool")
	}
	return f
}

// statusBody is the optional body of a status change.
type statusBody struct {
	Reason string `json:"reason"`
}

// setStatus returns the handler that moves an org to status.
func (a *API) setStatus(to tenants.Status, action string) func(http.ResponseWriter, *http.Request, *caller) error {
	return func(w http.ResponseWriter, r *http.Request, c *caller) error {
		id := r.PathValue("id")
		var body statusBody
		if err := decodeBody(w, r, &body, true); err != nil {
			return err
		}
		o, err := a.Store.SetStatus(r.Context(), c.Subject, id, to, body.Reason)
		if err != nil {
			return err
		}
		a.logChange(c, id, action).Str("reason", body.Reason).Msg("admin API: org status changed")
		writeOrg(w, http.StatusOK, o)
		return nil
	}
}

// historyPage is the answer of GET /orgs/{id}/history.
type historyPage struct {
	Entries []tenants.HistoryEntry `json:"entries"`
}

func (a *API) history(w http.ResponseWriter, r *http.Request, _ *caller) error {
	limit, err := intParam(r.URL.Query(), "limit", tenants.DefaultHistoryLimit, 1, tenants.MaxHistoryLimit)
	if err != nil {
		return err
	}
	entries, err := a.Store.History(r.Context(), r.PathValue("id"), limit)
	if err != nil {
		return err
	}
	if entries == nil {
		entries = []tenants.HistoryEntry{}
	}
	writeJSON(w, http.StatusOK, historyPage{entries})
	return nil
}

// writeOrg answers with o and its version as ETag.
func writeOrg(w http.ResponseWriter, status int, o tenants.Org) {
	w.Header().Set("ETag", etag(o.Version))
	writeJSON(w, status, o)
}

func etag(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }

// statusParam reads ?status=, which must be an org status when set.
func statusParam(q url.Values) (tenants.Status, error) {
	s := tenants.Status(q.Get("status"))
	switch s {
	case "", tenants.StatusActive, tenants.StatusSuspended, tenants.StatusDeprovisioned:
		return s, nil
	}
	return "", badRequest("status %q is not an org status; use %s, %s or %s",
		s, tenants.StatusActive, tenants.StatusSuspended, tenants.StatusDeprovisioned)
}

// intParam reads an integer query parameter in [lo, hi]; def when absent.
func intParam(q url.Values, name string, def, lo, hi int) (int, error) {
	s := q.Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, badRequest("%s=%q must be a whole number from %d to %d", name, s, lo, hi)
	}
	return n, nil
}

// poolUsage sums the live pools per tenant.
func (a *API) poolUsage() map[string]poolUsage {
	usage := map[string]poolUsage{}
	for _, p := range a.poolStats() {
		u := usage[p.Key.Tenant]
		u.Size += p.Size
		u.Total += p.Total
		u.Active += p.InUse
		u.Idle += p.Idle
		u.Waiting += p.Waiting
		usage[p.Key.Tenant] = u
	}
	return usage
}

func (a *API) poolStats() []poolmgr.PoolStat {
	if a.Pools == nil {
		return nil
	}
	return a.Pools()
}

func (a *API) sessions() map[string]int {
	if a.Sessions == nil {
		return nil
	}
	return a.Sessions()
}
