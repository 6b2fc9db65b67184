package approval

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/wardenmcp/warden/internal/nonce"
	"github.com/wardenmcp/warden/internal/seal"
	"github.com/wardenmcp/warden/pipeline"
)

// ConfirmID is the id of the input request by which Warden asks the user
// to confirm a call (MCP elicitation; the answer comes back under it).
const ConfirmID = "io.wardenmcp/confirm"

// confirmTTL is how long the user has to answer.
const confirmTTL = 5 * time.Minute

// maxConfirmations bounds the confirmations a gate without a shared store
// remembers as accepted, until they expire; beyond it, answers are refused
// rather than a nonce forgotten early.
const maxConfirmations = 100_000

// confirmations asks users to confirm their own calls, in band: the call
// returns an input request (an elicitation the client shows to its user)
// and the client repeats the call with the answer and the state Warden
// returned. The state is sealed (AES-256-GCM, internal/seal) with a key of the server's, binds the
// answer to the principal, tool, tool version and arguments, expires, and
// is accepted once: across instances, if they share the nonce store.
type confirmations struct {
	box  *seal.Box
	now  func() time.Time
	used nonce.Store // the nonces of accepted states
}

// confirmState is what a confirmation round carries from the question to
// the answer.
type confirmState struct {
	Nonce     string `json:"n"`
	Principal string `json:"p"`
	Tenant    string `json:"t"`
	Tool      string `json:"tool"`
	Version   string `json:"v"`
	ArgsHash  string `json:"h"`
	Expires   int64  `json:"exp"`
}

func newConfirmations(secret []byte, now func() time.Time, used nonce.Store) *confirmations {
	return &confirmations{box: seal.New(secret, "warden confirmation state v2"), now: now, used: used}
}

// gate lets c through once its user has confirmed it, or asks them.
func (cf *confirmations) gate(ctx context.Context, c *pipeline.Call, p *Policy, o GateOptions, next pipeline.Handler) (*pipeline.Result, error) {
	who := principal(c)
	want := confirmState{Principal: who.ID, Tenant: who.Tenant, Tool: c.Spec.Name, Version: c.Spec.Version, ArgsHash: o.ArgsHash(c)}
	if c.State != "" || c.Responses[ConfirmID] != nil {
		if err := cf.accept(ctx, c, want); err != nil {
			c.Flags = append(c.Flags, "confirmation refused: "+err.Message)
			return nil, err
		}
		c.Flags = append(c.Flags, "confirmed by the user")
		return next(ctx, c)
	}
	if !c.CanElicit {
		return nil, pipeline.Errorf(pipeline.ConfirmationRequired,
			"Use a client that supports elicitation, so that Warden can ask you, or ask the operator for another way.",
			"%s needs your confirmation before it runs, and this client cannot be asked for it", c.Spec.Name)
	}
	want.Nonce = rand.Text()
	want.Expires = cf.now().Add(confirmTTL).Unix()
	state, err := cf.seal(want)
	if err != nil {
		return nil, err
	}
	c.Flags = append(c.Flags, "confirmation asked")
	return &pipeline.Result{Tool: &pipeline.ToolResult{
		InputRequests: map[string]*pipeline.InputRequest{ConfirmID: {
			Method: "elicitation/create",
			Params: &elicitParams{
				Mode:    "form",
				Message: confirmMessage(c, p, o, dryRun(ctx, c, next)),
				RequestedSchema: map[string]any{
					"type": "object",
					"properties": map[string]any{
						"confirm": map[string]any{
							"type":        "boolean",
							"title":       "Run " + c.Spec.Name,
							"description": "Tick to run this call once, exactly as shown.",
						},
					},
					"required": []string{"confirm"},
				},
			},
		}},
		RequestState: state,
	}}, nil
}

// elicitParams are the params of an MCP elicitation/create request, as
// much of them as a confirmation uses.
type elicitParams struct {
	Mode            string `json:"mode"`
	Message         string `json:"message"`
	RequestedSchema any    `json:"requestedSchema"`
}

// elicitResult is the client's answer to an elicitation: Action is
// "accept", "decline" or "cancel"; Content is the form, if accepted.
type elicitResult struct {
	Action  string         `json:"action"`
	Content map[string]any `json:"content"`
}

