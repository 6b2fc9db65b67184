package audit

import (
	"strconv"
	"strings"
	"time"
)

// columns are the warden_audit columns both stores share, in the order
// fields and values below list them.
const columns = `instance, seq, time, phase, trace_id, principal, tenant, auth_method,
	client_name, client_version, protocol_version, session_id, remote_addr,
	method, target, tool_version, mode, source, args, args_hash,
	decision, reason, error_code, suggestion, retry_after, status, duration_ns,
	result_bytes, result_tokens, row_count, truncated, approval, cache_hit, idempotent_replay,
	prev_hash, hash`

// ncolumns is how many columns there are.
var ncolumns = strings.Count(columns, ",") + 1

// fields returns pointers to r's fields in column order, with time and
// args, which each store keeps in its own way, supplied by the caller.
func fields(r *Record, at, args any) []any {
	return []any{&r.Instance, &r.Seq, at, (*string)(&r.Phase), &r.TraceID, &r.Principal, &r.Tenant, &r.AuthMethod,
		&r.ClientName, &r.ClientVersion, &r.ProtocolVersion, &r.SessionID, &r.RemoteAddr,
		&r.Method, &r.Target, &r.ToolVersion, &r.Mode, &r.Source, args, &r.ArgsHash,
		(*string)(&r.Decision), &r.Reason, &r.ErrorCode, &r.Suggestion, &r.RetryAfter, &r.Status, (*int64)(&r.Duration),
		&r.ResultBytes, &r.ResultTokens, &r.Rows, &r.Truncated, &r.Approval, &r.CacheHit, &r.IdempotentReplay,
		&r.PrevHash, &r.Hash}
}

// values returns r's fields in column order, time and args as given.
func values(r *Record, at, args any) []any {
	return []any{r.Instance, r.Seq, at, string(r.Phase), r.TraceID, r.Principal, r.Tenant, r.AuthMethod,
		r.ClientName, r.ClientVersion, r.ProtocolVersion, r.SessionID, r.RemoteAddr,
		r.Method, r.Target, r.ToolVersion, r.Mode, r.Source, args, r.ArgsHash,
		string(r.Decision), r.Reason, r.ErrorCode, r.Suggestion, r.RetryAfter, r.Status, int64(r.Duration),
		r.ResultBytes, r.ResultTokens, r.Rows, r.Truncated, r.Approval, r.CacheHit, r.IdempotentReplay,
		r.PrevHash, r.Hash}
}

// selectQuery builds the SELECT for q. placeholder(n) spells the nth
// parameter; at converts a time to what the store keeps.
func selectQuery(q Query, placeholder func(n int) string, at func(time.Time) any) (string, []any) {
	var (
		where []string
		args  []any
	)
	cond := func(expr string, v any) {
		args = append(args, v)
		where = append(where, strings.Replace(expr, "?", placeholder(len(args)), 1))
	}
	for _, c := range []struct{ col, v string }{
		{"instance", q.Instance}, {"principal", q.Principal}, {"tenant", q.Tenant},
		{"target", q.Target}, {"decision", string(q.Decision)}, {"error_code", q.ErrorCode},
	} {
		if c.v != "" {
			cond(c.col+" = ?", c.v)
		}
	}
	if !q.Since.IsZero() {
		cond("time >= ?", at(q.Since))
	}
	if !q.Until.IsZero() {
		cond("time < ?", at(q.Until))
	}
	var b strings.Builder
	b.WriteString("SELECT " + columns + " FROM warden_audit")
	if len(where) > 0 {
		b.WriteString(" WHERE " + strings.Join(where, " AND "))
	}
	dir := ""
	if q.Desc {
		dir = " DESC"
	}
	if q.Instance != "" {
		b.WriteString(" ORDER BY seq" + dir)
	} else {
		b.WriteString(" ORDER BY time" + dir + ", instance" + dir + ", seq" + dir)
	}
	if q.Limit > 0 {
		b.WriteString(" LIMIT " + strconv.Itoa(q.Limit))
	}
	return b.String(), args
}
