// Package approval holds risky tool calls until people other than the
// caller approve them, and lets each approved call run exactly once.
//
// A call to a target whose spec has a Gate is refused with
// APPROVAL_REQUIRED and an approval id; approvers decide with `warden
// approvals`; the caller then repeats the call with the id in its _meta:
//
//	spec.Gate = &pipeline.Gate{Groups: []string{"finance"}, Needed: 1, TTL: time.Hour}
//	gate := approval.Gate(approval.GateOptions{
//		Store:    store,
//		ArgsHash: argsHash,
//		Summary:  summary,
//		Notify:   approval.NewWebhookFormat(url, "slack", nil),
//	})
//	h := pipeline.Chain(run, gate)
//	stop := approval.Cleaner(store, 30*24*time.Hour, time.Hour, nil) // deletes finished requests
//	defer stop()
//
// An approval is bound to the principal, tool, tool version and canonical
// arguments hash of the call that asked for it, and Store.Use consumes it
// atomically, so that two concurrent retries run the action once.
package approval

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// The states of a Request.
const (
	Pending  = "pending"
	Approved = "approved"
	Denied   = "denied"
	Expired  = "expired"
	Used     = "used"
)

// Request is one call waiting for, or holding, approval.
type Request struct {
	ID          string          `json:"id"`
	Principal   string          `json:"principal"`
	Tenant      string          `json:"tenant,omitempty"`
	Tool        string          `json:"tool"`
	ToolVersion string          `json:"tool_version,omitempty"`
	ArgsHash    string          `json:"args_hash"`
	Args        json.RawMessage `json:"args,omitempty"` // for the approver to read; redacted by the caller
	Summary     string          `json:"summary"`
	Risk        string          `json:"risk,omitempty"`    // the tool's risk tier: read, write, high, critical
	Policy      string          `json:"policy,omitempty"`  // where the rule comes from, e.g. "risk_policies.high" or "tools.request_refund.approval"
	DryRun      json.RawMessage `json:"dry_run,omitempty"` // the dry-run result approvers see; empty if none
	Groups      []string        `json:"groups"`
	Needed      int             `json:"needed"`
	Approvals   []Decision      `json:"decisions"`
	State       string          `json:"state"`
	CreatedAt   time.Time       `json:"created_at"`
	ExpiresAt   time.Time       `json:"expires_at"`
}

// Decision is one approver's answer.
type Decision struct {
	Approver string `json:"approver"`
	// Tenant is the approver's tenant: a tenant's approver decides only on
	// that tenant's requests. Empty means an approver of every tenant (an
	// operator, or a principal the deployment does not bind to a tenant).
	Tenant  string    `json:"tenant,omitempty"`
	Approve bool      `json:"approve"`
	Reason  string    `json:"reason,omitempty"`
	At      time.Time `json:"at"`
}

// Errors wrapped by Store methods.
var (
	ErrNotFound       = errors.New("no such approval request")
	ErrNotPending     = errors.New("the request is no longer pending")
	ErrExpired        = errors.New("the request has expired")
	ErrSelfApproval   = errors.New("the requester cannot decide on their own request")
	ErrNotApprover    = errors.New("the approver is not in any of the request's approver groups")
	ErrOtherTenant    = errors.New("the approver belongs to another tenant than the request")
	ErrAlreadyDecided = errors.New("the approver has already decided on this request")
	ErrNotApproved    = errors.New("the request is not approved, or was already used")
)

