package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/wardenmcp/warden/internal/approval"
	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/pipeline"
)

// states are the approval list's filters, in the order the page offers them.
var states = []string{approval.Pending, approval.Approved, approval.Denied, approval.Expired, approval.Used, "all"}

type approvalsData struct {
	Configured bool
	State      string
	States     []string
	Rows       []approvalRow
}

type approvalRow struct {
	*approval.Request
	Approved int // approvals so far
}

func (c *console) approvals(w http.ResponseWriter, r *http.Request, s *session) {
	d := approvalsData{Configured: c.o.Approvals != nil, State: r.URL.Query().Get("state"), States: states}
	p := page{Title: "Approvals", Nav: "approvals", Data: &d}
	if d.State == "" {
		d.State = approval.Pending
	}
	if !slices.Contains(states, d.State) {
		c.fail(w, r, s, http.StatusBadRequest, "No such state",
			fmt.Sprintf("There is no state %q: choose one of %s.", d.State, strings.Join(states, ", ")))
		return
	}
	if !d.Configured {
		c.render(w, r, s, http.StatusOK, "approvals", p)
		return
	}
	st := d.State
	if st == "all" {
		st = ""
	}
	all, err := c.o.Approvals.List(r.Context(), st)
	if err != nil {
		c.internal(w, r, s, "listing approval requests", err)
		return
	}
	for _, req := range all {
		if req.VisibleTo(s.Principal.Tenant) {
			d.Rows = append(d.Rows, approvalRow{req, req.ApprovalCount()})
		}
	}
	c.render(w, r, s, http.StatusOK, "approvals", p)
}

type approvalData struct {
	approvalRow
	Args   string  // pretty JSON
	DryRun string  // pretty JSON, or "" if there was no dry run
	Effect *effect // the dry run read as a SQL tool's effect, if it is one
	Reason string  // the reason typed, kept when a decision is refused
}

// effect is a SQL dry run, laid out for approvers: each touched row with
// its columns before and after.
type effect struct {
	RowsAffected int64
	Truncated    bool
	Note         string
	Changes      []change
}

type change struct {
	Table, Op string
	Columns   []changeColumn
}

type changeColumn struct {
	Name, Before, After string
	Changed             bool
}

// readEffect reads a dry-run result in the shape of source.Effect, or
// returns nil if it is not one.
func readEffect(raw []byte) *effect {
	var e struct {
		RowsAffected *int64 `json:"rows_affected"`
		Truncated    bool   `json:"truncated"`
		Note         string `json:"note"`
		Changes      []struct {
			Table  string                     `json:"table"`
			Op     string                     `json:"op"`
			Before map[string]json.RawMessage `json:"before"`
			After  map[string]json.RawMessage `json:"after"`
		} `json:"changes"`
	}
	if len(raw) == 0 || json.Unmarshal(raw, &e) != nil || e.RowsAffected == nil {
		return nil
	}
	out := &effect{RowsAffected: *e.RowsAffected, Truncated: e.Truncated, Note: e.Note}
	for _, ch := range e.Changes {
		names := map[string]bool{}
		for k := range ch.Before {
			names[k] = true
		}
		for k := range ch.After {
			names[k] = true
		}
		c := change{Table: ch.Table, Op: ch.Op}
		for _, n := range slices.Sorted(maps.Keys(names)) {
			b, a := string(ch.Before[n]), string(ch.After[n])
			c.Columns = append(c.Columns, changeColumn{Name: n, Before: b, After: a, Changed: b != a})
		}
		out.Changes = append(out.Changes, c)
	}
	return out
}

// approval shows one request.
func (c *console) approval(w http.ResponseWriter, r *http.Request, s *session) {
	req, ok := c.getApproval(w, r, s)
	if !ok {
		return
	}
	c.showApproval(w, r, s, http.StatusOK, req, "", c.takeFlash(r, s), "")
}

// getApproval reads the request the path names, or writes an error page.
func (c *console) getApproval(w http.ResponseWriter, r *http.Request, s *session) (*approval.Request, bool) {
	if c.o.Approvals == nil {
		c.fail(w, r, s, http.StatusNotFound, "Approvals not configured", "This server keeps no approval queue.")
		return nil, false
	}
	id := r.PathValue("id")
	req, err := c.o.Approvals.Get(r.Context(), id)
	if err == nil && !req.VisibleTo(s.Principal.Tenant) {
		err = approval.ErrNotFound // another tenant's request does not exist for this user
	}
	if errors.Is(err, approval.ErrNotFound) {
		c.fail(w, r, s, http.StatusNotFound, "No such request", fmt.Sprintf("No approval request has the id %q.", id))
		return nil, false
	}
	if err != nil {
		c.internal(w, r, s, "reading an approval request", err)
		return nil, false
	}
	return req, true
}

