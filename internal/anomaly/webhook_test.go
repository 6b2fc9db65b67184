package anomaly

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// secretPath is the kind of path a webhook URL carries: a credential.
const secretPath = "/hooks/T0001/s3cr3t"

func TestWebhookReceivesTheAlertAsJSON(t *testing.T) {
	type request struct {
		method, contentType string
		body                []byte
	}
	got := make(chan request, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- request{r.Method, r.Header.Get("Content-Type"), b}
	}))
	defer srv.Close()

	e := newEnv(t, Rules{MaxRefusalsPerMinute: 2, Suspend: true, WebhookURL: srv.URL + secretPath}, newMemStore())
	e.clk.set(90 * time.Second)
	for range 3 {
		e.d.Observe(refusal("ci-bot"))
	}
	var req request
	select {
	case req = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the webhook received nothing within 10s")
	}
	if req.method != http.MethodPost || req.contentType != "application/json" {
		t.Errorf("request: %s with Content-Type %q, want POST of application/json", req.method, req.contentType)
	}
	var payload map[string]any
	if err := json.Unmarshal(req.body, &payload); err != nil {
		t.Fatalf("payload %s: %v", req.body, err)
	}
	want := map[string]any{
		"alert":     "ci-bot had more than 2 calls refused within a minute",
		"rule":      "max_refusals_per_minute",
		"principal": "ci-bot",
		"tenant":    "acme",
		"target":    "delete_customer",
		"count":     float64(3),
		"threshold": float64(2),
		"window":    float64(60),
		"time":      "2026-03-01T12:01:30Z",
		"trace_id":  "trace-ci-bot",
		"suspended": true,
	}
	if fmt.Sprint(payload) != fmt.Sprint(want) {
		t.Errorf("payload:\n got %v\nwant %v", payload, want)
	}
	e.log.wait(t, deliveredMsg)
	if s := e.d.Stats(); s.WebhookSent != 1 || s.WebhookFailed != 0 {
		t.Errorf("stats = %+v, want one sent, none failed", s)
	}
}

func TestWebhookRetriesAtMostTwice(t *testing.T) {
	tests := []struct {
		name      string
		answers   []int // by attempt; the last repeats
		attempts  int
		delivered bool
	}{
		{"accepted at once", []int{http.StatusNoContent}, 1, true},
		{"accepted on the last retry", []int{500, 503, 200}, 3, true},
		{"overloaded, then accepted", []int{429, 200}, 2, true},
		{"failing throughout", []int{502}, 3, false},
		{"a client error is not retried", []int{http.StatusBadRequest}, 1, false},
		{"a redirect is not followed", []int{http.StatusTemporaryRedirect}, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var attempts atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := int(attempts.Add(1))
				code := tt.answers[min(n, len(tt.answers))-1]
				if code == http.StatusTemporaryRedirect {
					w.Header().Set("Location", "/elsewhere")
				}
				w.WriteHeader(code)
			}))
			defer srv.Close()
			e := newEnv(t, Rules{MaxRows: 1, WebhookURL: srv.URL + secretPath}, newMemStore())
			e.d.Observe(result("ci-bot", 2))
			if tt.delivered {
				e.log.wait(t, deliveredMsg)
			} else {
				got := e.log.wait(t, failedMsg)
				if fmt.Sprint(got["err"]) == "" || strings.Contains(fmt.Sprint(got), "s3cr3t") {
					t.Errorf("failure logged as %v: want the cause, without the URL's secret", got)
				}
			}
			if n := int(attempts.Load()); n != tt.attempts {
				t.Errorf("%d attempts, want %d", n, tt.attempts)
			}
		})
	}
}

func TestUnreachableWebhookIsLoggedWithoutItsSecret(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL + secretPath
	srv.Close() // nothing listens there now
	e := newEnv(t, Rules{MaxRows: 1, WebhookURL: url}, newMemStore())
	e.d.Observe(result("ci-bot", 2))
	got := e.log.wait(t, failedMsg)
	if got["attempts"] != int64(webhookAttempts) {
		t.Errorf("attempts = %v, want %d", got["attempts"], webhookAttempts)
	}
	if s := fmt.Sprint(got); strings.Contains(s, "s3cr3t") || !strings.Contains(s, "127.0.0.1") {
		t.Errorf("failure logged as %v: want the host, never the URL's secret", s)
	}
}

func TestAStuckWebhookDoesNotBlockObserve(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release) // before srv.Close, which waits for the handler

	e := newEnv(t, Rules{MaxRows: 1, WebhookURL: srv.URL}, newMemStore())
	const alerts = 4 * webhookQueue
	done := make(chan struct{})
	go func() {
		for i := range alerts {
			e.d.Observe(result(fmt.Sprint("p", i), 2))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Observe blocked on a webhook that does not answer")
	}
	s := e.d.Stats()
	if s.Alerts != alerts {
		t.Errorf("%d alerts raised, want %d", s.Alerts, alerts)
	}
	// One alert may be in flight; the queue holds webhookQueue more.
	if s.WebhookDropped < alerts-webhookQueue-1 {
		t.Errorf("%d alerts dropped from the webhook, want at least %d", s.WebhookDropped, alerts-webhookQueue-1)
	}
	if n := len(e.log.all(alertMsg)); n != alerts {
		t.Errorf("%d alerts logged, want every one of %d", n, alerts)
	}
	dropped := e.log.all("anomaly: the webhook queue is full; alerts are being logged but not sent")
	if len(dropped) != 1 || !strings.HasPrefix(fmt.Sprint(dropped[0]["host"]), "127.0.0.1:") {
		t.Errorf("queue-full warnings = %v, want one (throttled), naming the host", dropped)
	}
}
