package observe

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

const testTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"

// logLine returns the one JSON record buf holds.
func logLine(t *testing.T, buf *bytes.Buffer) map[string]any {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("logged %d lines, want 1:\n%s", len(lines), buf)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
		t.Fatalf("%v: %s", err, lines[0])
	}
	return m
}

func TestLoggerAddsTraceID(t *testing.T) {
	span := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: mustTraceID(t, "0af7651916cd43dd8448eb211c80319c"),
		SpanID:  trace.SpanID{1},
	}))
	tests := []struct {
		name string
		ctx  context.Context
		log  func(*slog.Logger, context.Context)
		want string // "" means no trace_id
	}{
		{"from WithTraceID", WithTraceID(context.Background(), testTraceID),
			func(l *slog.Logger, ctx context.Context) { l.InfoContext(ctx, "call") }, testTraceID},
		{"from a span", span,
			func(l *slog.Logger, ctx context.Context) { l.InfoContext(ctx, "call") }, "0af7651916cd43dd8448eb211c80319c"},
		{"WithTraceID wins over a span", WithTraceID(span, testTraceID),
			func(l *slog.Logger, ctx context.Context) { l.InfoContext(ctx, "call") }, testTraceID},
		{"none without one", context.Background(),
			func(l *slog.Logger, ctx context.Context) { l.InfoContext(ctx, "call") }, ""},
		{"the record's own is kept", WithTraceID(context.Background(), testTraceID),
			func(l *slog.Logger, ctx context.Context) { l.InfoContext(ctx, "call", "trace_id", "explicit") }, "explicit"},
		{"the logger's own is kept", WithTraceID(context.Background(), testTraceID),
			func(l *slog.Logger, ctx context.Context) { l.With("trace_id", "explicit").InfoContext(ctx, "call") }, "explicit"},
		{"outside an open group", WithTraceID(context.Background(), testTraceID),
			func(l *slog.Logger, ctx context.Context) {
				l.With("a", 1).WithGroup("req").With("b", 2).InfoContext(ctx, "call", "c", 3)
			}, testTraceID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			tt.log(NewLogger(&buf, "json", slog.LevelInfo), tt.ctx)
			if n := strings.Count(buf.String(), `"trace_id"`); n > 1 {
				t.Errorf("trace_id appears %d times: %s", n, &buf)
			}
			rec := logLine(t, &buf)
			got, _ := rec["trace_id"].(string)
			if got != tt.want {
				t.Errorf("trace_id = %q, want %q: %s", got, tt.want, &buf)
			}
		})
	}
}

func TestLoggerKeepsGroupsIntact(t *testing.T) {
	var buf bytes.Buffer
	log := NewLogger(&buf, "json", slog.LevelInfo)
	log.With("a", 1).WithGroup("req").With("b", 2).InfoContext(WithTraceID(context.Background(), testTraceID), "call", "c", 3)
	rec := logLine(t, &buf)
	req, _ := rec["req"].(map[string]any)
	if rec["a"] != 1.0 || req["b"] != 2.0 || req["c"] != 3.0 || rec["trace_id"] != testTraceID {
		t.Errorf("got %s", &buf)
	}
}

// creds is a LogValuer that hides a credential in a group.
type creds struct{ user, pass string }

func (c creds) LogValue() slog.Value {
	return slog.GroupValue(slog.String("user", c.user), slog.String("password", c.pass))
}

