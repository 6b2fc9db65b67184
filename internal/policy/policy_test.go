package policy

import (
	"context"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cedar-policy/cedar-go"

	"github.com/wardenmcp/warden/pipeline"
)

var (
	searchOrders = &pipeline.Spec{Method: pipeline.CallTool, Name: "search_orders", Version: "1", Mode: pipeline.Read, Source: "postgres", Scope: "orders:read"}
	deleteOrder  = &pipeline.Spec{Method: pipeline.CallTool, Name: "delete_order", Version: "2", Mode: pipeline.Write, Source: "postgres", Scope: "orders:write"}
	orderDoc     = &pipeline.Spec{Method: pipeline.ReadResource, Name: "order", Source: "file", Scope: "orders:read"}
	summarize    = &pipeline.Spec{Method: pipeline.GetPrompt, Name: "summarize", Source: "native", Scope: "prompts"}
)

// monday10 is a Monday, 10:00 UTC.
var monday10 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

func support() *pipeline.Principal {
	return &pipeline.Principal{ID: "ann", Tenant: "acme", Scopes: []string{"orders:read"}, Groups: []string{"support"}, AuthMethod: "jwt"}
}

func sales() *pipeline.Principal {
	return &pipeline.Principal{ID: "bob", Tenant: "acme", Scopes: []string{"orders:read"}, Groups: []string{"sales"}, AuthMethod: "api_key"}
}

// call builds a tool call with raw JSON arguments, at monday10 unless
// changed.
func call(p *pipeline.Principal, s *pipeline.Spec, raw string) *pipeline.Call {
	c := &pipeline.Call{Spec: s, Target: s.Name, Principal: p, Start: monday10, ClientName: "claude-code", ClientVersion: "2.1"}
	if raw != "" {
		c.Raw = json.RawMessage(raw)
	}
	return c
}

func at(c *pipeline.Call, t time.Time) *pipeline.Call { c.Start = t; return c }

func withArgs(c *pipeline.Call, args map[string]any) *pipeline.Call { c.Args = args; return c }

const issueExample = `
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
`

const permitAll = `@id("all") permit (principal, action, resource);`

