package approval

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"
)

// webhookServer returns the URL and client of a server that passes on
// each body posted to it, checking that it is JSON.
func webhookServer(t *testing.T) (string, *http.Client, <-chan []byte) {
	t.Helper()
	got := make(chan []byte, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("webhook got %s with Content-Type %q", r.Method, r.Header.Get("Content-Type"))
		}
		b, _ := io.ReadAll(r.Body)
		got <- b
	}))
	t.Cleanup(srv.Close)
	return srv.URL, srv.Client(), got
}

func TestApprovalWebhookPostsNewRequests(t *testing.T) {
	for _, format := range []string{"", "json"} {
		t.Run("format="+format, func(t *testing.T) {
			url, client, got := webhookServer(t)
			r := newRequest(1)
			r.Risk, r.Policy, r.DryRun = "high", "risk_policies.high", json.RawMessage(`{"would_refund":100}`)
			NewWebhookFormat(url, format, client)(r)
			var m map[string]any
			if err := json.Unmarshal(<-got, &m); err != nil {
				t.Fatal(err)
			}
			dry, _ := m["dry_run"].(map[string]any)
			if m["event"] != "approval_requested" || m["id"] != r.ID || m["summary"] != r.Summary || m["principal"] != "alice" ||
				m["risk"] != "high" || m["policy"] != "risk_policies.high" || dry["would_refund"] != 100.0 {
				t.Fatalf("webhook body = %v", m)
			}
		})
	}
}

func TestApprovalWebhookJSONOmitsWhatIsNotSet(t *testing.T) {
	url, client, got := webhookServer(t)
	r := newRequest(1)
	NewWebhookFormat(url, "json", client)(r)
	var m map[string]any
	json.Unmarshal(<-got, &m)
	if m["event"] != "approval_requested" || m["id"] != r.ID {
		t.Fatalf("webhook body = %v", m)
	}
	for _, k := range []string{"risk", "policy", "dry_run"} {
		if _, ok := m[k]; ok {
			t.Errorf("webhook body = %v; want no %s when the request has none", m, k)
		}
	}
}

// slackBody is what a Slack incoming webhook reads.
type slackBody struct {
	Text   string `json:"text"`
	Blocks []struct {
		Type string `json:"type"`
		Text *struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"text"`
		Fields []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"fields"`
		Elements []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"elements"`
	} `json:"blocks"`
}

// postSlack returns what the slack webhook posts for r.
func postSlack(t *testing.T, r *Request) slackBody {
	t.Helper()
	url, client, got := webhookServer(t)
	NewWebhookFormat(url, "slack", client)(r)
	var b slackBody
	if err := json.Unmarshal(<-got, &b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestApprovalWebhookSlack(t *testing.T) {
	r := newRequest(2)
	r.Risk, r.Policy, r.DryRun = "high", "risk_policies.high", json.RawMessage(`{"would_refund":100}`)
	b := postSlack(t, r)
	if !strings.Contains(b.Text, "refund_payment") || !strings.Contains(b.Text, "alice") {
		t.Errorf("text = %q; want the tool and the requester", b.Text)
	}
	var types []string
	for _, bl := range b.Blocks {
		types = append(types, bl.Type)
	}
	if got := strings.Join(types, " "); got != "header section section section context" {
		t.Fatalf("blocks = %s; want header, fields, summary, dry run, context", got)
	}
	if h := b.Blocks[0].Text; h.Type != "plain_text" || h.Text != "Approval requested: refund_payment" {
		t.Errorf("header = %+v", h)
	}
	var fields []string
	for _, f := range b.Blocks[1].Fields {
		if f.Type != "mrkdwn" {
			t.Errorf("field %q is %s, want mrkdwn", f.Text, f.Type)
		}
		fields = append(fields, f.Text)
	}
	for _, want := range []string{"*Requester*\nalice (acme)", "*Tool*\nrefund_payment v1", "*Tier*\nhigh (risk_policies.high)",
		"*Needed*\n2 from finance or ops", "*Expires*\n<!date^"} {
		if !strings.Contains(strings.Join(fields, "\n\n"), want) {
			t.Errorf("fields %q lack %q", fields, want)
		}
	}
	if s := b.Blocks[2].Text.Text; !strings.Contains(s, r.Summary) {
		t.Errorf("summary section = %q", s)
	}
	if s := b.Blocks[3].Text.Text; !strings.Contains(s, `{"would_refund":100}`) {
		t.Errorf("dry run section = %q", s)
	}
	cmd := "warden approvals approve " + r.ID + " --as YOU --groups GROUP"
	if c := b.Blocks[4].Elements[0].Text; !strings.Contains(c, r.ID) || !strings.Contains(c, cmd) {
		t.Errorf("context = %q; want the id and %q", c, cmd)
	}

	r.Groups = []string{"finance"}
	r.DryRun = nil
	b = postSlack(t, r)
	if len(b.Blocks) != 4 {
		t.Errorf("%d blocks without a dry run, want 4", len(b.Blocks))
	}
	if c := b.Blocks[3].Elements[0].Text; !strings.Contains(c, "--groups finance`") {
		t.Errorf("context = %q; want the only group in the command", c)
	}
}

func TestApprovalWebhookSlackEscapesCallerText(t *testing.T) {
	const evil = "<https://evil|click> <!channel> & co"
	r := newRequest(1)
	r.Summary = evil
	r.Principal = "<@U123>"
	r.DryRun = json.RawMessage(`{"note":"<!here>"}`)
	b := postSlack(t, r)
	if want := "&lt;https://evil|click&gt; &lt;!channel&gt; &amp; co"; !strings.Contains(b.Blocks[2].Text.Text, want) {
		t.Errorf("summary section = %q; want %q", b.Blocks[2].Text.Text, want)
	}
	// The only control sequence left is Warden's own date.
	texts := []string{b.Text}
	for _, bl := range b.Blocks {
		if bl.Text != nil {
			texts = append(texts, bl.Text.Text)
		}
		for _, f := range bl.Fields {
			if !strings.HasPrefix(f.Text, "*Expires*") {
				texts = append(texts, f.Text)
			}
		}
		for _, e := range bl.Elements {
			texts = append(texts, e.Text)
		}
	}
	for _, s := range texts {
		if strings.ContainsAny(s, "<>") || strings.Contains(s, "& ") {
			t.Errorf("text %q holds an unescaped <, > or &", s)
		}
	}
}

func TestSlackEscape(t *testing.T) {
	tests := []struct {
		in    string
		limit int
		want  string
	}{
		{"a < b", 100, "a &lt; b"},
		{"abc", 3, "abc"},
		{"abcd", 3, "ab…"},
		{"a&b", 5, "a…"}, // never half an entity
		{"a&b", 7, "a&amp;b"},
		{"ééééé", 4, "ééé…"},
	}
	for _, tt := range tests {
		got := slackEscape(tt.in, tt.limit)
		if got != tt.want || utf8.RuneCountInString(got) > tt.limit {
			t.Errorf("slackEscape(%q, %d) = %q, want %q", tt.in, tt.limit, got, tt.want)
		}
	}
}

func TestApprovalWebhookUnknownFormatPanics(t *testing.T) {
	defer func() {
		if p := recover(); p == nil || !strings.Contains(p.(string), `"teams"`) {
			t.Errorf("panic = %v; want one naming the format", p)
		}
	}()
	NewWebhookFormat("http://127.0.0.1/", "teams", nil)
}
