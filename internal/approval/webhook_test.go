package approval

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestApprovalWebhookPostsNewRequests(t *testing.T) {
	got := make(chan map[string]any, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("webhook got %s with Content-Type %q", r.Method, r.Header.Get("Content-Type"))
		}
		json.NewDecoder(r.Body).Decode(&m)
		got <- m
	}))
	defer srv.Close()
	r := newRequest(1)
	NewWebhook(srv.URL, srv.Client())(r)
	m := <-got
	if m["event"] != "approval_requested" || m["id"] != r.ID || m["summary"] != r.Summary || m["principal"] != "alice" {
		t.Fatalf("webhook body = %v", m)
	}
}
