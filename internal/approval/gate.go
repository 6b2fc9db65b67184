package approval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/wardenmcp/warden/pipeline"
)

// MetaKey is the _meta key under which a client repeats a call with the
// id of its approval.
const MetaKey = "io.wardenmcp/approval_id"

// retryAfter is what a refused caller is told to wait before asking again
// whether its request was decided.
const retryAfter = 30 * time.Second

// defaultTTL is how long a request waits for a decision, and an approval
// for its use, when a Policy sets no TTL.
const defaultTTL = time.Hour

// Policy says who must approve calls to a tool: Needed distinct members of
// any of Groups, within TTL of the request (an hour if zero).
type Policy struct {
	Groups []string
	Needed int
	TTL    time.Duration
}

// Gate is the stage that holds calls to the tools of policies (by tool
// name) for approval. argsHash returns the keyed hash of the call's
// canonical arguments (audit.ArgsHash of them), to which an approval is
// bound; summary describes the call to approvers; notify, if not nil, is
// told of each new request and must not block.
//
// Gate does not store the call's arguments: it cannot redact them, and the
// state database must not hold secrets a caller passed. summary is what
// approvers read, so it should describe the arguments that matter.
//
// The flags it adds to the call ("approval requested ID", "approval
// approved ID", "approval refused ID: why") go into the audit record.
func Gate(store Store, policies map[string]Policy, argsHash func(*pipeline.Call) string, summary func(*pipeline.Call) string, args func(*pipeline.Call) json.RawMessage, notify func(*Request)) pipeline.Stage {
	for name, p := range policies {
		if len(p.Groups) == 0 {
			panic(fmt.Sprintf("approval: the policy of tool %q names no approver groups", name))
		}
	}
	return func(next pipeline.Handler) pipeline.Handler {
		return func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			if c.Spec == nil {
				return next(ctx, c)
			}
			p, ok := policies[c.Spec.Name]
			if !ok {
				return next(ctx, c)
			}
			id, _ := c.Meta[MetaKey].(string)
			if id == "" {
				var a json.RawMessage
				if args != nil {
					a = args(c)
				}
				return nil, request(ctx, store, p, c, argsHash(c), summary(c), a, notify)
			}
			if err := redeem(ctx, store, c, id, argsHash(c)); err != nil {
				c.Flags = append(c.Flags, fmt.Sprintf("approval refused %s: %s", id, err.Message))
				return nil, err
			}
			c.Flags = append(c.Flags, "approval approved "+id)
			return next(ctx, c)
		}
	}
}

// request records a new pending request for c and returns the refusal
// that tells the caller its id.
func request(ctx context.Context, store Store, p Policy, c *pipeline.Call, hash, sum string, args json.RawMessage, notify func(*Request)) error {
	ttl := p.TTL
	if ttl <= 0 {
		ttl = defaultTTL
	}
	who := principal(c)
	t := now()
	r := &Request{
		ID:          NewID(),
		Principal:   who.ID,
		Tenant:      who.Tenant,
		Tool:        c.Spec.Name,
		ToolVersion: c.Spec.Version,
		ArgsHash:    hash,
		Args:        args,
		Summary:     sum,
		Groups:      p.Groups,
		Needed:      max(p.Needed, 1),
		CreatedAt:   t,
		ExpiresAt:   t.Add(ttl),
	}
	if err := store.Create(ctx, r); err != nil {
		// Fail closed: without a durable request there is nothing to approve.
		return pipeline.Errorf(pipeline.Unavailable, "Try again later; if this persists, tell the operator.",
			"the approval store is unavailable").WithRetryAfter(retryAfter)
	}
	c.Flags = append(c.Flags, "approval requested "+r.ID)
	if notify != nil {
		notify(r)
	}
	return pipeline.Errorf(pipeline.ApprovalRequired,
		fmt.Sprintf("Ask a member of %s to approve it, then call again with _meta %q: %q.", strings.Join(p.Groups, " or "), MetaKey, r.ID),
		"approval_id %s: this call needs approval by %d member(s) of %s: %s",
		r.ID, r.Needed, strings.Join(p.Groups, " or "), sum).WithRetryAfter(retryAfter)
}

// redeem checks that approval id is approved for exactly call c, and uses
// it up.
func redeem(ctx context.Context, store Store, c *pipeline.Call, id, hash string) *pipeline.Error {
	r, err := store.Get(ctx, id)
	switch {
	case errors.Is(err, ErrNotFound):
		return denied(id, "it does not exist")
	case err != nil:
		return pipeline.Errorf(pipeline.Unavailable, "Try again later; if this persists, tell the operator.",
			"the approval store is unavailable").WithRetryAfter(retryAfter)
	}
	who := principal(c)
	// Binding is checked before state, so that a pending request tells
	// nothing about itself to another caller.
	switch {
	case r.Principal != who.ID || r.Tenant != who.Tenant:
		return denied(id, "it was requested by another principal")
	case r.Tool != c.Spec.Name || r.ToolVersion != c.Spec.Version:
		return denied(id, "it was requested for another tool or tool version")
	case r.ArgsHash != hash:
		return denied(id, "the arguments differ from those approved")
	}
	switch r.State {
	case Approved:
	case Pending:
		return pipeline.Errorf(pipeline.ApprovalRequired, "Call again once it is approved.",
			"approval_id %s: still pending (%d of %d approvals)", id, approvals(r), r.Needed).WithRetryAfter(retryAfter)
	default:
		return denied(id, "it is "+r.State)
	}
	if err := store.Use(ctx, id); err != nil {
		if errors.Is(err, ErrNotApproved) {
			return denied(id, "it was already used")
		}
		return pipeline.Errorf(pipeline.Unavailable, "Try again later; if this persists, tell the operator.",
			"the approval store is unavailable").WithRetryAfter(retryAfter)
	}
	return nil
}

func denied(id, why string) *pipeline.Error {
	return pipeline.Errorf(pipeline.ApprovalDenied, "Call again without the approval id to ask for a new approval.",
		"approval_id %s cannot be used: %s", id, why)
}

func approvals(r *Request) int {
	n := 0
	for _, d := range r.Approvals {
		if d.Approve {
			n++
		}
	}
	return n
}

func principal(c *pipeline.Call) *pipeline.Principal {
	if c.Principal == nil {
		return &pipeline.Principal{}
	}
	return c.Principal
}
