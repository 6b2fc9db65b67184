package console_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/wardenmcp/warden/internal/approval"
	"github.com/wardenmcp/warden/internal/audit"
)

func TestApprovalQueue(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	pending := f.request("alice", 2, "finance")
	denied := f.request("alice", 1, "finance")
	if _, err := f.approvals.Decide(ctx, denied.ID, approval.Decision{Approver: "bob", Reason: "no"}, []string{"finance"}); err != nil {
		t.Fatal(err)
	}
	bare := &approval.Request{
		ID: approval.NewID(), Principal: "alice", Tenant: "acme", Tool: "close_account", ArgsHash: "h2",
		Groups: []string{"ops"}, ExpiresAt: time.Now().Add(time.Hour),
	}
	if err := f.approvals.Create(ctx, bare); err != nil {
		t.Fatal(err)
	}
	b := f.signedIn("ops-admin", consoleOnly, "finance")

	r := b.get("/console/approvals")
	for _, want := range []string{
		`<table id="approvals">`,
		`<tr data-approval-id="` + pending.ID + `">`,
		`<a href="/console/approvals/` + pending.ID + `">` + pending.ID + `</a>`,
		`<td>alice (acme)</td>`, `<td>high</td>`, `<td>0/2</td>`,
		`refund O-5004 &lt;in full&gt;`,
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("the queue lacks %s", want)
		}
	}
	if strings.Contains(r.body, denied.ID) {
		t.Error("the pending queue lists a denied request")
	}
	for _, tt := range []struct {
		query        string
		status       int
		want, unwant string
	}{
		{"?state=denied", http.StatusOK, denied.ID, pending.ID},
		{"?state=all", http.StatusOK, denied.ID, "No requests."},
		{"?state=used", http.StatusOK, "No used requests.", pending.ID},
		{"?state=bogus", http.StatusBadRequest, `There is no state &#34;bogus&#34;`, pending.ID},
	} {
		r := b.get("/console/approvals" + tt.query)
		if r.status != tt.status || !strings.Contains(r.body, tt.want) || strings.Contains(r.body, tt.unwant) {
			t.Errorf("GET /console/approvals%s: HTTP %d, want %d with %q and without %q", tt.query, r.status, tt.status, tt.want, tt.unwant)
		}
	}

	r = b.get("/console/approvals/" + pending.ID)
	for id, want := range map[string]string{
		"approval-state":   "pending",
		"approval-tier":    "high",
		"approval-args":    "{\n  \"order_id\": \"O-5004\",\n  \"amount_cents\": 23450\n}",
		"approval-effect":  "The call would affect 1 row; nothing was changed by the dry run.",
		"approval-summary": "refund O-5004 <in full>",
	} {
		if got := r.text(id); got != want {
			t.Errorf("#%s = %q, want %q", id, got, want)
		}
	}
	for _, want := range []string{
		"<code>risk_policies.high</code>", "finance: 2 approvals needed, 0 so far",
		`<label for="reason">Reason</label>`, `<textarea id="reason" name="reason"`,
		`<button type="submit" name="decision" value="approve">Approve</button>`,
		`<button type="submit" name="decision" value="deny" class="deny">Deny</button>`,
		// The dry run's touched row, with the changed column marked.
		`<caption>update in <code>orders</code></caption>`,
		`<tr class="changed"><th scope="row"><code>status</code></th><td><code>&#34;paid&#34;</code></td><td><code>&#34;refunded&#34;</code></td></tr>`,
		`<tr><th scope="row"><code>id</code></th>`,
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("the request's page lacks %s", want)
		}
	}
	if got := b.get("/console/approvals/" + bare.ID).text("approval-dry-run"); got != "There is no dry-run result for this call." {
		t.Errorf("without a dry run, #approval-dry-run = %q", got)
	}
	r = b.get("/console/approvals/" + denied.ID)
	if r.text("approval-state") != "denied" || strings.Contains(r.body, `value="approve"`) || !strings.Contains(r.body, "<td>bob</td><td>deny</td><td>no</td>") {
		t.Errorf("a denied request shows state %q, its decision, and no form:\n%s", r.text("approval-state"), r.body)
	}
}

