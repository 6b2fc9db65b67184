package policy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"time"

	"github.com/wardenmcp/warden/internal/policy"
	"github.com/wardenmcp/warden/pipeline"
)

// The issue's rule: support agents may call search_orders only for open or
// pending orders. In a configuration, the file is named by
// policies.cedar, relative to the configuration file, and read with Load.
func Example() {
	p, err := policy.Parse("policies.cedar", []byte(`
@id("support-search-open-orders")
@suggestion("set status to open or pending")
permit (
    principal in Warden::Group::"support",
    action == Warden::Action::"call_tool",
    resource == Warden::Tool::"search_orders"
) when {
    context.arguments has status &&
    ["open", "pending"].contains(context.arguments.status)
};
`))
	if err != nil {
		log.Fatal(err)
	}
	spec := &pipeline.Spec{Method: pipeline.CallTool, Name: "search_orders", Scope: "orders:read"}
	ann := &pipeline.Principal{ID: "ann", Scopes: []string{"orders:read"}, Groups: []string{"support"}}
	for _, args := range []string{`{"status":"open"}`, `{"status":"closed"}`} {
		c := &pipeline.Call{Spec: spec, Principal: ann, Raw: json.RawMessage(args), Start: time.Now()}
		if err := p.Authorize(context.Background(), c); err != nil {
			e := pipeline.AsError(err)
			fmt.Printf("%s: %s (%s)\n", args, e.Message, e.Suggestion)
			continue
		}
		fmt.Printf("%s: allowed\n", args)
	}
	// Output:
	// {"status":"open"}: allowed
	// {"status":"closed"}: calling tool search_orders is denied: no Cedar policy permits it (set status to open or pending)
}

func ExampleCedar_Explain() {
	p, err := policy.Parse("policies.cedar", []byte(`
@id("support") permit (principal in Warden::Group::"support", action, resource);
@id("big-refunds")
forbid (principal, action, resource == Warden::Tool::"refund")
when { context.arguments.amount > 500 };
`))
	if err != nil {
		log.Fatal(err)
	}
	spec := &pipeline.Spec{Method: pipeline.CallTool, Name: "refund", Mode: pipeline.Write, Scope: "orders:write"}
	ann := &pipeline.Principal{ID: "ann", Scopes: []string{"orders:write"}, Groups: []string{"support"}}
	// No amount: the forbid cannot be evaluated, and so refuses.
	x := p.Explain(context.Background(), &pipeline.Call{Spec: spec, Principal: ann, Raw: json.RawMessage(`{"order":7}`)})
	fmt.Println("allowed:", x.Allowed)
	for _, r := range x.Reasons {
		fmt.Println(r)
	}
	// Output:
	// allowed: false
	// forbid "big-refunds" at policies.cedar:3:1 failed, and a forbid that fails refuses: record does not have the attribute `amount`
	// permit "support" at policies.cedar:2:1 applies, but a forbid overrides it
}