func TestAuthorize(t *testing.T) {
	tests := []struct {
		name     string
		policies string
		call     *pipeline.Call
		// want is "" to allow, else substrings of the refusal's message.
		want       []string
		suggestion string // a substring of the suggestion, if set
		code       pipeline.Code
	}{
		// The issue's example: support agents may call search_orders only
		// with status in [open, pending].
		{name: "support, status open", policies: issueExample, call: call(support(), searchOrders, `{"status":"open"}`)},
		{name: "support, status pending", policies: issueExample, call: call(support(), searchOrders, `{"status":"pending","limit":10}`)},
		{name: "support, status closed", policies: issueExample, call: call(support(), searchOrders, `{"status":"closed"}`),
			want: []string{"calling tool search_orders", "no Cedar policy permits it"}, suggestion: "set status to open or pending"},
		{name: "support, no status", policies: issueExample, call: call(support(), searchOrders, `{}`),
			want: []string{"no Cedar policy permits it"}, suggestion: "set status to open or pending"},
		{name: "support, no arguments", policies: issueExample, call: call(support(), searchOrders, ""), want: []string{"no Cedar policy permits it"}},
		{name: "support, null status", policies: issueExample, call: call(support(), searchOrders, `{"status":null}`), want: []string{"no Cedar policy permits it"}},
		{name: "support, numeric status", policies: issueExample, call: call(support(), searchOrders, `{"status":1}`), want: []string{"no Cedar policy permits it"}},
		{name: "support, status in an array", policies: issueExample, call: call(support(), searchOrders, `{"status":["open"]}`), want: []string{"no Cedar policy permits it"}},
		{name: "support, duplicate key: the last wins, as in validation", policies: issueExample, call: call(support(), searchOrders, `{"status":"open","status":"closed"}`),
			want: []string{"no Cedar policy permits it"}},
		{name: "sales, status open", policies: issueExample, call: call(sales(), searchOrders, `{"status":"open"}`),
			want: []string{"no Cedar policy permits it"}, suggestion: "ask an operator"},
		{name: "support, another tool", policies: issueExample, call: call(support(), deleteOrder, `{"status":"open"}`), want: []string{"calling tool delete_order"}},
		{name: "support, decoded arguments are read as validation reads them", policies: issueExample,
			call: withArgs(call(support(), searchOrders, `{"status":"closed"}`), map[string]any{"status": "open"})},

		// Forbid beats permit.
		{name: "forbid beats permit", policies: permitAll + `
			@id("no-sales-writes")
			@suggestion("ask support to delete the order")
			forbid (principal in Warden::Group::"sales", action, resource) when { resource.mode == "write" };`,
			call: call(sales(), deleteOrder, `{"id":7}`), want: []string{`forbidden by Cedar policy "no-sales-writes"`}, suggestion: "ask support to delete the order"},
		{name: "forbid not applying leaves the permit", policies: permitAll + `
			forbid (principal in Warden::Group::"sales", action, resource) when { resource.mode == "write" };`,
			call: call(sales(), searchOrders, `{}`)},
		{name: "several forbids are all named", policies: permitAll + `
			@id("f1") forbid (principal, action, resource) when { !resource.read_only };
			@id("f2") forbid (principal, action, resource == Warden::Tool::"delete_order");`,
			call: call(support(), deleteOrder, `{}`), want: []string{`policies "f1", "f2"`}, suggestion: "ask an operator"},

		// Default deny.
		{name: "default deny", policies: `permit (principal, action == Warden::Action::"get_prompt", resource);`,
			call: call(support(), searchOrders, `{}`), want: []string{"no Cedar policy permits it"}},
		{name: "prompts permitted", policies: `permit (principal, action == Warden::Action::"get_prompt", resource);`,
			call: withArgs(call(support(), summarize, ""), map[string]any{"topic": "refunds"})},
		{name: "resource read", policies: `permit (principal, action == Warden::Action::"read_resource", resource == Warden::Resource::"order")
			when { context.arguments.id == "42" && resource.source == "file" };`,
			call: withArgs(call(support(), orderDoc, ""), map[string]any{"id": "42"})},
		{name: "resource read, other variable", policies: `permit (principal, action == Warden::Action::"read_resource", resource == Warden::Resource::"order")
			when { context.arguments.id == "42" };`,
			call: withArgs(call(support(), orderDoc, ""), map[string]any{"id": "43"}), want: []string{"reading resource order"}},

		// Tenant rules.
		{name: "own tenant in arguments", policies: permitAll + ownTenant, call: call(support(), searchOrders, `{"tenant_id":"acme"}`)},
		{name: "other tenant in arguments", policies: permitAll + ownTenant, call: call(support(), searchOrders, `{"tenant_id":"globex"}`),
			want: []string{`"own-tenant"`}, suggestion: "use your own tenant"},
		{name: "tenant-only tool, right tenant", policies: tenantTool, call: call(support(), searchOrders, `{}`)},
		{name: "tenant-only tool, wrong tenant", policies: tenantTool,
			call: call(&pipeline.Principal{ID: "eve", Tenant: "globex", Groups: []string{"support"}}, searchOrders, `{}`), want: []string{"no Cedar policy permits it"}},

		// Time rules, in UTC whatever the zone of the call's start.
		{name: "write in office hours", policies: permitAll + officeHours, call: call(support(), deleteOrder, `{}`)},
		{name: "write in office hours, other zone", policies: permitAll + officeHours,
			call: at(call(support(), deleteOrder, `{}`), monday10.In(time.FixedZone("JST", 9*3600)))},
		{name: "write at night", policies: permitAll + officeHours, call: at(call(support(), deleteOrder, `{}`), monday10.Add(10*time.Hour)),
			want: []string{`"office-hours"`}, suggestion: "weekday"},
		{name: "write on Saturday", policies: permitAll + officeHours, call: at(call(support(), deleteOrder, `{}`), monday10.AddDate(0, 0, 5)),
			want: []string{`"office-hours"`}},
		{name: "read at night", policies: permitAll + officeHours, call: at(call(support(), searchOrders, `{}`), monday10.Add(10*time.Hour))},
		{name: "datetime before cutoff", policies: permitAll + cutoff, call: call(support(), searchOrders, `{}`)},
		{name: "datetime after cutoff", policies: permitAll + cutoff, call: at(call(support(), searchOrders, `{}`), time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)),
			want: []string{`"cutoff"`}},
		{name: "iso string", policies: `permit (principal, action, resource) when { context.time.iso == "2026-03-02T10:00:00Z" };`,
			call: at(call(support(), searchOrders, `{}`), monday10.In(time.FixedZone("X", -3600)))},

		// A forbid that fails to evaluate refuses; a permit that fails does
		// not permit.
		{name: "erroring forbid refuses: missing argument", policies: permitAll + bigAmounts, call: call(support(), deleteOrder, `{"id":1}`),
			want: []string{`forbid policy "big-amounts" could not be evaluated`, "a forbid that fails refuses"}, suggestion: "warden explain"},
		{name: "erroring forbid refuses: wrong type", policies: permitAll + bigAmounts, call: call(support(), deleteOrder, `{"amount":"lots"}`),
			want: []string{`"big-amounts" could not be evaluated`}},
		{name: "forbid evaluates false", policies: permitAll + bigAmounts, call: call(support(), deleteOrder, `{"amount":10}`)},
		{name: "forbid applies", policies: permitAll + bigAmounts, call: call(support(), deleteOrder, `{"amount":5000}`),
			want: []string{`forbidden by Cedar policy "big-amounts"`}},
		{name: "forbid on a decimal", policies: permitAll + bigAmounts, call: call(support(), deleteOrder, `{"amount":1000.5}`),
			want: []string{`"big-amounts" could not be evaluated`}}, // > needs Longs: a type error, which refuses
		{name: "erroring permit does not permit", policies: `permit (principal, action, resource) when { context.arguments.amount < 100 };`,
			call: call(support(), deleteOrder, `{}`), want: []string{"no Cedar policy permits it"}},

		// The rest of the model.
		{name: "scopes and auth method", policies: `permit (principal, action, resource) when { principal.scopes.contains("orders:read") && principal.auth_method == "jwt" };`,
			call: call(support(), searchOrders, `{}`)},
		{name: "scopes, missing", policies: `permit (principal, action, resource) when { principal.scopes.contains("orders:admin") };`,
			call: call(support(), searchOrders, `{}`), want: []string{"no Cedar policy permits it"}},
		{name: "principal id", policies: `permit (principal == Warden::Principal::"ann", action, resource);`, call: call(support(), searchOrders, `{}`)},
		{name: "resource attributes", policies: `permit (principal, action, resource is Warden::Tool) when {
				resource.name == "delete_order" && resource.version == "2" && resource.risk_tier == "write" &&
				!resource.read_only && resource.source == "postgres" };`,
			call: call(support(), deleteOrder, `{}`)},
		{name: "client", policies: permitAll + `@id("no-old-clients") forbid (principal, action, resource) when { context.client.name == "claude-code" && context.client.version == "2.1" };`,
			call: call(support(), searchOrders, `{}`), want: []string{`"no-old-clients"`}},
		{name: "context tenant", policies: `permit (principal, action, resource) when { context.tenant == "acme" };`, call: call(support(), searchOrders, `{}`)},
		{name: "nested arguments", policies: `permit (principal, action, resource) when {
				context.arguments.filter.tags.contains("vip") && context.arguments.filter.min == 3 &&
				context.arguments.price.lessThan(decimal("9.99")) && !(context.arguments.filter has gone) };`,
			call: call(support(), searchOrders, `{"filter":{"tags":["vip","new",null],"min":3.0,"gone":null},"price":9.5}`)},
		{name: "numbers as the handler will see them", policies: `permit (principal, action, resource) when {
				context.arguments.n == 9007199254740992 && context.arguments.big == "1.2345678901234568e+29" && context.arguments.pi == "3.14159" };`,
			call: call(support(), searchOrders, `{"n":9007199254740993,"big":123456789012345678901234567890,"pi":3.14159}`)},

		{name: "escaped names are seen", policies: `permit (principal, action, resource) when {
				context["argu\u{6d}ents"]["status"] == "open" && principal["sc\u{6f}pes"].contains("orders:read") };`,
			call: call(support(), searchOrders, `{"status":"open"}`)},

		// Arguments that cannot be read refuse.
		{name: "arguments not an object", policies: issueExample, call: call(support(), searchOrders, `["status"]`),
			want: []string{"JSON object"}, code: pipeline.InvalidArgument},
		{name: "arguments not JSON", policies: issueExample, call: call(support(), searchOrders, `{"status":`),
			want: []string{"not valid JSON"}, code: pipeline.InvalidArgument},
		{name: "trailing data", policies: issueExample, call: call(support(), searchOrders, `{} {}`),
			want: []string{"not valid JSON"}, code: pipeline.InvalidArgument},
		{name: "arguments no policy reads are left to validation", policies: permitAll, call: call(support(), searchOrders, `{"status":`)},
		{name: "no principal", policies: permitAll, call: call(nil, searchOrders, `{}`), want: []string{"no verified identity"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse("test.cedar", []byte(tt.policies))
			if err != nil {
				t.Fatal(err)
			}
			err = p.Authorize(context.Background(), tt.call)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("refused, want allowed: %v", err)
				}
				return
			}
			var perr *pipeline.Error
			if !errors.As(err, &perr) {
				t.Fatalf("got %v, want a *pipeline.Error", err)
			}
			code := tt.code
			if code == "" {
				code = pipeline.PermissionDenied
			}
			if perr.Code != code {
				t.Errorf("code %s, want %s", perr.Code, code)
			}
			for _, w := range tt.want {
				if !strings.Contains(perr.Message, w) {
					t.Errorf("message %q does not contain %q", perr.Message, w)
				}
			}
			if !strings.Contains(perr.Suggestion, tt.suggestion) {
				t.Errorf("suggestion %q does not contain %q", perr.Suggestion, tt.suggestion)
			}
		})
	}
}