func TestLoggerRedactsSecrets(t *testing.T) {
	const secret = "s3cr3t-VALUE"
	u, _ := url.Parse("postgres://warden:" + secret + "@db.internal:5432/warden")
	tests := []struct {
		name string
		log  func(*slog.Logger)
		keep []string // what must still be there
	}{
		{"authorization header value", func(l *slog.Logger) { l.Info("req", "Authorization", "Bearer "+secret) }, nil},
		{"lower-case key", func(l *slog.Logger) { l.Info("req", "authorization", secret) }, nil},
		{"api_key", func(l *slog.Logger) { l.Info("req", "api_key", secret) }, nil},
		{"X-Api-Key", func(l *slog.Logger) { l.Info("req", "X-Api-Key", secret) }, nil},
		{"camel case token", func(l *slog.Logger) { l.Info("req", "refreshToken", secret) }, nil},
		{"password", func(l *slog.Logger) { l.Info("req", "db_password", secret) }, nil},
		{"client secret", func(l *slog.Logger) { l.Info("req", "client_secret", secret) }, nil},
		{"cookie", func(l *slog.Logger) { l.Info("req", "Set-Cookie", "sid="+secret) }, nil},
		{"bearer under an innocent key", func(l *slog.Logger) { l.Info("req", "header", "Bearer "+secret) }, nil},
		{"bearer inside a message", func(l *slog.Logger) { l.Info("req", "detail", "sent Authorization: bearer "+secret+" upstream") }, nil},
		{"basic credentials", func(l *slog.Logger) { l.Info("req", "h", "Basic "+secret) }, nil},
		{"in a group", func(l *slog.Logger) { l.Info("req", slog.Group("upstream", "url", "https://api", "token", secret)) }, []string{"https://api"}},
		{"with With", func(l *slog.Logger) { l.With("api_key", secret).Info("req", "tool", "echo") }, []string{"echo"}},
		{"with With in a group", func(l *slog.Logger) { l.WithGroup("g").With("password", secret).Info("req") }, nil},
		{"http.Header", func(l *slog.Logger) {
			l.Info("req", "headers", http.Header{"Authorization": {"Bearer " + secret}, "Accept": {"application/json"}})
		}, []string{"application/json"}},
		{"map", func(l *slog.Logger) { l.Info("req", "env", map[string]string{"API_TOKEN": secret, "HOME": "/root"}) }, []string{"/root"}},
		{"url with a password", func(l *slog.Logger) { l.Info("req", "dsn", u) }, []string{"db.internal"}},
		{"LogValuer", func(l *slog.Logger) { l.Info("req", "creds", creds{"alice", secret}) }, []string{"alice"}},
		{"error text", func(l *slog.Logger) { l.Info("req", "err", errors.New("upstream said: Bearer "+secret+" invalid")) }, nil},
	}
	for _, format := range []string{"json", "text"} {
		for _, tt := range tests {
			t.Run(format+"/"+tt.name, func(t *testing.T) {
				var buf bytes.Buffer
				tt.log(NewLogger(&buf, format, slog.LevelInfo))
				out := buf.String()
				if strings.Contains(out, secret) {
					t.Errorf("the secret was logged: %s", out)
				}
				if !strings.Contains(out, Redacted) && !strings.Contains(out, "xxxxx") { // url.URL.Redacted's mark
					t.Errorf("no redaction marker: %s", out)
				}
				for _, k := range append(tt.keep, "req") {
					if !strings.Contains(out, k) {
						t.Errorf("%q was lost: %s", k, out)
					}
				}
			})
		}
	}
}

func TestLoggerLeavesOrdinaryAttributes(t *testing.T) {
	var buf bytes.Buffer
	NewLogger(&buf, "json", slog.LevelInfo).Info("call", "tool", "echo", "auth_method", "api_key",
		"key_id", "k_123", "plan", "basic", "n", 3, "headers", http.Header{"Accept": {"text/plain"}})
	rec := logLine(t, &buf)
	headers, _ := rec["headers"].(map[string]any)
	if rec["tool"] != "echo" || rec["auth_method"] != "api_key" || rec["key_id"] != "k_123" || rec["plan"] != "basic" ||
		rec["n"] != 3.0 || headers["Accept"] == nil {
		t.Errorf("ordinary attributes changed: %s", &buf)
	}
}

func TestLoggerLevel(t *testing.T) {
	var buf bytes.Buffer
	log := NewLogger(&buf, "text", slog.LevelWarn)
	log.Info("quiet")
	log.Warn("loud")
	if out := buf.String(); strings.Contains(out, "quiet") || !strings.Contains(out, "loud") {
		t.Errorf("level not applied: %s", out)
	}
}

func TestSecretKey(t *testing.T) {
	for key, want := range map[string]bool{
		"Authorization": true, "PROXY-AUTHORIZATION": true, "token": true, "id_token": true,
		"api_key": true, "apiKey": true, "X-API-KEY": true, "password": true, "passwd": true,
		"client_secret": true, "cookie": true, "Set-Cookie": true, "credentials": true, "private_key": true,
		"tool": false, "target": false, "auth_method": false, "key_id": false, "trace_id": false,
		"session_id": false, "principal": false, strings.Repeat("x", 100) + "_token": true,
	} {
		if got := secretKey(key); got != want {
			t.Errorf("secretKey(%q) = %v, want %v", key, got, want)
		}
	}
}
