// Package audit keeps Warden's durable, tamper-evident record of every
// request: allowed, refused, failed or timed out.
//
//	store, err := audit.Open(ctx, cfg) // SQLite by default, or PostgreSQL
//	if err != nil { ... }
//	defer store.Close()
//	w, err := audit.NewWriter(store, secret, "", audit.WriterOptions{Sinks: []io.Writer{os.Stdout}})
//	if err != nil { ... }
//	defer w.Close() // before store.Close: it flushes
//
//	// For each call that reached the pipeline:
//	rec := audit.FromCall(c, audit.Intent)
//	rec.Args = redacted                      // never the raw arguments
//	rec.ArgsHash = audit.ArgsHash(argsKey, c.Raw)
//	if err := w.Write(ctx, rec); err != nil {
//		return nil, audit.Unavailable(err) // the tool never runs
//	}
//
//	// Later, from `warden audit verify`:
//	report, err := audit.Verify(ctx, store, secret)
//
// Write returns only once the record is durable: concurrent writes share
// one transaction (group commit), which is where the throughput comes from,
// never from acknowledging early. If the store cannot persist a record, the
// write fails and the caller refuses the call.
//
// Queue is Write without the wait: records are chained and committed in
// the order they were queued, so a durable record vouches for every one
// queued before it.
//
// The Auditor records a write call twice: its intent, durable before the
// target runs, and its outcome, durable before the result leaves. A read
// call changes nothing, so it is recorded once: its outcome, durable
// before the result leaves, is its one record and its one wait.
//
// What durable means is the store's: with audit.durability fsync (the
// default) a record is synced to disk before it is acknowledged; with os
// it is handed to the database, which has not yet synced it, so it
// survives a crash of Warden and may be lost with a crash of the machine —
// the newest records only, as the databases recover a prefix of their
// commits.
//
// Records form one hash chain per writer instance: each record's Hash is an
// HMAC, keyed with a server secret, over the previous record's hash and the
// record itself. Verify walks every chain and names the first record that
// was modified, deleted or moved. Several Warden instances writing to one
// PostgreSQL database each keep a chain of their own, so they never contend
// for a chain head.
//
// Records carry identities, targets and redacted arguments, never
// credentials: there is no field for a token, key or secret, and arguments
// appear only as the caller redacted them, plus a keyed hash of the
// originals for correlation.
package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/wardenmcp/warden/pipeline"
)

// Phase says which part of a request a record describes.
type Phase string

const (
	// Intent is recorded, durably, before a write's target runs.
	Intent Phase = "intent"
	// Outcome is recorded once the target has run (or failed, or timed
	// out). For a write it follows the call's intent, with the same trace
	// id; a read (Mode "read") has no intent, and its outcome is the
	// call's one record. (Logs written before 2026-12 hold an intent of
	// every read too.)
	Outcome Phase = "outcome"
	// Refusal is the single record of a request refused before anything
	// ran: authentication, authorization, validation, rate limit, approval.
	Refusal Phase = "refusal"
)

// Decision is whether Warden's controls let the request proceed.
type Decision string

const (
	Allow Decision = "allow"
	Deny  Decision = "deny"
)

// Statuses of a request, as recorded in outcome and refusal records. An
// intent has no status yet.
const (
	StatusOK      = "ok"      // the target ran and answered
	StatusError   = "error"   // the target ran and failed, or answered with an error
	StatusTimeout = "timeout" // the target did not answer in time
	StatusRefused = "refused" // the request was refused before the target ran
	// StatusUnknown closes an intent whose process ended — a crash, a
	// kill — before its outcome was recorded: the target may or may not
	// have run to the end. The record is Late, its Decision Allow (as the
	// intent's), its ErrorCode ErrorProcessEnded.
	StatusUnknown = "unknown"
)

// ErrorProcessEnded is the ErrorCode of a StatusUnknown record.
const ErrorProcessEnded = "PROCESS_ENDED"

