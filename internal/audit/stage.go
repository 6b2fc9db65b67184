package audit

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/wardenmcp/warden/pipeline"
)

// Auditor records calls through a Writer: it is the pipeline's audit stage
// (see pipeline.Auditor).
type Auditor struct {
	w       *Writer
	argsKey []byte
	// Redact removes secrets from arguments before they are stored; nil
	// stores them as they are.
	Redact func(v any) any
	// Observe, if set, sees every record once it is durable (anomaly rules).
	Observe func(*Record)
	log     *slog.Logger
}

var _ pipeline.Auditor = (*Auditor)(nil)

// NewAuditor returns an Auditor writing through w, hashing arguments with a
// key derived from secret.
func NewAuditor(w *Writer, secret []byte, log *slog.Logger) *Auditor {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Auditor{w: w, argsKey: ArgsKey(secret), log: log}
}

// Intent records that c is about to run. If the record cannot be made
// durable, the call is refused with AUDIT_UNAVAILABLE and never runs.
func (a *Auditor) Intent(next pipeline.Handler) pipeline.Handler {
	return func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
		rec := FromCall(c, Intent)
		rec.RemoteAddr = c.RemoteAddr
		rec.Decision = Allow
		if c.DryRun {
			// It will change nothing; a reader of the log must not take it
			// for the real action (the risk gate's own dry runs, taken for
			// approvers, have no outcome record of their own).
			rec.Reason = "dry run"
		}
		a.arguments(rec, c)
		if err := a.write(ctx, rec); err != nil {
			a.log.Error("audit: intent not recorded; refusing the call", "trace_id", c.TraceID, "err", err)
			return nil, Unavailable(err)
		}
		c.Intended = true
		return next(ctx, c)
	}
}

// Outcome records how c ended: a refusal if it never ran, else its outcome.
func (a *Auditor) Outcome(next pipeline.Handler) pipeline.Handler {
	return func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
		res, err := next(ctx, c)
		phase := Refusal
		if c.Intended {
			phase = Outcome
		}
		rec := FromCall(c, phase)
		rec.Time = time.Now()
		rec.RemoteAddr = c.RemoteAddr
		rec.Duration = rec.Time.Sub(c.Start)
		a.arguments(rec, c)
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
		if werr := a.write(ctx, rec); werr != nil {
			// The intent is durable; the call has ended and its result is
			// the caller's. A refusal that could not be recorded is refused
			// all the same. Either way the operator must know.
			a.log.Error("audit: outcome not recorded", "trace_id", c.TraceID, "phase", phase, "err", werr)
			if !c.Intended && err == nil {
				return nil, Unavailable(werr)
			}
		}
		return res, err
	}
}

// Event records a list, or a request refused before any call existed.
func (a *Auditor) Event(ctx context.Context, e *pipeline.Event) error {
	rec := &Record{Time: time.Now(), TraceID: e.TraceID, Method: e.Method, SessionID: e.SessionID, RemoteAddr: e.RemoteAddr,
		Decision: Allow, Status: StatusOK, Phase: Outcome, Rows: int64(e.Count)}
	if p := e.Principal; p != nil {
		rec.Principal, rec.Tenant, rec.AuthMethod = p.ID, p.Tenant, p.AuthMethod
	}
	if e.Code != "" {
		rec.Phase, rec.Decision, rec.Status = Refusal, Deny, StatusRefused
		rec.ErrorCode, rec.Reason = string(e.Code), e.Reason
	}
	return a.write(ctx, rec)
}

func (a *Auditor) write(ctx context.Context, rec *Record) error {
	// The record must be durable whether or not the caller is still there.
	if err := a.w.Write(context.WithoutCancel(ctx), rec); err != nil {
		return err
	}
	if a.Observe != nil {
		a.Observe(rec)
	}
	return nil
}

// arguments fills Args (redacted) and ArgsHash (of the arguments as sent).
func (a *Auditor) arguments(rec *Record, c *pipeline.Call) {
	raw := c.Raw
	if len(raw) == 0 && c.Args != nil {
		raw, _ = json.Marshal(c.Args)
	}
	if len(raw) == 0 {
		return
	}
	rec.ArgsHash = ArgsHash(a.argsKey, raw)
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return // not JSON: the hash alone correlates it
	}
	if a.Redact != nil {
		v = a.Redact(v)
	}
	rec.Args, _ = json.Marshal(v)
}

func resultBytes(res *pipeline.Result) int64 {
	var v any
	switch {
	case res.Tool != nil:
		v = res.Tool
	case res.Resource != nil:
		v = res.Resource
	case res.Prompt != nil:
		v = res.Prompt
	default:
		return 0
	}
	b, err := json.Marshal(v)
	if err != nil {
		return 0
	}
	return int64(len(b))
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
