// Package pin decides which definitions of an upstream MCP server Warden
// serves: each tool, resource, resource template, prompt and the
// upstream's instructions is pinned, the first time Warden sees it, by the
// SHA-256 of its canonical JSON; a definition that later differs from its
// pin is quarantined until an operator approves the new version, and every
// new or changed definition is scanned for poisoning (instructions
// addressed to the model, invisible characters, requests for credentials,
// references to other servers' tools, oversized descriptions).
//
//	store, err := state.Open(ctx, cfg, pin.OpenPostgres, pin.OpenSQLite)
//	if err != nil { ... }
//	defer store.Close()
//	guard := pin.NewGuard(store, auditWriter.Write)
//
//	// After every listing of an upstream, with everything it listed:
//	verdicts, err := guard.Check(ctx, "github", pin.Policy{}, defs)
//	if err != nil {
//		// serve nothing new from this listing (fail closed)
//	}
//	for i, v := range verdicts {
//		if v.Serve { /* list defs[i] */ } // else calls get TOOL_CHANGED
//	}
//
//	// An operator, having seen the diff (warden upstreams diff):
//	_, err = guard.Approve(ctx, pin.Ref{Upstream: "github", Kind: pin.Tool, Name: "search"}, hash, "alice", "operator")
//
// The pins live in the state store, so instances sharing a PostgreSQL
// database agree on them: Check reads and writes one upstream's pins in one
// transaction that no other Check or decision on that upstream runs beside,
// so a change two instances notice at once is recorded, and audited, once.
//
// Each definition has its own verdict, and that holds for instructions too:
// changed instructions are quarantined (not passed on to clients) until
// approved, while the upstream's unchanged tools stay served.
package pin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/wardenmcp/warden/internal/audit"
)

// Kind is what an upstream definition is.
type Kind string

const (
	Tool         Kind = "tool"
	Resource     Kind = "resource"
	Template     Kind = "resource_template"
	Prompt       Kind = "prompt"
	Instructions Kind = "instructions" // the upstream's initialize instructions; Name is ""
)

// Valid reports whether k is one of the kinds above.
func (k Kind) Valid() bool {
	switch k {
	case Tool, Resource, Template, Prompt, Instructions:
		return true
	}
	return false
}

// Definition is one upstream target's definition as Warden received it.
type Definition struct {
	Upstream string // the upstream's configured name
	Kind     Kind
	// Name is the upstream's own name: a tool's or prompt's name, a
	// resource's URI, a template's URI template; "" for Instructions.
	Name string
	// Body is the whole definition object exactly as the upstream sent it
	// (a tool's name, title, description, inputSchema, outputSchema,
	// annotations, _meta...); for Instructions, a JSON string.
	Body json.RawMessage
}

// Ref names one pinned definition.
type Ref struct {
	Upstream string
	Kind     Kind
	Name     string
}

// Target is how audit records name the definition: upstream:kind:name.
func (r Ref) Target() string { return r.Upstream + ":" + string(r.Kind) + ":" + r.Name }

func (r Ref) String() string {
	if r.Kind == Instructions {
		return fmt.Sprintf("the instructions of upstream %s", r.Upstream)
	}
	return fmt.Sprintf("%s %q of upstream %s", r.Kind, r.Name, r.Upstream)
}

// Policy is an upstream's pinning policy (from its configuration).
type Policy struct {
	// NewTargets decides a target first seen on an upstream that already has
	// pins: "allow" or "quarantine" (the default when empty). The very
	// first listing of an upstream is trusted on first use unless the scan
	// finds poison.
	NewTargets string
	// Poisoned is "quarantine" (the default when empty) or "flag" (served,
	// finding audited). It applies to definitions seen for the first time;
	// a changed definition is quarantined whatever the scan finds.
	Poisoned string
	// MaxDescription is the largest description, in bytes, that is not a
	// finding; 0 means 2048.
	MaxDescription int
}

// The values of Policy's fields.
const (
	Allow      = "allow"
	Quarantine = "quarantine"
	Flag       = "flag"
)

// DefaultMaxDescription is MaxDescription when the policy leaves it 0.
const DefaultMaxDescription = 2048

func (p Policy) check() error {
	switch p.NewTargets {
	case "", Allow, Quarantine:
	default:
		return fmt.Errorf("pin policy: new_targets is %q; want allow or quarantine", p.NewTargets)
	}
	switch p.Poisoned {
	case "", Flag, Quarantine:
	default:
		return fmt.Errorf("pin policy: poisoned is %q; want flag or quarantine", p.Poisoned)
	}
	if p.MaxDescription < 0 {
		return fmt.Errorf("pin policy: max_description is %d; want 0 (the default, %d) or more", p.MaxDescription, DefaultMaxDescription)
	}
	return nil
}

// Verdict says whether one definition may be served.
type Verdict struct {
	Serve    bool
	Reason   string    // when not served: "changed", "new", "poisoned" or "rejected"
	Findings []Finding // scan findings (also when served under "flag")
	Hash     string    // canonical hash of the definition as seen now
}

