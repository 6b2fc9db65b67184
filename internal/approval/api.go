package approval

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/wardenmcp/warden/pipeline"
)

// APIScope is the scope a principal needs to use the approvals API.
const APIScope = "warden.approvals"

// APIPrefix is where the approvals API is served.
const APIPrefix = "/api/v1/approvals/"

// maxDecisionBody caps the body of a decision.
const maxDecisionBody = 16 << 10

// API serves the approval queue to approvers' tools as JSON, under
// APIPrefix, for a principal authenticated by the server:
//
//	GET  /api/v1/approvals/?state=pending   the requests in a state (default pending; "all")
//	GET  /api/v1/approvals/ID               one request
//	POST /api/v1/approvals/ID/approve       {"reason": "..."}
//	POST /api/v1/approvals/ID/deny          {"reason": "..."}, reason required
//
// The principal decides as itself, with its own groups; the store enforces
// that nobody decides on their own request. Errors are JSON objects
// {"error_code", "message"} with a fitting status.
type API struct {
	Store Store
	// Record audits a decision; a decision that cannot be audited is still
	// made, and the answer says so.
	Record func(ctx context.Context, r *Request, p *pipeline.Principal, verb, reason string) error
	Log    *slog.Logger
}

// ServeHTTP answers one request of principal p.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request, p *pipeline.Principal) {
	rest := strings.TrimPrefix(r.URL.Path, APIPrefix)
	id, verb, _ := strings.Cut(rest, "/")
	switch {
	case id == "" && r.Method == http.MethodGet:
		st := r.URL.Query().Get("state")
		switch st {
		case "":
			st = Pending
		case "all":
			st = ""
		case Pending, Approved, Denied, Expired, Used:
		default:
			a.fail(w, http.StatusBadRequest, pipeline.InvalidArgument, "state must be pending, approved, denied, expired, used or all")
			return
		}
		all, err := a.Store.List(r.Context(), st)
		if err != nil {
			a.internal(w, err)
			return
		}
		visible := []*Request{}
		for _, req := range all {
			if req.VisibleTo(p.Tenant) {
				visible = append(visible, req)
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"approvals": visible})
	case id != "" && verb == "" && r.Method == http.MethodGet:
		if req, ok := a.get(w, r, p, id); ok {
			writeJSON(w, http.StatusOK, req)
		}
	case id != "" && (verb == "approve" || verb == "deny") && r.Method == http.MethodPost:
		a.decide(w, r, p, id, verb)
	case verb == "approve" || verb == "deny":
		w.Header().Set("Allow", http.MethodPost)
		a.fail(w, http.StatusMethodNotAllowed, pipeline.InvalidArgument, "decisions are POSTed")
	case verb == "":
		w.Header().Set("Allow", http.MethodGet)
		a.fail(w, http.StatusMethodNotAllowed, pipeline.InvalidArgument, "requests are read with GET")
	default:
		a.fail(w, http.StatusNotFound, pipeline.NotFound, "no such endpoint; see the approvals API in the README")
	}
}

// get reads request id for p, or answers that there is none: another
// tenant's request does not exist for p.
func (a *API) get(w http.ResponseWriter, r *http.Request, p *pipeline.Principal, id string) (*Request, bool) {
	req, err := a.Store.Get(r.Context(), id)
	if err == nil && !req.VisibleTo(p.Tenant) {
		err = ErrNotFound
	}
	if err != nil {
		a.storeError(w, err)
		return nil, false
	}
	return req, true
}

func (a *API) decide(w http.ResponseWriter, r *http.Request, p *pipeline.Principal, id, verb string) {
	var body struct {
		Reason string `json:"reason"`
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		a.fail(w, http.StatusUnsupportedMediaType, pipeline.InvalidArgument, "Content-Type must be application/json")
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxDecisionBody))
	if err != nil {
		a.fail(w, http.StatusRequestEntityTooLarge, pipeline.InvalidArgument, "the body is too large")
		return
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if len(data) > 0 {
		if err := dec.Decode(&body); err != nil {
			a.fail(w, http.StatusBadRequest, pipeline.InvalidArgument, "the body must be a JSON object {\"reason\": \"...\"}")
			return
		}
	}
	approve := verb == "approve"
	if !approve && strings.TrimSpace(body.Reason) == "" {
		a.fail(w, http.StatusBadRequest, pipeline.InvalidArgument, "a reason is required to deny: the caller is told why")
		return
	}
	if _, ok := a.get(w, r, p, id); !ok {
		return
	}
	req, err := a.Store.Decide(r.Context(), id, Decision{Approver: p.ID, Tenant: p.Tenant, Approve: approve, Reason: body.Reason}, p.Groups)
	if err != nil {
		a.storeError(w, err)
		return
	}
	out := struct {
		*Request
		Warning string `json:"warning,omitempty"`
	}{Request: req}
	if a.Record != nil {
		if err := a.Record(r.Context(), req, p, verb, body.Reason); err != nil {
			a.log().Error("approvals API: decision not audited", "id", id, "err", err)
			out.Warning = "the decision is recorded in the approval queue, but not in the audit log"
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// storeError answers a store error: the caller's to fix, or internal.
func (a *API) storeError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrOtherTenant):
		a.fail(w, http.StatusNotFound, pipeline.NotFound, "no such approval request")
	case errors.Is(err, ErrSelfApproval), errors.Is(err, ErrNotApprover):
		a.fail(w, http.StatusForbidden, pipeline.PermissionDenied, err.Error())
	case errors.Is(err, ErrNotPending), errors.Is(err, ErrExpired), errors.Is(err, ErrAlreadyDecided):
		a.fail(w, http.StatusConflict, pipeline.ApprovalDenied, err.Error())
	default:
		a.internal(w, err)
	}
}

func (a *API) internal(w http.ResponseWriter, err error) {
	a.log().Error("approvals API: store failed", "err", err)
	a.fail(w, http.StatusServiceUnavailable, pipeline.Unavailable, "the approval store is unavailable; retry later")
}

func (a *API) fail(w http.ResponseWriter, status int, code pipeline.Code, msg string) {
	writeJSON(w, status, &pipeline.Error{Code: code, Message: msg})
}

func (a *API) log() *slog.Logger {
	if a.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.Log
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