// accept checks the answer to a confirmation round of c.
func (cf *confirmations) accept(ctx context.Context, c *pipeline.Call, want confirmState) *pipeline.Error {
	refuse := func(why string) *pipeline.Error {
		return pipeline.Errorf(pipeline.ApprovalDenied, "Call again without an answer to be asked again.",
			"the confirmation of %s cannot be used: %s", c.Spec.Name, why)
	}
	got, ok := cf.open(c.State)
	switch {
	case !ok:
		return refuse("its state is missing or was altered")
	case got.Principal != want.Principal || got.Tenant != want.Tenant:
		return refuse("it was asked of another principal")
	case got.Tool != want.Tool || got.Version != want.Version:
		return refuse("it was asked for another tool or tool version")
	case got.ArgsHash != want.ArgsHash:
		return refuse("the arguments differ from those confirmed")
	case !cf.now().Before(time.Unix(got.Expires, 0)):
		return refuse("it has expired")
	}
	raw := c.Responses[ConfirmID]
	var answer elicitResult
	switch {
	case len(raw) == 0:
		return refuse("it carries no answer")
	case json.Unmarshal(raw, &answer) != nil:
		return refuse("its answer is not an elicitation result")
	case answer.Action != "accept":
		return pipeline.Errorf(pipeline.ApprovalDenied, "Do not repeat the call unless the user asks for it.",
			"the user did not confirm %s (%s)", c.Spec.Name, answer.Action)
	case answer.Content["confirm"] != true:
		return pipeline.Errorf(pipeline.ApprovalDenied, "Do not repeat the call unless the user asks for it.",
			"the user did not confirm %s", c.Spec.Name)
	}
	// The nonce is spent last, once everything else holds, so that a
	// refused answer does not use up the confirmation. A store that cannot
	// say whether it was spent before refuses the call: fail closed.
	first, err := cf.used.Use(ctx, got.Nonce, time.Unix(got.Expires, 0))
	if err != nil {
		return pipeline.Errorf(pipeline.Unavailable, "Try again shortly; if it persists, tell the operator.",
			"the confirmation of %s cannot be checked right now: the store of used confirmations is not answering", c.Spec.Name).WithRetryAfter(retryAfter)
	}
	if !first {
		return refuse("it was already used")
	}
	return nil
}

// seal encrypts st: the client carries it, and can neither read the
// principal and argument hash it binds nor forge them.
func (cf *confirmations) seal(st confirmState) (string, error) {
	b, err := json.Marshal(st)
	if err != nil {
		return "", err
	}
	return cf.box.Seal(b), nil
}

func (cf *confirmations) open(s string) (confirmState, bool) {
	var st confirmState
	b, ok := cf.box.Open(s)
	if !ok || json.Unmarshal(b, &st) != nil {
		return confirmState{}, false
	}
	return st, true
}

// confirmMessage is what the user reads: the tool, every argument, and
// what the call would change, if a dry run could tell.
func confirmMessage(c *pipeline.Call, p *Policy, o GateOptions, effect json.RawMessage) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Warden: the agent asks to run %s", c.Spec.Name)
	if c.Spec.Version != "" {
		fmt.Fprintf(&b, " (version %s)", c.Spec.Version)
	}
	if r := c.Spec.Risk; r != "" {
		fmt.Fprintf(&b, ", a %s-risk tool", r)
	}
	b.WriteString(", with these arguments:\n")
	var args map[string]any
	if o.Args != nil {
		json.Unmarshal(o.Args(c), &args)
	} else {
		args = c.Args
	}
	names := make([]string, 0, len(args))
	for k := range args {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		v, _ := json.Marshal(args[k])
		fmt.Fprintf(&b, "  %s: %s\n", k, v)
	}
	if len(names) == 0 {
		b.WriteString("  (none)\n")
	}
	if len(effect) > 0 {
		fmt.Fprintf(&b, "Expected effect (from a dry run): %s\n", effect)
	}
	b.WriteString("Confirm to run it once, exactly as shown; decline to refuse it.")
	return b.String()
}