// Why a definition is not served.
const (
	ReasonChanged  = "changed"
	ReasonNew      = "new"
	ReasonPoisoned = "poisoned"
	ReasonRejected = "rejected"
)

// Finding is one thing the scan found in a definition.
type Finding struct {
	Rule    string `json:"rule"`    // "invisible_unicode", "model_instruction", "tool_reference", "credential_request", "oversized"
	Field   string `json:"field"`   // JSON path of the offending field, e.g. "description", "inputSchema.properties.q.description"
	Excerpt string `json:"excerpt"` // a short, printable excerpt (invisible characters shown as \u escapes)
}

func (f Finding) String() string { return f.Rule + " in " + f.Field + ": " + f.Excerpt }

// State is where a pin stands.
type State string

const (
	// Approved: the approved version is served, and nothing else is pending.
	Approved State = "approved"
	// Quarantined: a version waits for an operator's decision; nothing of
	// this definition is served meanwhile.
	Quarantined State = "quarantined"
	// Rejected: the version the upstream lists was rejected, and stays
	// refused.
	Rejected State = "rejected"
)

// Version is one version of a definition.
type Version struct {
	Hash     string          `json:"hash"`
	Body     json.RawMessage `json:"body"`
	Findings []Finding       `json:"findings,omitempty"`
}

// Pin is what the store keeps of one definition.
type Pin struct {
	Ref
	State State
	// Reason is why the pin is quarantined or rejected (see Verdict.Reason);
	// "" when approved.
	Reason string
	// Approved is the version served, if any (Hash "" when none was ever
	// approved or trusted on first use).
	Approved Version
	// Pending is the version the upstream lists that waits for a decision,
	// or was rejected (Hash "" when none).
	Pending Version
	// RejectedHashes are the versions operators rejected, newest last.
	RejectedHashes []string
	FirstSeen      time.Time
	Updated        time.Time
	// DecidedBy is the operator who last approved or rejected, "" if none.
	DecidedBy string
}

// maxRejected bounds Pin.RejectedHashes: the oldest are forgotten, and a
// forgotten version that comes back is quarantined again as a change.
const maxRejected = 32

// Hash is the canonical hash of a definition's body: the hex SHA-256 of
// its canonical JSON (see audit.Canonical), so that two spellings of one
// definition (key order, whitespace, escapes, number forms) pin the same.
func Hash(body json.RawMessage) (string, error) {
	c, err := audit.Canonical(body)
	if err != nil {
		return "", fmt.Errorf("definition is not valid JSON: %w", err)
	}
	sum := sha256.Sum256(c)
	return hex.EncodeToString(sum[:]), nil
}

// Filter selects pins for Store.List; zero fields select all.
type Filter struct {
	Upstream string
	State    State
}

// Store keeps pins, and the audit records of pin events until they are
// in the audit log. The contract test in this package runs against every
// implementation.
//
// The records wait in the store (an outbox) rather than being written to
// the audit log inside the transaction, because with SQLite the audit log
// is in the same database, whose one writer the transaction holds: an
// event and the pin it describes are stored together or not at all, and
// the record reaches the audit log after the commit.
type Store interface {
	// List returns the pins f selects, ordered by upstream, kind, name.
	List(ctx context.Context, f Filter) ([]Pin, error)
	// Update calls fn with the pins of upstream, then stores the pins fn
	// returns (each replaces the pin of its Ref, or adds it) and the
	// records, in one transaction that no other Update of upstream runs
	// beside — in this process or another sharing the database. If fn or
	// a write fails, nothing is stored and Update returns the error. fn
	// must not call the store.
	//
	// Update returns the records the caller must now deliver to the audit
	// log and then pass to Delivered: those fn returned, and any of
	// upstream's that an earlier caller stored but did not deliver within
	// a minute (it failed, or died).
	Update(ctx context.Context, upstream string, fn func(pins []Pin) ([]Pin, []*audit.Record, error)) ([]Event, error)
	// Delivered forgets records that are in the audit log.
	Delivered(ctx context.Context, events []Event) error
	// Versions returns, per upstream with pins, a digest of what decides
	// its verdicts (each pin's state and its approved, pending and
	// rejected versions): it changes when an operator decides, in this
	// process or another, or a check records a change, and it is cheap
	// enough for every instance to poll.
	Versions(ctx context.Context) (map[string]string, error)
	Close() error
}

// Event is an audit record of a pin event waiting in the store.
type Event struct {
	ID     string
	Record *audit.Record
}

// Guard decides, from the pins in the state store, which definitions are
// served.
type Guard struct {
	store  Store
	record func(context.Context, *audit.Record) error
	now    func() time.Time
}

// NewGuard returns a guard over store; record writes an audit record for
// each pin event (first seen, changed, approved, rejected, flagged). record
// may be nil in tests only.
func NewGuard(store Store, record func(context.Context, *audit.Record) error) *Guard {
	if record == nil {
		record = func(context.Context, *audit.Record) error { return nil }
	}
	return &Guard{store: store, record: record, now: time.Now}
}
