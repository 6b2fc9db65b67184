package console_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/internal/console"

	_ "modernc.org/sqlite" // to tamper with the state file
)

// write appends recs to the audit log, setting their chain fields.
func (f *fixture) write(recs ...*audit.Record) {
	f.t.Helper()
	for _, r := range recs {
		if err := f.writer.Write(context.Background(), r); err != nil {
			f.t.Fatal(err)
		}
	}
}

var rowSeq = regexp.MustCompile(`<tr data-instance="console-test" data-seq="([0-9]+)">`)

// seqs lists the seqs of the audit page's rows, in order.
func (r response) seqs() []int64 {
	var out []int64
	for _, m := range rowSeq.FindAllStringSubmatch(r.body, -1) {
		n, _ := strconv.ParseInt(m[1], 10, 64)
		out = append(out, n)
	}
	return out
}

func TestAuditLog(t *testing.T) {
	f := newFixture(t)
	b := f.signedInTenant("", "ops-admin", consoleOnly) // seq 1: the sign-in
	now := f.clock.Now()
	allowed := &audit.Record{Phase: audit.Outcome, Time: now.Add(-time.Hour), Principal: "alice", Tenant: "acme", Method: "tools/call",
		Target: "get_order", Decision: audit.Allow, Status: audit.StatusOK}
	refused := &audit.Record{Phase: audit.Refusal, Time: now.Add(-30 * time.Minute), Principal: "bob", Tenant: "globex", Method: "tools/call",
		Target: "request_refund", Decision: audit.Deny, Status: audit.StatusRefused, ErrorCode: "APPROVAL_REQUIRED", Args: []byte(`{"order_id":"O-1"}`)}
	old := &audit.Record{Phase: audit.Outcome, Time: now.Add(-48 * time.Hour), Principal: "alice", Tenant: "acme", Method: "tools/call",
		Target: "request_refund", Decision: audit.Allow, Status: audit.StatusOK}
	f.write(allowed, refused, old)
	signin := int64(1)

	tests := []struct {
		query  string
		status int
		want   []int64 // newest first
		alert  string
	}{
		{"", http.StatusOK, []int64{signin, refused.Seq, allowed.Seq, old.Seq}, ""},
		{"?principal=alice", http.StatusOK, []int64{allowed.Seq, old.Seq}, ""},
		{"?tenant=globex", http.StatusOK, []int64{refused.Seq}, ""},
		{"?target=request_refund", http.StatusOK, []int64{refused.Seq, old.Seq}, ""},
		{"?decision=deny", http.StatusOK, []int64{refused.Seq}, ""},
		{"?error_code=APPROVAL_REQUIRED", http.StatusOK, []int64{refused.Seq}, ""},
		{"?principal=alice&since=1d", http.StatusOK, []int64{allowed.Seq}, ""},
		{"?until=" + url.QueryEscape(old.Time.Add(time.Hour).Format(time.RFC3339)), http.StatusOK, []int64{old.Seq}, ""},
		{"?since=" + old.Time.Format("2006-01-02T15:04") + "&until=" + allowed.Time.Format("2006-01-02T15:04:05"), http.StatusOK, []int64{old.Seq}, ""},
		{"?principal=nobody", http.StatusOK, nil, ""},
		{"?decision=maybe", http.StatusBadRequest, nil, `Decision: "maybe" is neither allow nor deny.`},
		{"?since=yesterday", http.StatusBadRequest, nil, `Since: "yesterday" is not a time`},
		{"?before=garbage", http.StatusBadRequest, nil, "This page's link is not valid"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			r := b.get("/console/audit" + tt.query)
			if r.status != tt.status || !slices.Equal(r.seqs(), tt.want) || !strings.Contains(r.alert(), tt.alert) {
				t.Errorf("HTTP %d, seqs %v, alert %q; want %d, %v, %q", r.status, r.seqs(), r.alert(), tt.status, tt.want, tt.alert)
			}
			if tt.status == http.StatusOK && tt.want == nil && !strings.Contains(r.body, "No audit records match.") {
				t.Error("an empty result does not say so")
			}
		})
	}

	r := b.get("/console/audit?tenant=globex")
	link := regexp.MustCompile(`href="(/console/audit/console-test/[0-9]+\?at=[^"]+)"`).FindStringSubmatch(r.body)
	if link == nil {
		t.Fatalf("no link to the record's details:\n%s", r.body)
	}
	plain := fmt.Sprintf("/console/audit/console-test/%d", refused.Seq)
	for _, path := range []string{strings.ReplaceAll(link[1], "&amp;", "&"), plain} {
		d := b.get(path)
		js := d.text("audit-record")
		for _, want := range []string{`"principal": "bob"`, `"error_code": "APPROVAL_REQUIRED"`, `"order_id": "O-1"`, `"hash": "` + refused.Hash + `"`} {
			if !strings.Contains(js, want) {
				t.Errorf("GET %s: HTTP %d, #audit-record lacks %s:\n%s", path, d.status, want, js)
			}
		}
	}
	for _, path := range []string{"/console/audit/console-test/99", "/console/audit/console-test/x", "/console/audit/elsewhere/1"} {
		if d := b.get(path); d.status != http.StatusNotFound {
			t.Errorf("GET %s: HTTP %d, want 404", path, d.status)
		}
	}
}

