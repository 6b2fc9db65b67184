package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"time"

	"github.com/wardenmcp/warden/pipeline"
)

// Auditor records calls through a Writer: it is the pipeline's audit stage
// (see pipeline.Auditor).
type Auditor struct {
	w    *Writer
	args *argsHasher
	// Redact removes secrets from arguments before they are stored; nil
	// stores them as they are.
	Redact func(v any) any
	// Observe, if set, sees every record once it is durable (anomaly rules).
	Observe func(*Record)
	log     *slog.Logger
	// timeout bounds each wait of a call for its records: the writer's
	// AppendTimeout, within which a store that answers at all has answered.
	timeout time.Duration
}

var _ pipeline.Auditor = (*Auditor)(nil)

// NewAuditor returns an Auditor writing through w, hashing arguments with a
// key derived from secret.
func NewAuditor(w *Writer, secret []byte, log *slog.Logger) *Auditor {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Auditor{w: w, args: newArgsHasher(ArgsKey(secret)), log: log, timeout: w.opts.AppendTimeout}
}

// callState carries the arguments of one call, redacted and hashed once,
// from the intent record to the outcome record.
type callState struct {
	raw      json.RawMessage // the arguments args and argsHash are of
	args     json.RawMessage
	argsHash string
}

type callStateKey struct{}

// Intent records that c is about to run, and waits until the record is
// durable. If it cannot be made durable, the call is refused with
// AUDIT_UNAVAILABLE and never runs.
//
// A read call (a target of mode read) leaves no intent: it changes
// nothing a crash could leave unrecorded, so its outcome, which Outcome
// makes durable before its result leaves, is the one record of the call —
// one commit and one wait. Its intent would vouch for nothing the outcome
// does not.
func (a *Auditor) Intent(next pipeline.Handler) pipeline.Handler {
	return func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
		if readOnly(c) {
			c.Intended = true
			return next(ctx, c)
		}
		rec := FromCall(c, Intent)
		rec.RemoteAddr = c.RemoteAddr
		rec.Decision = Allow
		if c.DryRun {
			// It will change nothing; a reader of the log must not take it
			// for the real action (the risk gate's own dry runs, taken for
			// approvers, have no outcome record of their own).
			rec.Reason = "dry run"
		}
		st, _ := ctx.Value(callStateKey{}).(*callState)
		a.arguments(rec, c, st)
		wctx, cancel := a.deadline(ctx)
		_, err := a.write(wctx, rec)
		cancel()
		if err != nil {
			a.log.Error("audit: intent not recorded; refusing the call", "trace_id", c.TraceID, "err", err)
			return nil, Unavailable(err)
		}
		c.Intended = true
		return next(ctx, c)
	}
}

// readOnly reports whether c is a call of a target declared read-only,
// whose outcome alone records it.
func readOnly(c *pipeline.Call) bool {
	return c.Spec != nil && c.Spec.Mode == pipeline.Read
}

