package admin

import (
	"net/http"

	"github.com/pgtenant/pgtenant/tenants"
)

// membersPage is the answer of GET /orgs/{id}/members.
type membersPage struct {
	Members []tenants.Member `json:"members"`
}

func (a *API) listMembers(w http.ResponseWriter, r *http.Request, _ *caller) error {
	members, err := a.Store.Members(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if members == nil {
		members = []tenants.Member{}
	}
	writeJSON(w, http.StatusOK, membersPage{members})
	return nil
}

// memberBody is the body of PUT /orgs/{id}/members/{subject}; the org and
// subject come from the path. Empty fields take the store's defaults
// (role member, status active).
type memberBody struct {
	Role   string `json:"role"`
	Status string `json:"status"`
}

func (a *API) putMember(w http.ResponseWriter, r *http.Request, c *caller) error {
	id, subject := r.PathValue("id"), r.PathValue("subject")
	var body memberBody
	if err := decodeBody(w, r, &body, false); err != nil {
		return err
	}
	m, err := a.Store.PutMember(r.Context(), c.Subject, tenants.Member{OrgID: id, Subject: subject, Role: body.Role, Status: body.Status})
	if err != nil {
		return err
	}
	a.logChange(c, id, "put_member").Str("subject", subject).Str("role", m.Role).Str("status", m.Status).Msg("admin API: member saved")
	writeJSON(w, http.StatusOK, m)
	return nil
}

func (a *API) deleteMember(w http.ResponseWriter, r *http.Request, c *caller) error {
	id, subject := r.PathValue("id"), r.PathValue("subject")
	if err := a.Store.DeleteMember(r.Context(), c.Subject, id, subject); err != nil {
		return err
	}
	a.logChange(c, id, "delete_member").Str("subject", subject).Msg("admin API: member removed")
	w.WriteHeader(http.StatusNoContent)
	return nil
}
