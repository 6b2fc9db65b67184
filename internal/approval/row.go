package approval

import (
	"encoding/json"
	"fmt"
	"time"
)

// columns is the column list of warden_approvals, in the order of row.
const columns = `id, principal, tenant, tool, tool_version, args_hash, args, summary, groups, needed, decisions, state, created_at, expires_at, risk, policy, dry_run`

// purge is the statement of Store.Purge; SQLite reads its $1 as
// PostgreSQL does.
const purge = `DELETE FROM warden_approvals WHERE (state IN ('denied', 'used') AND created_at < $1) OR expires_at < $1`

// addedColumns are the text columns added to warden_approvals after its
// first release. Opening a store adds those an older table lacks, not null
// with the empty string as default, so that its rows read back with them
// empty.
var addedColumns = []string{"risk", "policy", "dry_run"}

// row is a Request as both stores keep it: lists as JSON text, times as
// microseconds since the Unix epoch.
type row struct {
	id, principal, tenant, tool, toolVersion, argsHash, args, summary, groups string
	needed                                                                    int64
	decisions, state                                                          string
	createdAt, expiresAt                                                      int64
	risk, policy, dryRun                                                      string
}

func toRow(r *Request) (*row, error) {
	groups, err := json.Marshal(r.Groups)
	if err != nil {
		return nil, err
	}
	decisions, err := json.Marshal(r.Approvals)
	if err != nil {
		return nil, err
	}
	return &row{
		id: r.ID, principal: r.Principal, tenant: r.Tenant, tool: r.Tool, toolVersion: r.ToolVersion,
		argsHash: r.ArgsHash, args: string(r.Args), summary: r.Summary, groups: string(groups),
		needed: int64(r.Needed), decisions: string(decisions), state: r.State,
		createdAt: r.CreatedAt.UnixMicro(), expiresAt: r.ExpiresAt.UnixMicro(),
		risk: r.Risk, policy: r.Policy, dryRun: string(r.DryRun),
	}, nil
}

// dest is what Scan fills.
func (w *row) dest() []any {
	return []any{&w.id, &w.principal, &w.tenant, &w.tool, &w.toolVersion, &w.argsHash, &w.args, &w.summary,
		&w.groups, &w.needed, &w.decisions, &w.state, &w.createdAt, &w.expiresAt, &w.risk, &w.policy, &w.dryRun}
}

// values is what an INSERT takes.
func (w *row) values() []any {
	return []any{w.id, w.principal, w.tenant, w.tool, w.toolVersion, w.argsHash, w.args, w.summary,
		w.groups, w.needed, w.decisions, w.state, w.createdAt, w.expiresAt, w.risk, w.policy, w.dryRun}
}

func (w *row) request() (*Request, error) {
	r := &Request{
		ID: w.id, Principal: w.principal, Tenant: w.tenant, Tool: w.tool, ToolVersion: w.toolVersion,
		ArgsHash: w.argsHash, Summary: w.summary, Needed: int(w.needed), State: w.state,
		CreatedAt: time.UnixMicro(w.createdAt).UTC(), ExpiresAt: time.UnixMicro(w.expiresAt).UTC(),
		Risk: w.risk, Policy: w.policy,
	}
	if w.args != "" {
		r.Args = json.RawMessage(w.args)
	}
	if w.dryRun != "" {
		r.DryRun = json.RawMessage(w.dryRun)
	}
	if err := json.Unmarshal([]byte(w.groups), &r.Groups); err != nil {
		return nil, fmt.Errorf("reading approval request %s: %w", w.id, err)
	}
	if err := json.Unmarshal([]byte(w.decisions), &r.Approvals); err != nil {
		return nil, fmt.Errorf("reading approval request %s: %w", w.id, err)
	}
	return r, nil
}