// Outcome records how c ended: a refusal if it never ran, else its outcome.
// It returns once the record is durable. If it is not, a refusal is
// refused all the same; a read's result is withheld, since nothing else
// records the call; a write's result, the target having run, is the
// caller's, and its outcome goes to the spool (see keep).
func (a *Auditor) Outcome(next pipeline.Handler) pipeline.Handler {
	return func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
		st := &callState{}
		res, err := next(context.WithValue(ctx, callStateKey{}, st), c)
		phase := Refusal
		if c.Intended {
			phase = Outcome
		}
		rec := FromCall(c, phase)
		rec.Time = time.Now()
		rec.RemoteAddr = c.RemoteAddr
		rec.Duration = rec.Time.Sub(c.Start)
		a.arguments(rec, c, st)
		rec.Decision, rec.Status = Allow, StatusOK
		if err == nil && !c.Intended {
			// Answered without running: the risk gate is asking the user to
			// confirm the call (its flag says so). It has not been allowed.
			rec.Decision, rec.Status = Deny, StatusRefused
		}
		if err != nil {
			e := pipeline.AsError(err)
			rec.SetError(e)
			switch {
			case !c.Intended:
				rec.Decision, rec.Status = Deny, StatusRefused
			case e.Code == pipeline.Timeout:
				rec.Status = StatusTimeout
			default:
				rec.Status = StatusError
			}
		}
		if res != nil {
			rec.Rows, rec.Truncated = int64(res.Rows), res.Truncated
			if res.Tool != nil && res.Tool.IsError {
				rec.Status = StatusError
			}
			if n := resultBytes(res); n > 0 {
				rec.ResultBytes, rec.ResultTokens = n, EstimateTokens(n)
			}
		}
		var findings []string
		for _, f := range c.Flags {
			switch f {
			case "cache_hit":
				rec.CacheHit = true
			case "idempotent_replay":
				rec.IdempotentReplay = true
			default:
				findings = append(findings, f)
			}
		}
		if len(findings) > 0 {
			rec.Reason = joinFlags(rec.Reason, findings)
		}
		if !c.Intended && pipeline.AsError(err).Code == pipeline.AuditUnavailable {
			// The intent was refused because the log did not take it in
			// time: the refusal is queued behind it, not waited for, or the
			// caller would wait a second deadline for the same store.
			if _, qerr := a.w.Queue(rec); qerr != nil {
				a.log.Error("audit: refusal not recorded", "trace_id", c.TraceID, "err", qerr)
			}
			return res, err
		}
		wctx, cancel := a.deadline(ctx)
		defer cancel()
		p, werr := a.write(wctx, rec)
		switch {
		case werr == nil:
			return res, err
		case !c.Intended:
			// A refusal that could not be recorded is refused all the same;
			// nothing ran.
			a.log.Error("audit: refusal not recorded", "trace_id", c.TraceID, "err", werr)
			if err == nil {
				return nil, Unavailable(werr)
			}
			return res, err
		case readOnly(c):
			// Nothing durable says this call ran, so its result must not
			// leave. It read and changed nothing, so there is nothing for
			// the spool to keep: the record is withdrawn if it still can
			// be, lest a store that answers late say the result left.
			if p != nil {
				p.Abandon()
			}
			a.log.Error("audit: outcome of a read call not recorded; withholding its result", "trace_id", c.TraceID, "err", werr)
			return nil, withheld(werr)
		default:
			// The intent is durable and the target has run: its result is
			// the caller's, and its outcome must not be lost.
			return a.keep(c, rec, p, res, werr), err
		}
	}
}

// OutcomeMetaKey is the key, in a result's _meta, of the note that the
// call ran but its outcome could not be recorded anywhere: its value is
// OutcomeUnrecorded. Clients may show it; operators are alerted by the
// metric warden_audit_outcome_unrecorded_total and an error in the log.
const (
	OutcomeMetaKey    = "io.wardenmcp/audit"
	OutcomeUnrecorded = "outcome_unrecorded"
)

// keep deals with the outcome rec of a call that ran, which the store did
// not take: p is its place in the queue, if it got one. If no batch has it
// yet, it is withdrawn, so that it is not stored twice; either way it is
// kept in the spool, and Replay, which skips a trace whose outcome reached
// the store after all, writes it to the store later. Without a spool, or
// if the spool fails too, the response says that the outcome was not
// recorded (the spool, if any, holds it in memory for Replay all the
// same): keep returns res, or a copy of it with that note.
func (a *Auditor) keep(c *pipeline.Call, rec *Record, p *Pending, res *pipeline.Result, werr error) *pipeline.Result {
	if p != nil {
		p.Abandon()
	}
	sp := a.w.opts.Spool
	if sp != nil {
		serr := sp.Add(rec)
		if serr == nil {
			a.log.Warn("audit: outcome not stored in time; kept in the spool, to be stored late", "trace_id", c.TraceID, "spool", sp.Dir(), "err", werr)
			return res
		}
		werr = errors.Join(werr, serr)
	}
	a.w.unrecorded.Add(1)
	// Not durable anywhere; held in memory, it is still stored, late, if
	// the store recovers before the process ends.
	held := sp != nil && sp.Hold(rec)
	a.log.Error("audit: ALERT: a call ran and its outcome is recorded nowhere durable (neither the store nor the spool took it); its intent is in the log",
		"trace_id", c.TraceID, "target", c.Target, "held_in_memory", held, "err", werr)
	if res == nil {
		return nil
	}
	// A result may be shared (the cache, an idempotent replay): the note
	// goes on a copy.
	out := *res
	switch {
	case res.Tool != nil:
		t := *res.Tool
		t.Meta = withMeta(t.Meta)
		out.Tool = &t
	case res.Resource != nil:
		r := *res.Resource
		r.Meta = withMeta(r.Meta)
		out.Resource = &r
	case res.Prompt != nil:
		p := *res.Prompt
		p.Meta = withMeta(p.Meta)
		out.Prompt = &p
	}
	return &out
}