func TestAuditPages(t *testing.T) {
	f := newFixture(t)
	b := f.signedInTenant("", "ops-admin", consoleOnly)
	// 60 records four to a microsecond, then 210 of one microsecond: pages
	// end among records of the same time, and a whole page has one time.
	base := f.clock.Now().Add(-time.Hour)
	for i := range 270 {
		at := base.Add(time.Duration(min(i, 60)/4) * time.Microsecond)
		f.write(&audit.Record{Phase: audit.Outcome, Time: at, Principal: "agent", Method: "tools/call", Target: "echo"})
	}
	seen := map[int64]bool{}
	path := "/console/audit?principal=agent"
	var sizes []int
	for path != "" && len(sizes) < 5 {
		r := b.get(path)
		if r.status != http.StatusOK {
			t.Fatalf("GET %s: HTTP %d (%s)", path, r.status, r.alert())
		}
		for _, s := range r.seqs() {
			if seen[s] {
				t.Errorf("seq %d shown twice", s)
			}
			seen[s] = true
		}
		sizes = append(sizes, len(r.seqs()))
		path = ""
		if m := regexp.MustCompile(`href="([^"]+)" rel="next"`).FindStringSubmatch(r.body); m != nil {
			path = strings.ReplaceAll(m[1], "&amp;", "&")
		}
	}
	if !slices.Equal(sizes, []int{100, 100, 70}) || len(seen) != 270 {
		t.Errorf("pages of %v rows, %d records in all; want 100, 100 and 70, all 270", sizes, len(seen))
	}
}

func TestAuditChainStatus(t *testing.T) {
	f := newFixture(t)
	b := f.signedIn("ops-admin", consoleOnly)
	for i := range 4 {
		f.write(&audit.Record{Phase: audit.Outcome, Principal: "agent", Method: "tools/call", Target: fmt.Sprint("tool-", i)})
	}
	if got := b.get("/console/audit").text("chain-status"); !strings.HasPrefix(got, "Not verified yet") {
		t.Errorf("before it is asked for, #chain-status = %q", got)
	}
	if got := b.get("/console/audit?verify=1").text("chain-status"); got != "Intact: 5 records verified, in 1 chain." {
		t.Errorf("an untouched log: #chain-status = %q", got)
	}

	db, err := sql.Open("sqlite", f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE warden_audit SET principal = 'mallory' WHERE instance = 'console-test' AND seq = 3`); err != nil {
		t.Fatal(err)
	}
	want := "Broken: chain console-test at seq 3: seq 3 was modified"
	if got := b.get("/console/audit?verify=1").text("chain-status"); !strings.HasPrefix(got, want) {
		t.Errorf("a tampered log: #chain-status = %q, want %q…", got, want)
	}

	nosecret := newFixture(t, func(o *console.Options) { o.AuditSecret = nil })
	got := nosecret.signedIn("ops-admin", consoleOnly).get("/console/audit?verify=1").text("chain-status")
	if !strings.Contains(got, "no audit secret") {
		t.Errorf("without a secret, #chain-status = %q", got)
	}
}

// A tenant's principal reads its own tenant's records only, whatever it
// asks for.
func TestAuditLogKeepsToTheTenant(t *testing.T) {
	f := newFixture(t)
	b := f.signedIn("acme-auditor", consoleOnly) // seq 1: the sign-in, of tenant acme
	now := f.clock.Now()
	mine := &audit.Record{Phase: audit.Outcome, Time: now.Add(-time.Hour), Principal: "alice", Tenant: "acme", Method: "tools/call", Target: "get_order"}
	theirs := &audit.Record{Phase: audit.Outcome, Time: now.Add(-time.Hour), Principal: "bob", Tenant: "globex", Method: "tools/call", Target: "get_order"}
	f.write(mine, theirs)
	if got := b.get("/console/audit").seqs(); slices.Contains(got, theirs.Seq) || !slices.Contains(got, mine.Seq) {
		t.Errorf("acme's principal sees seqs %v; want %d and not globex's %d", got, mine.Seq, theirs.Seq)
	}
	if r := b.get("/console/audit?tenant=globex"); r.status != http.StatusBadRequest || slices.Contains(r.seqs(), theirs.Seq) {
		t.Errorf("asking for globex's records: HTTP %d, seqs %v; want 400 and none", r.status, r.seqs())
	}
	if r := b.get(fmt.Sprintf("/console/audit/console-test/%d", theirs.Seq)); r.status != http.StatusNotFound {
		t.Errorf("globex's record: HTTP %d, want 404", r.status)
	}
}