// Store keeps approval requests. Implementations are safe for concurrent
// use by several goroutines and by several processes sharing one database.
//
// Create stores r as pending; it sets r.State, and r.CreatedAt if zero.
//
// Get returns a request, wrapping ErrNotFound if there is none. A pending
// or approved request past its ExpiresAt reads as expired.
//
// List returns the requests in state (all if empty), oldest first.
//
// Decide records d on a pending, unexpired request, by an approver who is
// not the requester, belongs to one of approverGroups that is also one of
// the request's Groups, and has not decided before. Needed approvals make
// it approved; one denial makes it denied. It returns the updated request.
//
// Use moves an approved, unexpired request to used, atomically: of two
// concurrent calls, one succeeds and the other wraps ErrNotApproved.
//
// Purge deletes the requests that were over before the time before: those
// denied or used and created before it, and those of any state that
// expired before it. It returns how many it deleted. An approved request
// that has not expired is kept, however old.
//
// Close releases the store; no other method may be called after it.
type Store interface {
	Create(ctx context.Context, r *Request) error
	Get(ctx context.Context, id string) (*Request, error)
	List(ctx context.Context, state string) ([]*Request, error)
	Decide(ctx context.Context, id string, d Decision, approverGroups []string) (*Request, error)
	Use(ctx context.Context, id string) error
	Purge(ctx context.Context, before time.Time) (int64, error)
	Close() error
}

// NewID returns a random, unguessable request id.
func NewID() string {
	return "apr_" + rand.Text()
}

// now is the time a store records: microseconds, which both stores keep.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// effective is r's state as of t: a pending or approved request past its
// expiry is expired.
func effective(r *Request, t time.Time) string {
	if (r.State == Pending || r.State == Approved) && !t.Before(r.ExpiresAt) {
		return Expired
	}
	return r.State
}

// decide applies d to r, as of t, or says why it may not.
func decide(r *Request, d Decision, approverGroups []string, t time.Time) error {
	switch effective(r, t) {
	case Pending:
	case Expired:
		return ErrExpired
	default:
		return fmt.Errorf("%w (it is %s)", ErrNotPending, r.State)
	}
	if d.Approver == "" {
		return errors.New("an approver is required")
	}
	if d.Approver == r.Principal {
		return ErrSelfApproval
	}
	if !r.VisibleTo(d.Tenant) {
		return ErrOtherTenant
	}
	if !slices.ContainsFunc(approverGroups, func(g string) bool { return slices.Contains(r.Groups, g) }) {
		return fmt.Errorf("%w (%v)", ErrNotApprover, r.Groups)
	}
	if slices.ContainsFunc(r.Approvals, func(p Decision) bool { return p.Approver == d.Approver }) {
		return ErrAlreadyDecided
	}
	d.At = t
	r.Approvals = append(r.Approvals, d)
	if !d.Approve {
		r.State = Denied
		return nil
	}
	if r.ApprovalCount() >= max(r.Needed, 1) {
		r.State = Approved
	}
	return nil
}

// VisibleTo reports whether a principal of tenant may see and decide on r:
// a tenant's principals only their tenant's requests, a principal without
// a tenant every request.
func (r *Request) VisibleTo(tenant string) bool { return tenant == "" || tenant == r.Tenant }

// ApprovalCount is how many approvers have approved r.
func (r *Request) ApprovalCount() int {
	n := 0
	for _, d := range r.Approvals {
		if d.Approve {
			n++
		}
	}
	return n
}

// checkCreate validates a new request and fills in its defaults.
func checkCreate(r *Request) error {
	if r.ID == "" || r.Tool == "" || len(r.Groups) == 0 {
		return errors.New("creating an approval request: id, tool and groups are required")
	}
	if r.ExpiresAt.IsZero() {
		return errors.New("creating an approval request: an expiry is required")
	}
	r.State = Pending
	if r.CreatedAt.IsZero() {
		r.CreatedAt = now()
	}
	r.CreatedAt = r.CreatedAt.UTC().Truncate(time.Microsecond)
	r.ExpiresAt = r.ExpiresAt.UTC().Truncate(time.Microsecond)
	r.Needed = max(r.Needed, 1)
	return nil
}

// filter keeps the requests in state (all if empty), with their
// effective state.
func filter(all []*Request, st string, t time.Time) []*Request {
	var out []*Request
	for _, r := range all {
		r.State = effective(r, t)
		if st == "" || r.State == st {
			out = append(out, r)
		}
	}
	return out
}
