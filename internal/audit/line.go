package audit

import (
	"strconv"
	"time"

	"github.com/wardenmcp/warden/internal/jsonenc"
)

// appendLine writes r as the sinks receive it: one line of JSON, exactly as
// encoding/json (with HTML escaping off) encodes a Record, followed by a
// newline. It is written out by hand so that a batch costs no reflection;
// TestLineIsJSON holds it to encoding/json.
func appendLine(b []byte, r *Record) []byte {
	b = append(b, '{')
	first := true
	key := func(k string) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, k...) // keys are plain ASCII
		b = append(b, '"', ':')
	}
	str := func(k, v string) {
		if v != "" {
			key(k)
			b = jsonenc.AppendString(b, v, false)
		}
	}
	num := func(k string, v int64) {
		if v != 0 {
			key(k)
			b = strconv.AppendInt(b, v, 10)
		}
	}
	flag := func(k string, v bool) {
		if v {
			key(k)
			b = append(b, "true"...)
		}
	}
	// In the order of Record's fields.
	str("instance", r.Instance)
	num("seq", r.Seq)
	str("prev_hash", r.PrevHash)
	str("hash", r.Hash)
	if !r.Time.IsZero() {
		key("time")
		b = append(b, '"')
		b = r.Time.AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	}
	str("phase", string(r.Phase))
	str("trace_id", r.TraceID)
	str("principal", r.Principal)
	str("tenant", r.Tenant)
	str("auth_method", r.AuthMethod)
	str("client_name", r.ClientName)
	str("client_version", r.ClientVersion)
	str("protocol_version", r.ProtocolVersion)
	str("session_id", r.SessionID)
	str("remote_addr", r.RemoteAddr)
	str("method", r.Method)
	str("target", r.Target)
	str("tool_version", r.ToolVersion)
	str("mode", r.Mode)
	str("source", r.Source)
	if r.Args != nil {
		key("args")
		b = append(b, r.Args...) // canonical, hence compact, already
	}
	str("args_hash", r.ArgsHash)
	str("decision", string(r.Decision))
	str("reason", r.Reason)
	str("error_code", r.ErrorCode)
	str("suggestion", r.Suggestion)
	num("retry_after", int64(r.RetryAfter))
	str("status", r.Status)
	num("duration_ns", int64(r.Duration))
	num("result_bytes", r.ResultBytes)
	num("result_tokens", r.ResultTokens)
	num("row_count", r.Rows)
	flag("truncated", r.Truncated)
	str("approval", r.Approval)
	flag("cache_hit", r.CacheHit)
	flag("idempotent_replay", r.IdempotentReplay)
	flag("late", r.Late)
	return append(b, '}', '\n')
}
