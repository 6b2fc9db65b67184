package main

import (
	"database/sql"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// newTestHandler serves the baseline's get_customer over a fresh database
// holding one customer whose phone is NULL.
func newTestHandler(tb testing.TB) http.Handler {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "crm.db")
	rw, err := sql.Open("sqlite", path)
	if err != nil {
		tb.Fatal(err)
	}
	for _, q := range []string{
		`CREATE TABLE customers (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, name TEXT NOT NULL, email TEXT, phone TEXT, tier TEXT, created_at TEXT)`,
		`INSERT INTO customers VALUES ('C-1001', 'acme', 'Ada Lovelace', 'ada@example.com', NULL, 'platinum', '2023-02-14T09:30:00Z')`,
	} {
		if _, err := rw.Exec(q); err != nil {
			tb.Fatal(err)
		}
	}
	rw.Close()
	db, stmt, err := openReadOnly(path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return newHandler(stmt, false)
}

func callRequest(customerID string) *http.Request {
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_customer","arguments":{"customer_id":"` + customerID + `"},` +
		`"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
	req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1/mcp", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
	req.Header.Set("Mcp-Method", "tools/call")
	req.Header.Set("Mcp-Name", "get_customer")
	return req
}

func TestGetCustomer(t *testing.T) {
	h := newTestHandler(t)
	tests := []struct {
		id   string
		want string // structuredContent
	}{
		{"C-1001", `{"row_count":1,"rows":[{"created_at":"2023-02-14T09:30:00Z","email":"ada@example.com","id":"C-1001","name":"Ada Lovelace","phone":null,"tenant_id":"acme","tier":"platinum"}],"truncated":false}`},
		{"C-9999", `{"row_count":0,"rows":[],"truncated":false}`},
	}
	for _, tt := range tests {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, callRequest(tt.id))
		if w.Code != http.StatusOK {
			t.Fatalf("%s: status %d: %s", tt.id, w.Code, w.Body)
		}
		_, data, ok := strings.Cut(w.Body.String(), "data: ")
		if !ok {
			t.Fatalf("%s: no SSE data in %q", tt.id, w.Body)
		}
		var resp struct {
			Result struct {
				IsError           bool            `json:"isError"`
				StructuredContent json.RawMessage `json:"structuredContent"`
			} `json:"result"`
		}
		if err := json.Unmarshal([]byte(strings.TrimSpace(data)), &resp); err != nil {
			t.Fatalf("%s: %v in %q", tt.id, err, data)
		}
		var got, want any
		if err := json.Unmarshal(resp.Result.StructuredContent, &got); err != nil {
			t.Fatalf("%s: structuredContent: %v", tt.id, err)
		}
		json.Unmarshal([]byte(tt.want), &want)
		if resp.Result.IsError || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: isError=%v structuredContent %s, want %s", tt.id, resp.Result.IsError, resp.Result.StructuredContent, tt.want)
		}
	}
}

// BenchmarkGetCustomer measures one stateless tools/call through the SDK's
// handler in process, without the network: the floor under the load
// generator's numbers, and where allocations per call show.
func BenchmarkGetCustomer(b *testing.B) {
	h := newTestHandler(b)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, callRequest("C-1001"))
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}