// Record is one entry of the audit log. Every field is part of the hash
// chain; the JSON names are those of the streaming sink and of the
// canonical form the chain hashes, and zero values are omitted from both,
// so that a field added later leaves the hashes of older records unchanged.
//
// Times are kept to the microsecond, in UTC, because that is what the
// stores keep: the Writer truncates Time before hashing.
type Record struct {
	// The chain: set by the Writer, never by the caller.
	Instance string `json:"instance,omitzero"`
	Seq      int64  `json:"seq,omitzero"`
	PrevHash string `json:"prev_hash,omitzero"` // hex
	Hash     string `json:"hash,omitzero"`      // hex; HMAC-SHA256 of PrevHash and the rest

	// Time is when the event happened: the request's arrival for an
	// intent, its end for an outcome or refusal. The Writer sets it to now
	// when zero.
	Time    time.Time `json:"time,omitzero"`
	Phase   Phase     `json:"phase,omitzero"`
	TraceID string    `json:"trace_id,omitzero"`

	// Who: as authentication established it, or as far as it got.
	Principal       string `json:"principal,omitzero"`
	Tenant          string `json:"tenant,omitzero"`
	AuthMethod      string `json:"auth_method,omitzero"`
	ClientName      string `json:"client_name,omitzero"`
	ClientVersion   string `json:"client_version,omitzero"`
	ProtocolVersion string `json:"protocol_version,omitzero"`
	SessionID       string `json:"session_id,omitzero"`
	RemoteAddr      string `json:"remote_addr,omitzero"`

	// What: the MCP method ("tools/call", "tools/list", ...) and the target
	// as the client named it.
	Method      string `json:"method,omitzero"`
	Target      string `json:"target,omitzero"`
	ToolVersion string `json:"tool_version,omitzero"`
	Mode        string `json:"mode,omitzero"`   // "read" or "write"
	Source      string `json:"source,omitzero"` // the kind of source serving the target
	// Args are the arguments as the caller redacted them: valid JSON, or
	// nil. The Writer stores them in canonical form (see ArgsHash).
	Args json.RawMessage `json:"args,omitzero"`
	// ArgsHash is ArgsHash of the arguments before redaction.
	ArgsHash string `json:"args_hash,omitzero"`

	// How it went.
	Decision   Decision      `json:"decision,omitzero"`
	Reason     string        `json:"reason,omitzero"` // why, in a sentence: the refusal's or error's message
	ErrorCode  string        `json:"error_code,omitzero"`
	Suggestion string        `json:"suggestion,omitzero"`
	RetryAfter int           `json:"retry_after,omitzero"` // seconds
	Status     string        `json:"status,omitzero"`
	Duration   time.Duration `json:"duration_ns,omitzero"`
	// ResultBytes is the size of the result as sent; ResultTokens an
	// estimate of what it costs a model to read (see EstimateTokens).
	ResultBytes  int64 `json:"result_bytes,omitzero"`
	ResultTokens int64 `json:"result_tokens,omitzero"`
	Rows         int64 `json:"row_count,omitzero"`
	Truncated    bool  `json:"truncated,omitzero"`

	// Filled by the approval, cache and idempotency stages.
	Approval         string `json:"approval,omitzero"` // e.g. "approved", "denied", "dry_run"
	CacheHit         bool   `json:"cache_hit,omitzero"`
	IdempotentReplay bool   `json:"idempotent_replay,omitzero"`

	// Late marks a record stored after the fact: an outcome kept in the
	// spool while the store failed and replayed once it recovered, or the
	// closure of an intent whose process ended before its outcome (status
	// StatusUnknown). Time still says when the event happened; the
	// record's place in its chain says when it was stored.
	Late bool `json:"late,omitzero"`
}

// FromCall starts a record of phase p for c, with everything the call
// knows about itself. It leaves Args and ArgsHash to the caller, who alone
// knows how to redact them, and the outcome fields to later.
func FromCall(c *pipeline.Call, p Phase) *Record {
	r := &Record{
		Phase:           p,
		TraceID:         c.TraceID,
		Target:          c.Target,
		SessionID:       c.SessionID,
		ClientName:      c.ClientName,
		ClientVersion:   c.ClientVersion,
		ProtocolVersion: c.ProtocolVersion,
	}
	if p == Intent {
		r.Time = c.Start
	}
	if pr := c.Principal; pr != nil {
		r.Principal, r.Tenant, r.AuthMethod = pr.ID, pr.Tenant, pr.AuthMethod
	}
	if s := c.Spec; s != nil {
		r.Method, r.ToolVersion, r.Mode, r.Source = s.Method.String(), s.Version, s.Mode.String(), s.Source
	}
	return r
}

