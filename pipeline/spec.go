package pipeline

import (
	"time"

	"github.com/google/jsonschema-go/jsonschema"
)

// Spec is everything Warden knows about a target before any call arrives:
// what it is, and the controls every stage applies to it. It is computed
// once, where the target is declared, and shared by every call to the
// target; stages read a call's policy from its spec and must treat it as
// read-only. A target that changes gets a new Spec.
type Spec struct {
	Method  Method
	Name    string // tool name, resource or template name, prompt name
	Version string
	Mode    Mode
	// Source names the kind of source that serves the target ("sqlite",
	// "postgres", "file", "native", ...), for audit and policy.
	Source string
	// Timeout bounds one execution; zero means the server default.
	Timeout time.Duration
	// Input validates the call's arguments. Nil means the target takes none.
	Input *jsonschema.Resolved
	// Scope is the scope a principal needs to use the target. Required:
	// no scope, no call.
	Scope string
	// Bound maps parameters to the principal attribute that supplies them
	// ("tenant" or "user"); the model cannot supply them.
	Bound map[string]string
	// DryRun says the target takes the argument DryRunArg and can show what
	// a call would change without changing anything.
	DryRun bool

	// The target's own controls. Their zero values are the safe defaults:
	// no gate beyond the others, the server's default rate limit, never
	// cached, results redacted and flagged under the default size cap.

	// Risk is the target's risk tier ("read", "low", "medium", "high",
	// "critical"), for approvers and the audit log.
	Risk string
	// Gate says what a call needs before it runs; nil needs nothing.
	Gate *Gate
	// RateLimit, if set, replaces the server's per principal×target limit
	// for this target.
	RateLimit *Limit
	// CacheTTL is how long a read tool's results may be served again; zero
	// means they never are.
	CacheTTL time.Duration
	// Output is what the output guard does with the target's results.
	Output Output
}

// What a Gate may require before a call runs.
const (
	RequireApproval     = "approval"     // approval by others, through the queue
	RequireConfirmation = "confirmation" // the caller's own, by elicitation
	RequireDryRun       = "dry_run"      // the call only ever runs as a dry run
)

// Gate is what the risk gate holds a call for. With RequireApproval:
// Needed distinct members of any of Groups, within TTL of the request (an
// hour if zero). With RequireConfirmation: the user's own yes, asked
// through the client; a client that cannot be asked falls back to approval
// if Groups is set, and is refused otherwise. With RequireDryRun: every
// call runs as a dry run.
type Gate struct {
	Require string // default RequireApproval
	Groups  []string
	Needed  int
	TTL     time.Duration
	// DryRun runs a held call as a dry run when it is requested, and keeps
	// the result for approvers (and shows it to the user asked to confirm).
	// The target must have a dry run.
	DryRun bool
	// Ref names where the rule comes from, for approvers and the audit log:
	// "tools.NAME" or "risk_policies.TIER".
	Ref string
}

// Limit is a rate: Calls per Per, with bursts of up to Burst calls.
type Limit struct {
	Calls int
	Per   time.Duration
	Burst int
}

// Output is the output guard's policy for one target.
type Output struct {
	// Block refuses a result with any secret or personal data instead of
	// redacting it.
	Block bool
	// Allow passes the named fields unredacted ("rows.*.email").
	Allow []string
	// BlockInjection refuses a result with instructions addressed to the
	// model instead of flagging them.
	BlockInjection bool
	// MaxBytes caps each text block of a result; zero means the guard's
	// default.
	MaxBytes int
	// Prompts passes prompt results through the guard too: those of an
	// upstream's prompts, which are third-party text. Warden's own prompts
	// are the operator's templates filled with the client's own arguments,
	// and are not.
	Prompts bool
}
