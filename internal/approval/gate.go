package approval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/wardenmcp/warden/internal/nonce"
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

// What a gate requires before a call runs (see pipeline.Gate).
const (
	RequireApproval     = pipeline.RequireApproval
	RequireConfirmation = pipeline.RequireConfirmation
	RequireDryRun       = pipeline.RequireDryRun
)

// Policy is what a call to a target needs before it runs: its spec's Gate.
type Policy = pipeline.Gate

// GateOptions configure the risk gate.
type GateOptions struct {
	// Store keeps approval requests; without one, calls that need
	// approval are refused.
	Store Store
	// ArgsHash returns the keyed hash of the call's canonical arguments
	// (audit.ArgsHash of them), to which approvals and confirmations are
	// bound.
	ArgsHash func(*pipeline.Call) string
	// Summary describes the call to approvers; Args returns its arguments
	// as approvers may read them (redacted). The store must not hold
	// secrets a caller passed.
	Summary func(*pipeline.Call) string
	Args    func(*pipeline.Call) json.RawMessage
	// Notify, if not nil, is told of each new request and must not block.
	Notify func(*Request)
	// Secret keys the state of a confirmation round, so that a client
	// cannot forge one; without it, calls that need confirmation are
	// refused. Every instance serving the same clients must share it.
	Secret []byte
	// Nonces remembers the confirmations accepted, so that each is
	// accepted once. Instances serving the same clients must share it
	// (nonce.NewRedis, nonce.Open on PostgreSQL); nil remembers them in
	// this process only.
	Nonces nonce.Store
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Check reports whether a gate can be kept by a risk gate with the given
// options: a target whose gate cannot be kept must not be registered.
func (o *GateOptions) Check(p *Policy) error {
	switch p.Require {
	case "", RequireApproval:
		if len(p.Groups) == 0 {
			return errors.New("approval needs approver groups")
		}
	case RequireConfirmation, RequireDryRun:
	default:
		return fmt.Errorf("a gate cannot require %q", p.Require)
	}
	if (p.Require != RequireDryRun && p.Require != RequireConfirmation || len(p.Groups) > 0) && o.Store == nil {
		return errors.New("approval needs an approval store")
	}
	if p.Require == RequireConfirmation && len(o.Secret) == 0 {
		return errors.New("confirmation needs a secret")
	}
	return nil
}

// Gate is the risk gate: the stage that holds calls to targets with a
// Spec.Gate until they are approved or confirmed, and turns calls to
// dry-run-only tools into dry runs. A dry run itself changes nothing and
// passes freely. A call whose gate cannot be kept (see Check) is refused.
//
// The flags it adds to the call ("approval requested ID", "approval
// approved ID", "approval refused ID: why", "confirmation asked",
// "confirmed by the user", "dry run forced") go into the audit record.
func Gate(o GateOptions) pipeline.Stage {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Nonces == nil {
		o.Nonces = nonce.NewMemory(o.Now, maxConfirmations)
	}
	confirms := newConfirmations(o.Secret, o.Now, o.Nonces)
	return func(next pipeline.Handler) pipeline.Handler {
		return func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			if c.Spec == nil || c.Spec.Gate == nil || c.DryRun {
				return next(ctx, c)
			}
			p := c.Spec.Gate
			if err := o.Check(p); err != nil {
				return nil, pipeline.Errorf(pipeline.Unavailable, "Tell the operator: this tool's risk policy cannot be enforced.",
					"the call was refused: %v", err)
			}
			switch {
			case p.Require == RequireDryRun:
				c.DryRun = true
				c.Flags = append(c.Flags, "dry run forced")
				return next(ctx, c)
			case p.Require == RequireConfirmation && (c.CanElicit || c.State != "" || len(p.Groups) == 0):
				return confirms.gate(ctx, c, p, o, next)
			}
			id, _ := c.Meta[MetaKey].(string)
			if id == "" {
				return nil, request(ctx, o, p, c, next)
			}
			if err := redeem(ctx, o.Store, c, id, o.ArgsHash(c)); err != nil {
				c.Flags = append(c.Flags, fmt.Sprintf("approval refused %s: %s", id, err.Message))
				return nil, err
			}
			c.Flags = append(c.Flags, "approval approved "+id)
			return next(ctx, c)
		}
	}
}

// dryRun runs c as a dry run through next and returns what it would do:
// the "dry_run" field of the handler's structured result if it has one
// (Warden's SQL tools), else the whole result, or the refusal.
func dryRun(ctx context.Context, c *pipeline.Call, next pipeline.Handler) json.RawMessage {
	if !c.Spec.DryRun {
		return nil
	}
	dc := *c
	dc.DryRun = true
	dc.Flags = nil
	res, err := next(ctx, &dc)
	var v any
	switch {
	case err != nil:
		v = map[string]any{"error": pipeline.AsError(err)}
	case res == nil || res.Tool == nil:
		return nil
	case res.Tool.StructuredContent != nil:
		v = res.Tool.StructuredContent
	default:
		v = res.Tool.Content
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var out struct {
		DryRun json.RawMessage `json:"dry_run"`
	}
	if json.Unmarshal(b, &out) == nil && len(out.DryRun) > 0 {
		return out.DryRun
	}
	return b
}

// request records a new pending request for c and returns the refusal
// that tells the caller its id.
func request(ctx context.Context, o GateOptions, p *Policy, c *pipeline.Call, next pipeline.Handler) error {
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
		ArgsHash:    o.ArgsHash(c),
		Summary:     o.Summary(c),
		Groups:      p.Groups,
		Needed:      max(p.Needed, 1),
		Risk:        c.Spec.Risk,
		Policy:      p.Ref,
		CreatedAt:   t,
		ExpiresAt:   t.Add(ttl),
	}
	if o.Args != nil {
		r.Args = o.Args(c)
	}
	if p.DryRun {
		r.DryRun = dryRun(ctx, c, next)
	}
	if err := o.Store.Create(ctx, r); err != nil {
		// Fail closed: without a durable request there is nothing to approve.
		return pipeline.Errorf(pipeline.Unavailable, "Try again later; if this persists, tell the operator.",
			"the approval store is unavailable").WithRetryAfter(retryAfter)
	}
	c.Flags = append(c.Flags, "approval requested "+r.ID)
	if o.Notify != nil {
		o.Notify(r)
	}
	e := pipeline.Errorf(pipeline.ApprovalRequired,
		fmt.Sprintf("Ask a member of %s to approve it, then call again with _meta %q: %q.", strings.Join(p.Groups, " or "), MetaKey, r.ID),
		"approval_id %s: this call needs approval by %d member(s) of %s: %s",
		r.ID, r.Needed, strings.Join(p.Groups, " or "), r.Summary).WithRetryAfter(retryAfter)
	e.ApprovalID = r.ID
	return e
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
		e := pipeline.Errorf(pipeline.ApprovalRequired, "Call again once it is approved.",
			"approval_id %s: still pending (%d of %d approvals)", id, r.ApprovalCount(), r.Needed).WithRetryAfter(retryAfter)
		e.ApprovalID = id
		return e
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

func principal(c *pipeline.Call) *pipeline.Principal {
	if c.Principal == nil {
		return &pipeline.Principal{}
	}
	return c.Principal
}