// SetError records e as the reason the request was refused or failed.
func (r *Record) SetError(e *pipeline.Error) {
	r.ErrorCode, r.Reason, r.Suggestion, r.RetryAfter = string(e.Code), e.Message, e.Suggestion, e.RetryAfter
}

// EstimateTokens estimates how many tokens a model spends reading n bytes
// of result: about four bytes a token for English and JSON. It is a budget
// signal, not a bill.
func EstimateTokens(n int64) int64 { return (n + 3) / 4 }

// Unavailable is the refusal for a call whose intent could not be recorded:
// err is any error from Writer.Write, kept out of the client's sight.
func Unavailable(err error) *pipeline.Error {
	return unavailable(err, "the call was not run because it could not be recorded in the audit log")
}

// withheld is the refusal of a read that ran but whose record could not
// be made durable: its result does not leave.
func withheld(err error) *pipeline.Error {
	return unavailable(err, "the call's result was withheld because the call could not be recorded in the audit log")
}

func unavailable(err error, msg string) *pipeline.Error {
	e := pipeline.Errorf(pipeline.AuditUnavailable,
		"retry shortly; if it persists, tell the operator that the audit log is not accepting records", "%s", msg)
	// A full queue drains, and a store that missed its deadline may answer
	// the next call: either way, a retry soon may succeed.
	if errors.Is(err, ErrQueueFull) || errors.Is(err, context.DeadlineExceeded) {
		e.WithRetryAfter(time.Second)
	}
	return e
}

// Query selects records. Empty fields match everything; Since is inclusive
// and Until exclusive. Limit, when positive, caps how many records Scan
// yields.
//
// Within one instance seq is the order records were written, so a query
// naming an Instance yields records by seq; otherwise records come by time,
// ties broken by instance and seq. Desc reverses either order.
type Query struct {
	Instance, Principal, Tenant, Target string
	TraceID                             string
	Decision                            Decision
	ErrorCode                           string
	Since, Until                        time.Time
	Limit                               int
	Desc                                bool
}

// Store keeps audit records. Implementations are safe for concurrent use by
// several goroutines, and by several processes sharing one database.
//
// Append stores recs atomically — all or none — and returns only once they
// are durable: a crash after Append returns loses none of them (with
// audit.durability os, a crash of Warden; see Open). Appends are durable
// in the order they returned: a store that loses records in a crash loses
// the newest, never a record without those appended before it. It fails,
// storing nothing, if a record's (Instance, Seq) is already stored. Records
// must already carry their chain fields (see Writer); a store checks no
// hashes, and keeps neither recs nor their contents after it returns.
//
// Last returns the highest seq stored for instance and that record's hash,
// or 0 and "" if there is none.
//
// Scan calls fn with each record q selects, in the order Query documents.
// fn owns the record it is given. If fn returns an error, Scan stops and
// returns it.
//
// Every field of a Record reads back exactly as appended, which the hash
// chain depends on. Close releases the store; no other method may be
// called after it.
type Store interface {
	Append(ctx context.Context, recs []*Record) error
	Last(ctx context.Context, instance string) (seq int64, hash string, err error)
	Scan(ctx context.Context, q Query, fn func(*Record) error) error
	Close() error
}

// lister is implemented by stores that can name their chains without
// reading every record; Verify falls back to a scan for others.
type lister interface {
	Instances(ctx context.Context) ([]string, error)
}

// ErrDuplicate is wrapped by Append when a record's (instance, seq) is
// already stored: most likely two running processes were given the same
// instance id.
var ErrDuplicate = errors.New("an audit record with this instance and seq is already stored: is another process writing with the same instance id?")

func appendError(err error) error {
	return fmt.Errorf("appending audit records: %w", err)
}