const ownTenant = `
@id("own-tenant")
@suggestion("use your own tenant")
forbid (principal, action, resource)
when { context.arguments has tenant_id && context.arguments.tenant_id != principal.tenant };`

const tenantTool = `
permit (principal in Warden::Group::"support", action, resource == Warden::Tool::"search_orders")
when { principal.tenant == "acme" && context.tenant == principal.tenant };`

const officeHours = `
@id("office-hours")
@suggestion("retry on a weekday between 08:00 and 18:00 UTC")
forbid (principal, action == Warden::Action::"call_tool", resource)
when { resource.risk_tier == "write" }
unless {
    context.time.hour >= 8 && context.time.hour < 18 &&
    !(["Saturday", "Sunday"].contains(context.time.weekday))
};`

const cutoff = `
@id("cutoff")
forbid (principal, action, resource) when { context.time.now >= datetime("2027-01-01T00:00:00Z") };`

// bigAmounts reads amount without `has`: it fails when amount is missing or
// not a Long.
const bigAmounts = `
@id("big-amounts")
forbid (principal, action, resource == Warden::Tool::"delete_order")
when { context.arguments.amount > 1000 };`

// TestUndecidable checks that what the policy cannot judge is refused with
// an error that is not a *pipeline.Error, which the authorize stage turns
// into a refusal.
func TestUndecidable(t *testing.T) {
	p, err := Parse("test.cedar", []byte(permitAll+` forbid (principal, action, resource) when { context.arguments has x };`))
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*pipeline.Call{
		"unsupported argument type": withArgs(call(support(), summarize, ""), map[string]any{"x": struct{}{}}),
		"no spec":                   {Principal: support()},
		"unknown method":            call(support(), &pipeline.Spec{Name: "odd"}, ""),
	} {
		err := p.Authorize(context.Background(), c)
		var perr *pipeline.Error
		if err == nil || errors.As(err, &perr) {
			t.Errorf("%s: got %v, want a plain error", name, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"syntax", "permit (principal, action, resource);\n\nforbid (principal, action, resource)\nwhen { context.x == };", []string{"rules.cedar:4:", "parse error"}},
		{"missing semicolon", "permit (principal, action, resource)\npermit (principal, action, resource);", []string{"rules.cedar:2:"}},
		{"single quotes", `permit (principal, action, resource) when { "a" == 'b' };`, []string{"rules.cedar:1:"}},
		{"empty", "", []string{"rules.cedar has no policies", "refuse every call"}},
		{"comments only", "// nothing yet\n", []string{"has no policies", "refuse every call"}},
		{"forbids only", "forbid (principal, action, resource) when { context.tenant == \"x\" };", []string{"has no permit policy", "refuse every call"}},
		{"duplicate id", "@id(\"a\") permit (principal, action, resource);\n@id(\"a\") permit (principal, action, resource);",
			[]string{`rules.cedar:2:1: policy id "a" is already used at rules.cedar:1:1`}},
		{"id taken by a default", "permit (principal, action, resource);\n@id(\"policy0\") permit (principal, action, resource);",
			[]string{`policy id "policy0" is already used`}},
		{"empty id", `@id("") permit (principal, action, resource);`, []string{"@id is empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("rules.cedar", []byte(tt.src))
			if err == nil {
				t.Fatal("parsed, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoad(t *testing.T) {
	p, err := Load("testdata/example.cedar")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := p.Authorize(ctx, call(support(), searchOrders, `{"status":"open"}`)); err != nil {
		t.Errorf("package example: support searching open orders refused: %v", err)
	}
	if err := p.Authorize(ctx, withArgs(call(sales(), summarize, ""), map[string]any{})); err != nil {
		t.Errorf("package example: prompt refused: %v", err)
	}
	if err := p.Authorize(ctx, call(support(), searchOrders, `{"status":"open","tenant_id":"globex"}`)); err == nil {
		t.Error("package example: another tenant's orders allowed")
	}

	if _, err := Load(filepath.Join(t.TempDir(), "missing.cedar")); err == nil || !strings.Contains(err.Error(), "missing.cedar") {
		t.Errorf("missing file: got %v, want an error naming it", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.cedar")
	if err := os.WriteFile(bad, []byte("permit (principal, action, resource);\npermit (\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad); err == nil || !strings.Contains(err.Error(), bad+":") {
		t.Errorf("bad file: got %v, want an error located in %s", err, bad)
	}
}

func TestExplain(t *testing.T) {
	const src = `@id("read") permit (principal, action, resource) when { resource.read_only };
@id("support") permit (principal in Warden::Group::"support", action, resource);
@id("no-sales-writes")
forbid (principal in Warden::Group::"sales", action, resource) when { resource.mode == "write" };
@id("big-amounts") forbid (principal, action, resource == Warden::Tool::"delete_order") when { context.arguments.amount > 1000 };
@id("needs-limit") permit (principal, action, resource) when { context.arguments.limit < 100 };
`
	p, err := Parse("x.cedar", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		call    *pipeline.Call
		allowed bool
		reasons []string
	}{
		{"allowed by two permits", call(support(), searchOrders, `{}`), true, []string{
			`permit "read" at x.cedar:1:1 applies`,
			`permit "support" at x.cedar:2:1 applies`,
			`permit "needs-limit" at x.cedar:6:1 failed, so it does not permit: `,
		}},
		{"forbidden", call(sales(), deleteOrder, `{"amount":5}`), false, []string{
			`forbid "no-sales-writes" at x.cedar:3:1 applies`,
		}},
		{"erroring forbid, permit overridden", call(support(), deleteOrder, `{"limit":5}`), false, []string{
			`forbid "big-amounts" at x.cedar:5:1 failed, and a forbid that fails refuses: `,
			`permit "support" at x.cedar:2:1 applies, but a forbid overrides it`,
			`permit "needs-limit" at x.cedar:6:1 applies, but a forbid overrides it`,
		}},
		{"one permit", call(sales(), searchOrders, `{"limit":500}`), true, []string{`permit "read" at x.cedar:1:1 applies`}},
		{"nothing permits", call(sales(), &pipeline.Spec{Method: pipeline.CallTool, Name: "t", Mode: pipeline.Write}, `{"limit":500}`), false, []string{
			"no permit policy applies, so the call is denied by default",
		}},
		{"bad arguments", call(sales(), searchOrders, `[]`), false, []string{"refused before any policy ran: arguments must be a JSON object"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := p.Explain(context.Background(), tt.call)
			if x.Allowed != tt.allowed {
				t.Errorf("Allowed = %v, want %v; reasons:\n%s", x.Allowed, tt.allowed, strings.Join(x.Reasons, "\n"))
			}
			all := strings.Join(x.Reasons, "\n")
			for _, w := range tt.reasons {
				if !strings.Contains(all, w) {
					t.Errorf("reasons do not contain %q:\n%s", w, all)
				}
			}
			// Explain and Authorize never disagree.
			if err := p.Authorize(context.Background(), tt.call); (err == nil) != x.Allowed {
				t.Errorf("Authorize says %v, Explain says Allowed = %v", err, x.Allowed)
			}
		})
	}
}

func TestNumber(t *testing.T) {
	dec := func(i int64) cedar.Value {
		d, err := cedar.NewDecimal(i, -4)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	tests := []struct {
		in   string
		want cedar.Value
	}{
		{"0", cedar.Long(0)},
		{"-0", cedar.Long(0)},
		{"0.000", cedar.Long(0)},
		{"42", cedar.Long(42)},
		{"-42", cedar.Long(-42)},
		{"2.0", cedar.Long(2)},
		{"1e3", cedar.Long(1000)},
		{"1.5E+2", cedar.Long(150)},
		{"100e-2", cedar.Long(1)},
		{"9223372036854775807", cedar.Long(9223372036854775807)},
		{"-9223372036854775808", cedar.Long(-9223372036854775808)},
		{"9223372036854775808", cedar.String("9223372036854775808")},
		{"1e19", cedar.String("1e19")},
		{"1e400", cedar.String("1e400")},
		{"0.5", dec(5000)},
		{"-0.25", dec(-2500)},
		{"1.5e-3", dec(15)},
		{"922337203685477.5807", dec(9223372036854775807)},
		{"-922337203685477.5808", dec(-9223372036854775808)},
		{"922337203685477.5808", cedar.String("922337203685477.5808")},
		{"0.00001", cedar.String("0.00001")},
		{"3.14159", cedar.String("3.14159")},
		{"1e-400", cedar.String("1e-400")},
	}
	for _, tt := range tests {
		if got := number(tt.in); !got.Equal(tt.want) {
			t.Errorf("number(%s) = %v (%T), want %v (%T)", tt.in, got, got, tt.want, tt.want)
		}
	}
}

// FuzzNumber checks that number never changes a value: a Long or decimal
// equals the number exactly, and anything else is kept as its text.
func FuzzNumber(f *testing.F) {
	for _, s := range []string{"0", "-0.5", "1e3", "1.5E-3", "9223372036854775807", "-9223372036854775809", "922337203685477.5807", "1e-5", "0.00010"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if s == "" || strings.TrimSpace(s) != s || !json.Valid([]byte(s)) || !strings.ContainsAny(s[:1], "-0123456789") {
			return
		}
		if _, e, ok := strings.Cut(strings.ToLower(s), "e"); ok && len(strings.TrimLeft(e, "+-0")) > 3 {
			return // big.Rat is slow with huge exponents
		}
		want, ok := new(big.Rat).SetString(s)
		if !ok {
			t.Fatalf("big.Rat cannot parse %q", s)
		}
		switch v := number(s).(type) {
		case cedar.Long:
			if want.Cmp(big.NewRat(int64(v), 1)) != 0 {
				t.Errorf("number(%s) = Long %d", s, v)
			}
		case cedar.Decimal:
			got, _ := new(big.Rat).SetString(v.String())
			if want.Cmp(got) != 0 {
				t.Errorf("number(%s) = decimal %s", s, v)
			}
		case cedar.String:
			if string(v) != s {
				t.Errorf("number(%s) = String %q", s, v)
			}
		default:
			t.Errorf("number(%s) = %T", s, v)
		}
	})
}

// TestConcurrent shares one policy set between goroutines, as the server
// does; run with -race.
func TestConcurrent(t *testing.T) {
	p, err := Parse("test.cedar", []byte(issueExample))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 100 {
				status := []string{"open", "closed"}[i%2]
				err := p.Authorize(context.Background(), call(support(), searchOrders, `{"status":"`+status+`"}`))
				if (err == nil) != (status == "open") {
					t.Errorf("status %s: %v", status, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkAuthorize(b *testing.B) {
	example, err := Load("testdata/example.cedar")
	if err != nil {
		b.Fatal(err)
	}
	groups, err := Parse("groups.cedar", []byte(`permit (principal in Warden::Group::"support", action, resource);`))
	if err != nil {
		b.Fatal(err)
	}
	const args = `{"status":"open","limit":25,"customer":{"id":"c-42","tier":"gold"}}`
	benchmarks := []struct {
		name  string
		p     *Cedar
		call  *pipeline.Call
		allow bool
	}{
		// The package example: arguments decoded, five policies.
		{"example/allowed", example, call(support(), searchOrders, args), true},
		{"example/denied", example, call(sales(), searchOrders, args), false},
		// No policy reads the context: the arguments are not decoded.
		{"groups-only", groups, call(support(), searchOrders, args), true},
	}
	for _, bm := range benchmarks {
		b.Run(bm.name, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := bm.p.Authorize(ctx, bm.call); (err == nil) != bm.allow {
					b.Fatal(err)
				}
			}
		})
	}
}