func TestDecide(t *testing.T) {
	tests := []struct {
		name      string
		requester string
		needed    int
		expired   bool
		// before is a decision already made, by bob.
		before   *approval.Decision
		as       string
		groups   []string
		form     url.Values
		status   int
		message  string // the alert, or the status after the redirect
		state    string
		audited  string // the audit record's method, if one is written
		refusals int    // refusals audited
	}{
		{
			name: "a finance member approves", requester: "alice", needed: 1, as: "bob", groups: []string{"finance"},
			form:   url.Values{"decision": {"approve"}, "reason": {"verified"}},
			status: http.StatusSeeOther, message: "Approved.", state: approval.Approved, audited: "approvals/approve",
		},
		{
			name: "the first of two approvals", requester: "alice", needed: 2, as: "bob", groups: []string{"finance"},
			form:   url.Values{"decision": {"approve"}},
			status: http.StatusSeeOther, message: "Recorded: 1 of 2 approvals.", state: approval.Pending, audited: "approvals/approve",
		},
		{
			name: "a denial with a reason", requester: "alice", needed: 1, as: "bob", groups: []string{"finance"},
			form:   url.Values{"decision": {"deny"}, "reason": {"not eligible"}},
			status: http.StatusSeeOther, message: "Denied.", state: approval.Denied, audited: "approvals/deny",
		},
		{
			name: "the requester approves their own request", requester: "alice", needed: 1, as: "alice", groups: []string{"finance"},
			form:   url.Values{"decision": {"approve"}},
			status: http.StatusForbidden, message: "You made this request, so you cannot decide on it", state: approval.Pending, refusals: 1,
		},
		{
			name: "someone outside the approver group", requester: "alice", needed: 1, as: "carol", groups: []string{"sales"},
			form:   url.Values{"decision": {"approve"}},
			status: http.StatusForbidden, message: "you are not in its approver group (finance)", state: approval.Pending, refusals: 1,
		},
		{
			name: "a denial without a reason", requester: "alice", needed: 1, as: "bob", groups: []string{"finance"},
			form:   url.Values{"decision": {"deny"}, "reason": {"  "}},
			status: http.StatusBadRequest, message: "To deny a request, give a reason", state: approval.Pending,
		},
		{
			name: "neither approve nor deny", requester: "alice", needed: 1, as: "bob", groups: []string{"finance"},
			form:   url.Values{"decision": {"maybe"}},
			status: http.StatusBadRequest, message: "Choose Approve or Deny.", state: approval.Pending,
		},
		{
			name: "a second decision by the same approver", requester: "alice", needed: 2, as: "bob", groups: []string{"finance"},
			before: &approval.Decision{Approver: "bob", Approve: true},
			form:   url.Values{"decision": {"approve"}},
			status: http.StatusConflict, message: "You have already decided on this request", state: approval.Pending,
		},
		{
			name: "a request already denied", requester: "alice", needed: 1, as: "dave", groups: []string{"finance"},
			before: &approval.Decision{Approver: "bob", Reason: "no"},
			form:   url.Values{"decision": {"approve"}},
			status: http.StatusConflict, message: "This request is no longer pending", state: approval.Denied,
		},
		{
			name: "an expired request", requester: "alice", needed: 1, expired: true, as: "bob", groups: []string{"finance"},
			form:   url.Values{"decision": {"approve"}},
			status: http.StatusConflict, message: "This request has expired", state: approval.Expired,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			req := f.request(tt.requester, tt.needed, "finance")
			if tt.expired {
				req = &approval.Request{ID: approval.NewID(), Principal: tt.requester, Tenant: "acme", Tool: "request_refund", ArgsHash: "h",
					Groups: []string{"finance"}, ExpiresAt: time.Now().Add(-time.Second)}
				if err := f.approvals.Create(ctx, req); err != nil {
					t.Fatal(err)
				}
			}
			if tt.before != nil {
				if _, err := f.approvals.Decide(ctx, req.ID, *tt.before, []string{"finance"}); err != nil {
					t.Fatal(err)
				}
			}
			b := f.signedIn(tt.as, consoleOnly, tt.groups...)
			path := "/console/approvals/" + req.ID
			r := b.submit(path, path, tt.form)
			if r.status != tt.status {
				t.Fatalf("HTTP %d, want %d: %s", r.status, tt.status, r.alert())
			}
			if tt.status == http.StatusSeeOther {
				if r.location() != path {
					t.Errorf("redirected to %q, want %q", r.location(), path)
				}
				r = b.get(path)
				if got := r.role("status"); len(got) != 1 || got[0] != tt.message {
					t.Errorf("status %q, want %q", got, tt.message)
				}
				if again := b.get(path).role("status"); len(again) != 0 {
					t.Errorf("the status message shows twice: %q", again)
				}
			} else if !strings.Contains(r.alert(), tt.message) {
				t.Errorf("alert %q, want one containing %q", r.alert(), tt.message)
			}
			if st := f.state(req.ID); st != tt.state || r.text("approval-state") != tt.state {
				t.Errorf("state %s, shown as %q; want %s", st, r.text("approval-state"), tt.state)
			}

			var decisions, refusals []*audit.Record
			for _, rec := range f.records(audit.Query{Target: "request_refund"}) {
				switch {
				case rec.Phase == audit.Refusal:
					refusals = append(refusals, rec)
				case strings.HasPrefix(rec.Method, "approvals/"):
					decisions = append(decisions, rec)
				}
			}
			if tt.audited == "" {
				if len(decisions) != 0 {
					t.Errorf("audited %+v, want no decision", decisions[0])
				}
			} else if len(decisions) != 1 || decisions[0].Method != tt.audited || decisions[0].Principal != tt.as ||
				decisions[0].AuthMethod != "console" || decisions[0].Approval != tt.state ||
				!strings.Contains(decisions[0].Reason, req.ID) || !strings.Contains(decisions[0].Reason, tt.form.Get("reason")) {
				t.Errorf("audited %+v, want one %s by %s, now %s", decisions, tt.audited, tt.as, tt.state)
			}
			if len(refusals) != tt.refusals {
				t.Errorf("%d refusals audited, want %d", len(refusals), tt.refusals)
			}
		})
	}
}

