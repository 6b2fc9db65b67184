package pipeline

import (
	"bytes"
	"encoding/json"

	"github.com/google/jsonschema-go/jsonschema"
)

// Target is one tool, resource, resource template or prompt, ready to be
// served: its spec, the handler that serves it, and what clients are shown
// of it. Kinds of source make targets from declarations; the server
// registers them, chains each handler with the stages once, and keeps the
// chain beside the spec.
type Target struct {
	Spec    *Spec
	Handler Handler
	// DryRun, for write tools, shows what a call would change without
	// changing anything; Spec.DryRun says the target has one.
	DryRun Handler

	// What clients are shown.
	Title       string
	Description string
	// InputSchema describes the arguments of a tool or prompt, or the
	// variables of a resource template; OutputSchema a tool's structured
	// result.
	InputSchema  *jsonschema.Schema
	OutputSchema *jsonschema.Schema
	// Annotations are a tool's hints; nil means those that follow from its
	// mode.
	Annotations *ToolAnnotations
	// Protocol says the handler uses protocol features beyond its result
	// (progress, logging, sampling through the SDK's request): its calls
	// are served by the protocol SDK, not on the lean path, but those Lean
	// allows.
	Protocol bool
	// Lean, if set, says of one call of a Protocol target whether it needs
	// nothing of the protocol SDK's request after all (nothing to relay on
	// the caller's connection), so that it may be served on the lean path
	// like any other.
	Lean func(*Call) bool
	// Hidden targets are not listed, yet calls still reach their handler:
	// a quarantined upstream tool is hidden, and refuses its calls with
	// TOOL_CHANGED rather than looking unknown.
	Hidden bool

	// URI is a resource's; URITemplate a resource template's (RFC 6570).
	URI         string
	URITemplate string
	MIMEType    string
}

// ToolAnnotations are hints about a tool's behaviour for clients. They are
// hints, never relied on for security.
type ToolAnnotations struct {
	Title           string
	ReadOnlyHint    bool
	DestructiveHint *bool
	IdempotentHint  bool
	OpenWorldHint   *bool
}

// MirrorsHeaders reports whether a tool's input schema asks for any
// argument to be mirrored in an HTTP header (the x-mcp-header annotation,
// whose Mcp-Param-* headers the protocol SDK sets and checks), at any
// depth. It errs on the side of the SDK: the word anywhere in the schema
// counts.
func MirrorsHeaders(schema any) bool {
	b, err := json.Marshal(schema)
	return err != nil || bytes.Contains(b, []byte(`"x-mcp-header"`))
}