func (c *console) showApproval(w http.ResponseWriter, r *http.Request, s *session, status int, req *approval.Request, alert, flash, reason string) {
	c.render(w, r, s, status, "approval", page{
		Title: req.Tool + " · " + req.ID, Nav: "approvals", Alert: alert, Flash: flash,
		Data: approvalData{approvalRow: approvalRow{req, req.ApprovalCount()}, Args: pretty(req.Args), DryRun: pretty(req.DryRun), Effect: readEffect(req.DryRun), Reason: reason},
	})
}

// decide approves or denies a request, as the signed-in principal and with
// its groups, as `warden approvals approve` does.
func (c *console) decide(w http.ResponseWriter, r *http.Request, s *session) {
	req, ok := c.getApproval(w, r, s)
	if !ok {
		return
	}
	verb, reason := r.PostForm.Get("decision"), strings.TrimSpace(r.PostForm.Get("reason"))
	switch {
	case verb != "approve" && verb != "deny":
		c.showApproval(w, r, s, http.StatusBadRequest, req, "Choose Approve or Deny.", "", reason)
		return
	case verb == "deny" && reason == "":
		c.showApproval(w, r, s, http.StatusBadRequest, req, "To deny a request, give a reason: the caller is told why.", "", reason)
		return
	}
	ctx, p := r.Context(), s.Principal
	got, err := c.o.Approvals.Decide(ctx, req.ID, approval.Decision{Approver: p.ID, Tenant: p.Tenant, Approve: verb == "approve", Reason: reason}, p.Groups)
	if err != nil {
		status, msg := refusal(err, req)
		if status == 0 {
			c.internal(w, r, s, "deciding on an approval request", err)
			return
		}
		if status == http.StatusForbidden {
			rec := c.actionRecord(r, s, "approvals/"+verb)
			rec.Target, rec.ToolVersion, rec.ArgsHash = req.Tool, req.ToolVersion, req.ArgsHash
			rec.Phase, rec.Decision, rec.Status, rec.ErrorCode = audit.Refusal, audit.Deny, audit.StatusRefused, string(pipeline.PermissionDenied)
			rec.Reason = fmt.Sprintf("%s %s requested by %s (%s) refused: %v", verb, req.ID, req.Principal, req.Tenant, err)
			if err := c.o.Record(ctx, rec); err != nil {
				c.log.Error("console: a refused decision was not audited", "err", err)
			}
		}
		if now, err := c.o.Approvals.Get(ctx, req.ID); err == nil {
			req = now // show the request as it is now
		}
		c.showApproval(w, r, s, status, req, msg, "", reason)
		return
	}

	rec := approval.DecisionRecord(got, p.ID, "console", verb, reason)
	rec.Tenant, rec.SessionID, rec.RemoteAddr = p.Tenant, s.handle(), r.RemoteAddr
	if err := c.o.Record(ctx, rec); err != nil {
		c.log.Error("console: a decision was not audited", "approval", got.ID, "err", err)
		c.showApproval(w, r, s, http.StatusInternalServerError, got, fmt.Sprintf(
			"Your decision was made (the request is now %s), but it could not be recorded in the audit log. Tell the operator that the audit log is not accepting records.",
			got.State), "", "")
		return
	}
	msg := "Approved."
	switch got.State {
	case approval.Denied:
		msg = "Denied."
	case approval.Pending:
		msg = fmt.Sprintf("Recorded: %d of %d approvals.", got.ApprovalCount(), got.Needed)
	}
	c.setFlash(r, s, msg)
	http.Redirect(w, r, "/console/approvals/"+url.PathEscape(got.ID), http.StatusSeeOther)
}

// refusal turns an error of Store.Decide into a status and a message for
// the approver, or 0 if it is not a refusal.
func refusal(err error, req *approval.Request) (int, string) {
	switch {
	case errors.Is(err, approval.ErrSelfApproval):
		return http.StatusForbidden, "You made this request, so you cannot decide on it: another approver must."
	case errors.Is(err, approval.ErrNotApprover):
		return http.StatusForbidden, fmt.Sprintf("You cannot decide on this request: you are not in its approver group (%s).", strings.Join(req.Groups, " or "))
	case errors.Is(err, approval.ErrAlreadyDecided):
		return http.StatusConflict, "You have already decided on this request; each approver decides once."
	case errors.Is(err, approval.ErrExpired):
		return http.StatusConflict, "This request has expired, so it can no longer be approved or denied. The caller must ask again."
	case errors.Is(err, approval.ErrNotPending):
		return http.StatusConflict, "This request is no longer pending, so it can no longer be approved or denied."
	case errors.Is(err, approval.ErrNotFound):
		return http.StatusNotFound, "This approval request no longer exists."
	}
	return 0, ""
}
