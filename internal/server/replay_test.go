package server

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/internal/cache"
	"github.com/wardenmcp/warden/internal/idempotency"
	"github.com/wardenmcp/warden/pipeline"
)

func TestIdempotentWriteRunsOnce(t *testing.T) {
	cfg, count := ticketFixture(t)
	ctx := context.Background()
	srv, err := Build(ctx, cfg, &Options{Local: principal("agent", "acme", "tickets.write")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	cs := session(t, srv)
	call := func(subject, key string) *mcp.CallToolResult {
		t.Helper()
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{
			Name: "create_ticket", Arguments: map[string]any{"subject": subject},
			Meta: mcp.Meta{idempotency.MetaKey: key},
		})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	first := call("refund O-5001", "k-1")
	second := call("refund O-5001", "k-1")
	if first.IsError || second.IsError {
		t.Fatalf("calls failed: %+v %+v", first.StructuredContent, second.StructuredContent)
	}
	if n := count(); n != 1 {
		t.Errorf("the write ran %d times for one idempotency key", n)
	}
	if second.Meta[idempotency.ReplayMetaKey] != true {
		t.Errorf("the repeat is not marked as a replay: %+v", second.Meta)
	}
	if code := errorCode(t, call("something else", "k-1")); code != "INVALID_ARGUMENT" {
		t.Errorf("the same key with other arguments: %s", code)
	}
	var replays int
	for _, r := range auditRecords(t, srv) {
		if r.IdempotentReplay {
			replays++
		}
	}
	if replays != 1 {
		t.Errorf("audit records a replay %d times, want 1", replays)
	}
}

const cachedConfig = `
server:
  name: test
sources:
  db:
    kind: sqlite
    path: test.db
tools:
  list_accounts:
    description: List the caller's accounts.
    scope: accounts.read
    source: db
    cache_ttl: 1m
    statement: SELECT id, owner FROM accounts WHERE tenant = :tenant ORDER BY id
    parameters:
      tenant: {type: string, description: The caller's tenant., bind: tenant}
`

func TestCacheNeverCrossesTenants(t *testing.T) {
	cfg := fixture(t, cachedConfig)
	db, err := sql.Open("sqlite", filepath.Join(cfg.Dir, "test.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE accounts (id INTEGER PRIMARY KEY, tenant TEXT, owner TEXT);
		INSERT INTO accounts VALUES (1, 'acme', 'ada'), (2, 'globex', 'hank')`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	ctx := context.Background()
	tenant := "acme"
	srv, err := Build(ctx, cfg, &Options{Local: func(context.Context) (*pipeline.Principal, error) {
		return &pipeline.Principal{ID: "agent-" + tenant, Tenant: tenant, Scopes: []string{"accounts.read"}}, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	cs := session(t, srv)
	list := func() *mcp.CallToolResult {
		t.Helper()
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "list_accounts", Arguments: map[string]any{}})
		if err != nil || res.IsError {
			t.Fatalf("list_accounts: %v %+v", err, res)
		}
		return res
	}
	list()
	hit := list()
	if hit.Meta[cache.ResultMetaKey] != "hit" {
		t.Errorf("the second call is not a cache hit: %+v", hit.Meta)
	}
	tenant = "globex"
	other := list()
	if other.Meta[cache.ResultMetaKey] == "hit" || lineOf(other.StructuredContent) == lineOf(hit.StructuredContent) {
		t.Errorf("globex was served acme's cached rows: %s", lineOf(other.StructuredContent))
	}
	// Each call, a read, leaves one record, its outcome, cache hit or not.
	var hits, outcomes, others int
	for _, r := range auditRecords(t, srv) {
		if r.Target != "list_accounts" {
			continue
		}
		if r.Phase != audit.Outcome {
			others++
			continue
		}
		outcomes++
		if r.CacheHit {
			hits++
		}
	}
	if hits != 1 || outcomes != 3 || others != 0 {
		t.Errorf("audit records %d outcomes, %d of them cache hits, and %d other records; want 3, 1 and 0", outcomes, hits, others)
	}
}
