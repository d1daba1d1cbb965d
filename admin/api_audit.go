package admin

import (
	"encoding/csv"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pgtenant/pgtenant/audit"
)

// maxAuditLimit is the most events one request returns.
const maxAuditLimit = 1000

// auditPage is the JSON answer of GET /audit/events.
type auditPage struct {
	Events []audit.StoredEvent `json:"events"`
	// NextBeforeID is the before_id of the next (older) page, or null when
	// this page is the last.
	NextBeforeID *int64 `json:"next_before_id"`
}

func (a *API) auditEvents(w http.ResponseWriter, r *http.Request, c *caller) error {
	if a.Audit == nil {
		return &apiError{http.StatusServiceUnavailable, "audit_unavailable",
			"the audit log is not readable here: this pgtenant has no control database configured (audit.dsn)"}
	}
	q := r.URL.Query()
	if !c.platform {
		// An org admin reads its own org's events only.
		org := q.Get("org")
		if org == "" {
			org = c.Org
			q.Set("org", org)
		}
		if err := a.requireOrgAdmin(r.Context(), c, org); err != nil {
			return err
		}
	}
	f, err := auditFilter(q)
	if err != nil {
		return err
	}
	csvFormat := false
	switch q.Get("format") {
	case "", "json":
	case "csv":
		csvFormat = true
	default:
		return badRequest("format=%q is not known; use json or csv", q.Get("format"))
	}
	events, err := audit.Tail(r.Context(), a.Audit, f)
	if err != nil {
		return err
	}
	var next *int64
	if len(events) == f.Limit {
		id := events[len(events)-1].ID
		next = &id
	}
	if csvFormat {
		return writeAuditCSV(w, events, next)
	}
	if events == nil {
		events = []audit.StoredEvent{}
	}
	writeJSON(w, http.StatusOK, auditPage{events, next})
	return nil
}

// auditFilter reads the query of GET /audit/events. Pages go back by id,
// the order events were stored in, so that paging neither skips nor
// repeats events replayed late from the spool.
func auditFilter(q url.Values) (audit.TailFilter, error) {
	f := audit.TailFilter{Org: q.Get("org"), Reason: q.Get("reason"), Subject: q.Get("subject"), ByID: true}
	var err error
	if f.Since, err = timeParam(q, "since"); err != nil {
		return f, err
	}
	if f.Until, err = timeParam(q, "until"); err != nil {
		return f, err
	}
	if f.Limit, err = intParam(q, "limit", audit.DefaultTailLimit, 1, maxAuditLimit); err != nil {
		return f, err
	}
	if s := q.Get("before_id"); s != "" {
		if f.BeforeID, err = strconv.ParseInt(s, 10, 64); err != nil || f.BeforeID < 1 {
			return f, badRequest("before_id=%q must be an event id (a whole number from 1 up), the next_before_id of the previous page", s)
		}
	}
	return f, nil
}

// timeParam reads an RFC 3339 time; zero when absent.
func timeParam(q url.Values, name string) (time.Time, error) {
	s := q.Get(name)
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, badRequest("%s=%q is not an RFC 3339 time such as 2026-11-27T10:00:00Z", name, s)
	}
	return t, nil
}

// auditCSVHeader names the columns of the CSV answer.
var auditCSVHeader = []string{"id", "time", "org", "subject", "token_id", "client_addr", "reason", "rule", "sqlstate", "fingerprint", "detail", "instance"}

// writeAuditCSV answers with events as CSV; the next page's before_id goes
// in the X-Next-Before-Id header.
func writeAuditCSV(w http.ResponseWriter, events []audit.StoredEvent, next *int64) error {
	h := w.Header()
	h.Set("Content-Type", "text/csv; charset=utf-8")
	h.Set("Content-Disposition", `attachment; filename="audit-events.csv"`)
	if next != nil {
		h.Set("X-Next-Before-Id", strconv.FormatInt(*next, 10))
	}
	cw := csv.NewWriter(w)
	// Write errors mean the client has gone; the status is sent already.
	_ = cw.Write(auditCSVHeader)
	for _, e := range events {
		_ = cw.Write([]string{strconv.FormatInt(e.ID, 10), e.Time.UTC().Format(time.RFC3339Nano),
			csvCell(e.Org), csvCell(e.Subject), csvCell(e.TokenID), csvCell(e.ClientAddr), csvCell(e.Reason),
			csvCell(e.Rule), csvCell(e.SQLState), csvCell(e.Fingerprint), csvCell(e.Detail), csvCell(e.Instance)})
	}
	cw.Flush()
	return nil
}

// csvCell defuses values a spreadsheet would run as a formula: the values
// come from clients (a subject, a statement fingerprint) and the file is
// meant to be opened by an admin.
func csvCell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
