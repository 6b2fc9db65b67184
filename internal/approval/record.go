package approval

import (
	"fmt"

	"github.com/wardenmcp/warden/internal/audit"
)

// DecisionRecord is the audit record of approver's decision on r (verb is
// approve or deny; authMethod says how the approver signed in: operator,
// console, api_key, ...). r is the request as the decision left it.
func DecisionRecord(r *Request, approver, authMethod, verb, reason string) *audit.Record {
	return &audit.Record{
		Phase: audit.Outcome, Method: "approvals/" + verb, Target: r.Tool, ToolVersion: r.ToolVersion,
		Principal: approver, AuthMethod: authMethod, Decision: audit.Allow, Status: audit.StatusOK,
		Reason:   fmt.Sprintf("%s %s requested by %s (%s): now %s; %s", verb, r.ID, r.Principal, r.Tenant, r.State, reason),
		ArgsHash: r.ArgsHash, Approval: r.State,
	}
}
