package server

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden/internal/anomaly"
	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/internal/config"
)

const ticketConfig = `
server:
  name: test
sources:
  db:
    kind: sqlite
    path: test.db
tools:
  create_ticket:
    description: File a ticket.
    scope: tickets.write
    mode: write
    source: db
    statement: INSERT INTO tickets (tenant, subject) VALUES (:tenant, :subject)
    parameters:
      subject: {type: string, description: What it is about., required: true}
      tenant: {type: string, description: The caller's tenant., bind: tenant}
`

func ticketFixture(t *testing.T) (*config.Config, func() int) {
	t.Helper()
	cfg := fixture(t, ticketConfig)
	db, err := sql.Open("sqlite", filepath.Join(cfg.Dir, "test.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(`CREATE TABLE tickets (id INTEGER PRIMARY KEY, tenant TEXT, subject TEXT)`); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM tickets`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	return cfg, count
}

func auditRecords(t *testing.T, srv *Server) []*audit.Record {
	t.Helper()
	store, _ := srv.Audit()
	var recs []*audit.Record
	if err := store.Scan(context.Background(), audit.Query{}, func(r *audit.Record) error { recs = append(recs, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return recs
}

func TestEveryCallIsAudited(t *testing.T) {
	cfg, count := ticketFixture(t)
	ctx := context.Background()
	srv, err := Build(ctx, cfg, &Options{Local: principal("agent", "acme", "tickets.write")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	cs := session(t, srv)
	if _, err := cs.ListTools(ctx, nil); err != nil {
		t.Fatal(err)
	}

	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "create_ticket", Arguments: map[string]any{"subject": "printer on fire, key AKIAIOSFODNN7EXAMPLE"}})
	if err != nil || res.IsError {
		t.Fatalf("create_ticket: %v %+v", err, res)
	}
	res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "create_ticket", Arguments: map[string]any{"subject": 42}})
	if err != nil || !res.IsError {
		t.Fatalf("a bad call was not refused: %v %+v", err, res)
	}
	if count() != 1 {
		t.Fatalf("tickets = %d, want 1", count())
	}

	recs := auditRecords(t, srv)
	if len(recs) == 0 || recs[0].Method != "tools/list" || recs[0].Rows != 1 || recs[0].Principal != "agent" {
		t.Fatalf("the list is not recorded first: %+v", recs)
	}
	recs = recs[1:]
	var phases []string
	for _, r := range recs {
		phases = append(phases, string(r.Phase)+"/"+string(r.Decision)+"/"+r.Status+"/"+r.ErrorCode)
		if r.Principal != "agent" || r.Tenant != "acme" || r.Target != "create_ticket" || r.Method != "tools/call" || r.TraceID == "" || r.ArgsHash == "" {
			t.Errorf("record lacks who/what: %+v", r)
		}
	}
	want := []string{"intent/allow//", "outcome/allow/ok/", "refusal/deny/refused/INVALID_ARGUMENT"}
	if strings.Join(phases, " ") != strings.Join(want, " ") {
		t.Errorf("records = %v, want %v", phases, want)
	}
	if recs[0].TraceID != recs[1].TraceID {
		t.Error("intent and outcome do not share a trace id")
	}
	store, secret := srv.Audit()
	rep, err := audit.Verify(ctx, store, secret)
	if err != nil || !rep.OK {
		t.Errorf("the chain does not verify: %+v %v", rep, err)
	}
}

// With the audit store unable to persist, a call is refused and the tool
// provably does not run.
func TestAuditFailsClosed(t *testing.T) {
	cfg, count := ticketFixture(t)
	ctx := context.Background()
	srv, err := Build(ctx, cfg, &Options{Local: principal("agent", "acme", "tickets.write")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	cs := session(t, srv)

	store, _ := srv.Audit()
	store.Close() // the store goes away underneath the server

	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "create_ticket", Arguments: map[string]any{"subject": "must not be filed"}})
	if err != nil {
		t.Fatal(err)
	}
	if code := errorCode(t, res); code != "AUDIT_UNAVAILABLE" {
		t.Errorf("error_code = %s, want AUDIT_UNAVAILABLE", code)
	}
	if n := count(); n != 0 {
		t.Errorf("the tool ran without an audit record: %d tickets", n)
	}
}

// session connects an in-memory client to srv.
func session(t *testing.T, srv *Server) *mcp.ClientSession {
	t.Helper()
	ctx := context.Background()
	st, ct := mcp.NewInMemoryTransports()
	if _, err := srv.MCP().Connect(ctx, st, nil); err != nil {
		t.Fatal(err)
	}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// A burst of refusals trips the anomaly rule: the principal is suspended
// until an operator lifts it, and every step is in the audit log.
func TestBurstOfRefusalsSuspends(t *testing.T) {
	cfg, _ := ticketFixture(t)
	cfg.Anomalies = config.Anomalies{MaxRefusalsPerMinute: 3, Suspend: true}
	ctx := context.Background()
	srv, err := Build(ctx, cfg, &Options{Local: principal("agent", "acme", "tickets.write")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	cs := session(t, srv)
	call := func(subject any) *mcp.CallToolResult {
		t.Helper()
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "create_ticket", Arguments: map[string]any{"subject": subject}})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	for range 4 {
		if code := errorCode(t, call(42)); code != "INVALID_ARGUMENT" {
			t.Fatalf("a bad call: %s", code)
		}
	}
	res := call("a good call, after the burst")
	if code := errorCode(t, res); code != "PERMISSION_DENIED" {
		t.Fatalf("after a burst of refusals: %s, want PERMISSION_DENIED (suspended)", code)
	}
	var e struct {
		Message string `json:"message"`
	}
	remarshal(t, res.StructuredContent, &e)
	if !strings.Contains(e.Message, "suspended") {
		t.Errorf("refusal does not say the principal is suspended: %q", e.Message)
	}

	store, err := anomaly.OpenStore(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	// The suspension bites at once in memory and reaches the store in the
	// background; an operator lifts it from the store.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if ok, _, err := store.Suspended(ctx, "agent"); err == nil && ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the suspension never reached the store")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := store.Lift(ctx, "agent"); err != nil {
		t.Fatalf("lifting: %v", err)
	}
	if res := call("after the lift"); res.IsError {
		t.Errorf("after the lift the call is still refused: %+v", res.StructuredContent)
	}
}
