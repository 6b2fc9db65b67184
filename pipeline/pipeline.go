// Package pipeline defines the value that flows through Warden's policy
// stages — the [Call] — and the shape every stage has.
//
// A stage is middleware over a [Handler], in the manner of net/http:
//
//	func logCalls(next pipeline.Handler) pipeline.Handler {
//		return func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
//			res, err := next(ctx, c)
//			slog.Info("call", "target", c.Target, "err", err)
//			return res, err
//		}
//	}
//
// The pipeline works on Warden's own types so that policy code never depends
// on how a request reached the server; the protocol SDK is adapted at one
// boundary (package warden).
package pipeline

import (
	"context"
	"encoding/json"
	"slices"
	"time"
)

// Method is the kind of request a call answers.
type Method uint8

const (
	CallTool     Method = iota + 1 // tools/call
	ReadResource                   // resources/read
	GetPrompt                      // prompts/get
)

func (m Method) String() string {
	switch m {
	case CallTool:
		return "tools/call"
	case ReadResource:
		return "resources/read"
	case GetPrompt:
		return "prompts/get"
	}
	return "unknown"
}

// Mode says whether a target may change state.
type Mode uint8

const (
	Read Mode = iota // the zero value: the safe default
	Write
)

func (m Mode) String() string {
	if m == Write {
		return "write"
	}
	return "read"
}

// DryRunArg is the boolean argument that asks a write tool for a dry run.
const DryRunArg = "dry_run"

// Principal is who is calling, as established by authentication.
type Principal struct {
	ID         string
	Tenant     string
	Scopes     []string
	Groups     []string
	AuthMethod string // "api_key", "jwt", "mtls", "anonymous", ...
	// Token is the verified JWT a "jwt" principal presented, kept only so
	// that a gateway can exchange it (RFC 8693) for a token of an
	// upstream's own audience; it is never logged, audited or forwarded.
	Token string `json:"-"`
}

// HasScope reports whether p holds scope exactly. There are no wildcards.
func (p *Principal) HasScope(scope string) bool {
	return p != nil && scope != "" && slices.Contains(p.Scopes, scope)
}

// Attribute returns the principal attribute a parameter may be bound to.
func (p *Principal) Attribute(name string) string {
	switch name {
	case "tenant":
		return p.Tenant
	case "user":
		return p.ID
	}
	return ""
}

// Policy decides, beyond scopes, whether a call may proceed. Authorize
// returns nil to allow, or an error (a *Error with PERMISSION_DENIED, or
// any error, which refuses the call: a policy that fails, fails closed).
type Policy interface {
	Authorize(ctx context.Context, c *Call) error
}

// Limiter admits a call under rate and concurrency limits. On admission it
// returns a release function to call when the call ends; otherwise an
// error (a *Error with RATE_LIMITED and RetryAfter, or any error, which
// refuses the call).
type Limiter interface {
	Admit(ctx context.Context, c *Call) (release func(), err error)
}

// Call is one request on its way through the pipeline.
type Call struct {
	Spec   *Spec
	Target string // tool name, resource URI or prompt name, as requested

	// Raw holds the arguments exactly as the client sent them (tools), or
	// nil. Args holds the validated arguments, with defaults applied; it is
	// set by the validate stage and is the only form a handler may trust.
	Raw  json.RawMessage
	Args map[string]any
	Meta map[string]any

	Principal       *Principal
	SessionID       string
	ClientName      string
	ClientVersion   string
	ProtocolVersion string
	RemoteAddr      string
	TraceID         string
	Start           time.Time

	// DryRun asks the handler to show what the call would change, and
	// change nothing. The validate stage sets it from DryRunArg; the risk
	// gate sets it for tools that may only ever be dry-run.
	DryRun bool

	// CanElicit says the client can be asked for input during the call
	// (MCP elicitation, form mode). Responses are its answers to the input
	// requests of this call's previous round, by request id, as the client
	// sent them (JSON, decoded by whoever asked), and State is the opaque
	// state that round returned (MCP multi round-trip).
	CanElicit bool
	Responses map[string]json.RawMessage
	State     string

	// Intended is set just before the call runs: for a write once its
	// intent record is durable; for a read, which leaves one record (its
	// outcome), without a record. A call without it was refused before
	// running.
	Intended bool
	// Flags are findings of the output guard (redactions, injection
	// markers), for the audit record.
	Flags []string
}

// Event is a request that is not a call: a list, or a request refused
// before any call existed (authentication).
type Event struct {
	Method     string // "tools/list", or the HTTP method and path of a refused request
	Target     string // what a completion or subscription named
	Principal  *Principal
	SessionID  string
	RemoteAddr string
	TraceID    string
	Count      int    // items listed
	Code       Code   // for a refusal
	Reason     string // for a refusal
}

// Auditor records every call durably. Outcome is the outermost stage: it
// records each call's refusal or outcome. Intent sits just before the call
// runs and records that it is about to: if it cannot, the call is refused
// and never runs.
type Auditor interface {
	Outcome(next Handler) Handler
	Intent(next Handler) Handler
	// Event records a request that is not a call. A list that cannot be
	// recorded is refused; a refused request is refused anyway.
	Event(ctx context.Context, e *Event) error
}

// Handler serves a call. A returned *Error is shown to the client as is;
// a bare *jsonrpc.Error (not wrapped) is the handler's deliberate
// protocol-level answer and reaches the client as a JSON-RPC error; any
// other error is reported as an internal failure without its text.
type Handler func(ctx context.Context, c *Call) (*Result, error)

// Stage wraps a handler with one control.
type Stage func(next Handler) Handler

// Chain wraps h in stages, the first outermost: Chain(h, a, b) is a(b(h)).
func Chain(h Handler, stages ...Stage) Handler {
	for i := len(stages) - 1; i >= 0; i-- {
		h = stages[i](h)
	}
	return h
}
