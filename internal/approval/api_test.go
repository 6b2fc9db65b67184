package approval

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wardenmcp/warden/pipeline"
)

// apiEnv serves the approvals API to whichever principal the test names in
// the X-Test-Principal header (authentication is the server's, and tested
// there).
type apiEnv struct {
	store    Store
	url      string
	recorded []string
}

var apiPrincipals = map[string]*pipeline.Principal{
	"alice": {ID: "alice", Tenant: "acme", Groups: []string{"support"}, AuthMethod: "api_key"},
	"bob":   {ID: "bob", Tenant: "acme", Groups: []string{"finance"}, AuthMethod: "api_key"},
	"sam":   {ID: "sam", Tenant: "acme", Groups: []string{"sales"}, AuthMethod: "jwt"},
	"gina":  {ID: "gina", Tenant: "globex", Groups: []string{"finance"}, AuthMethod: "api_key"},
	"ops":   {ID: "ops", Groups: []string{"finance"}, AuthMethod: "mtls"}, // bound to no tenant: approves for all
}

func newAPIEnv(t *testing.T, store Store) *apiEnv {
	t.Helper()
	e := &apiEnv{store: store}
	api := &API{Store: store, Record: func(_ context.Context, r *Request, p *pipeline.Principal, verb, reason string) error {
		e.recorded = append(e.recorded, DecisionRecord(r, p.ID, p.AuthMethod, verb, reason).Reason)
		return nil
	}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		api.ServeHTTP(w, r, apiPrincipals[r.Header.Get("X-Test-Principal")])
	}))
	t.Cleanup(srv.Close)
	e.url = srv.URL + APIPrefix
	return e
}

func (e *apiEnv) do(t *testing.T, who, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, e.url+path, strings.NewReader(body))
	req.Header.Set("X-Test-Principal", who)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func (e *apiEnv) pending(t *testing.T) string {
	t.Helper()
	r := &Request{ID: NewID(), Principal: "alice", Tenant: "acme", Tool: "request_refund", ArgsHash: "h",
		Summary: "refund O-5004", Groups: []string{"finance"}, ExpiresAt: time.Now().Add(time.Hour)}
	if err := e.store.Create(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	return r.ID
}

func TestAPIDecisions(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() Store) {
		e := newAPIEnv(t, open())
		id := e.pending(t)

		status, out := e.do(t, "bob", "GET", "", "")
		if list, _ := out["approvals"].([]any); status != 200 || len(list) != 1 {
			t.Fatalf("list: %d %v", status, out)
		}
		if status, out := e.do(t, "bob", "GET", id, ""); status != 200 || out["summary"] != "refund O-5004" {
			t.Fatalf("get: %d %v", status, out)
		}
		if status, out := e.do(t, "gina", "GET", "", ""); status != 200 || len(out["approvals"].([]any)) != 0 {
			t.Fatalf("another tenant's approver lists: %d %v, want nothing", status, out)
		}
		refusals := []struct {
			name, who, path, body string
			status                int
			code                  pipeline.Code
		}{
			{"self-approval", "alice", id + "/approve", `{}`, 403, pipeline.PermissionDenied},
			{"not an approver", "sam", id + "/approve", `{}`, 403, pipeline.PermissionDenied},
			{"deny without a reason", "bob", id + "/deny", `{}`, 400, pipeline.InvalidArgument},
			{"unknown field", "bob", id + "/approve", `{"approver": "alice"}`, 400, pipeline.InvalidArgument},
			{"unknown request", "bob", "apr_guessed/approve", `{}`, 404, pipeline.NotFound},
			{"another tenant's approver reads it", "gina", id, "", 404, pipeline.NotFound},
			{"another tenant's approver approves it", "gina", id + "/approve", `{}`, 404, pipeline.NotFound},
			{"bad state filter", "bob", "?state=everything", "", 400, pipeline.InvalidArgument},
		}
		for _, r := range refusals {
			method := "POST"
			if r.body == "" {
				method = "GET"
			}
			status, out := e.do(t, r.who, method, r.path, r.body)
			if status != r.status || out["error_code"] != string(r.code) {
				t.Errorf("%s: %d %v, want %d %s", r.name, status, out, r.status, r.code)
			}
		}
		if got, _ := e.store.Get(context.Background(), id); got.State != Pending {
			t.Fatalf("after refusals the request is %s, want pending", got.State)
		}
		status, out = e.do(t, "bob", "POST", id+"/approve", `{"reason": "eligible"}`)
		if status != 200 || out["state"] != Approved {
			t.Fatalf("approve: %d %v", status, out)
		}
		if status, out := e.do(t, "bob", "POST", id+"/deny", `{"reason": "changed my mind"}`); status != 409 {
			t.Fatalf("deciding twice: %d %v, want 409", status, out)
		}
		if len(e.recorded) != 1 || !strings.Contains(e.recorded[0], "approve "+id) {
			t.Fatalf("audited %q, want the one approval", e.recorded)
		}
		id2 := e.pending(t)
		if status, out := e.do(t, "ops", "POST", id2+"/deny", `{"reason": "not eligible"}`); status != 200 || out["state"] != Denied {
			t.Fatalf("deny by an approver of every tenant: %d %v", status, out)
		}
	})
}