// withMeta returns a copy of m with the unrecorded-outcome note.
func withMeta(m map[string]any) map[string]any {
	out := make(map[string]any, len(m)+1)
	maps.Copy(out, m)
	out[OutcomeMetaKey] = OutcomeUnrecorded
	return out
}

// Event records a list, or a request refused before any call existed, and
// waits for the record as long as ctx and the auditor's timeout allow; with
// ctx already done, it queues the record and returns at once (with ctx's
// error), for a refusal that must not wait on a store known to be stalled.
func (a *Auditor) Event(ctx context.Context, e *pipeline.Event) error {
	rec := &Record{Time: time.Now(), TraceID: e.TraceID, Method: e.Method, Target: e.Target, SessionID: e.SessionID, RemoteAddr: e.RemoteAddr,
		Decision: Allow, Status: StatusOK, Phase: Outcome, Rows: int64(e.Count)}
	if p := e.Principal; p != nil {
		rec.Principal, rec.Tenant, rec.AuthMethod = p.ID, p.Tenant, p.AuthMethod
	}
	if e.Code != "" {
		rec.Phase, rec.Decision, rec.Status = Refusal, Deny, StatusRefused
		rec.ErrorCode, rec.Reason = string(e.Code), e.Reason
	}
	wctx, cancel := a.deadline(ctx)
	defer cancel()
	_, err := a.write(wctx, rec)
	return err
}

// deadline bounds a call's wait for its records: by the call's own
// context, and at most by the auditor's timeout. The records are stored
// all the same if the store answers later; the caller is told at once
// that they are not known to be.
func (a *Auditor) deadline(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, a.timeout)
}

// write records rec and returns once it is durable, or with an error once
// ctx ends; p is rec's place in the queue, nil if it did not get one, for
// a caller that keeps rec elsewhere when it is not durable in time.
// Observe sees rec once it is durable.
func (a *Auditor) write(ctx context.Context, rec *Record) (p *Pending, err error) {
	p, err = a.w.Queue(rec)
	if err != nil {
		return nil, err
	}
	if err := p.Wait(ctx); err != nil {
		return p, err
	}
	*rec = p.rec
	if a.Observe != nil {
		a.Observe(rec)
	}
	return p, nil
}

// arguments fills Args (redacted, canonical) and ArgsHash (of the
// arguments as sent). With st, it does the work once per call and keeps
// it there for the call's other record.
func (a *Auditor) arguments(rec *Record, c *pipeline.Call, st *callState) {
	if st != nil && len(c.Raw) > 0 && bytes.Equal(c.Raw, st.raw) {
		// The same arguments: a stage between the two halves (the risk
		// gate) may run the target with others, as a dry run.
		rec.Args, rec.ArgsHash = st.args, st.argsHash
		return
	}
	raw := c.Raw
	if len(raw) == 0 && c.Args != nil {
		raw, _ = json.Marshal(c.Args)
	}
	if len(raw) > 0 {
		rec.ArgsHash = a.args.hash(raw)
		rec.Args = a.redacted(raw)
	}
	if st != nil && len(c.Raw) > 0 {
		st.raw, st.args, st.argsHash = c.Raw, rec.Args, rec.ArgsHash
	}
}

// redacted returns raw redacted, in canonical form, or nil if raw is not
// JSON (the hash alone correlates it then).
func (a *Auditor) redacted(raw json.RawMessage) json.RawMessage {
	if a.Redact == nil {
		c, _ := canonicalJSON(raw)
		return c
	}
	// The redactor walks decoded values; numbers stay as they were spelt.
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if d.Decode(&v) != nil || d.More() {
		return nil
	}
	return appendCanonical(make([]byte, 0, len(raw)), a.Redact(v))
}

func joinFlags(reason string, flags []string) string {
	s := reason
	for _, f := range flags {
		if s != "" {
			s += "; "
		}
		s += f
	}
	return s
}