func TestDecisionNotAudited(t *testing.T) {
	f := newFixture(t)
	req := f.request("alice", 1, "finance")
	b := f.signedIn("bob", consoleOnly, "finance")
	path := "/console/approvals/" + req.ID
	csrf := b.csrf(path)
	f.failRecord.Store(true)
	r := b.do(http.MethodPost, path, url.Values{"csrf": {csrf}, "decision": {"approve"}}, nil)
	if r.status != http.StatusInternalServerError || !strings.Contains(r.alert(), "Your decision was made (the request is now approved), but it could not be recorded in the audit log") {
		t.Errorf("HTTP %d, alert %q; want 500 saying the decision was made but not audited", r.status, r.alert())
	}
	if st := f.state(req.ID); st != approval.Approved || r.text("approval-state") != approval.Approved {
		t.Errorf("state %s, shown as %q; want approved", st, r.text("approval-state"))
	}
}

func TestApprovalArgumentsAreEscaped(t *testing.T) {
	f := newFixture(t)
	req := &approval.Request{
		ID: approval.NewID(), Principal: "alice", Tool: "send_email", ArgsHash: "h",
		Args: json.RawMessage(`{"body":"</pre><script>alert(1)</script>"}`), Summary: `<img src=x onerror=alert(1)>`,
		Groups: []string{"ops"}, ExpiresAt: time.Now().Add(time.Hour),
	}
	if err := f.approvals.Create(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	b := f.signedIn("ops-admin", consoleOnly)
	for _, path := range []string{"/console/approvals", "/console/approvals/" + req.ID} {
		if r := b.get(path); strings.Contains(r.body, "<script>") || strings.Contains(r.body, "<img src=x") {
			t.Errorf("GET %s renders markup from a request:\n%s", path, r.body)
		}
	}
}

// A tenant's approver neither sees nor decides on another tenant's
// requests, though its groups have the same names.
func TestOtherTenantsRequestsAreHidden(t *testing.T) {
	f := newFixture(t)
	req := f.request("alice", 1, "finance") // acme's
	b := f.browser()
	if r := b.signIn(f.keyIn("globex", "globex-finance", consoleOnly, "finance")); r.status != http.StatusSeeOther {
		t.Fatalf("signing in: HTTP %d: %s", r.status, r.alert())
	}
	if r := b.get("/console/approvals"); strings.Contains(r.body, req.ID) {
		t.Error("globex's approver sees acme's request in the queue")
	}
	path := "/console/approvals/" + req.ID
	if r := b.get(path); r.status != http.StatusNotFound || strings.Contains(r.body, "O-5004") {
		t.Errorf("globex's approver opened acme's request: HTTP %d", r.status)
	}
	b.submit("/console/approvals", path, url.Values{"decision": {"approve"}, "reason": {"ok"}})
	if got := f.state(req.ID); got != approval.Pending {
		t.Fatalf("acme's request is %s after globex's approver tried to approve it, want pending", got)
	}
}
