package server

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/wardenmcp/warden/internal/config"
)

// A server that shares some state (idempotency keys in Redis) but keeps
// rate limits in memory says so at start, naming what a second instance
// would not see; a server that shares nothing says nothing.
func TestUnsharedStateWarned(t *testing.T) {
	tests := []struct {
		name, yaml string
		warn       []string
	}{
		{"one instance, all embedded", "", nil},
		{"idempotency shared, rate limits not",
			"idempotency: {store: redis, redis_url: \"redis://127.0.0.1:1\"}\n",
			[]string{"would not share", "rate limits (rate_limits.store: memory)", "used confirmations"}},
		{"everything in server.redis",
			"server:\n  redis: {url: \"redis://127.0.0.1:1\"}\nrate_limits: {store: redis}\nidempotency: {store: redis}\n",
			nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(tt.yaml), "warden.yaml", t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			srv, err := Build(context.Background(), cfg, &Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			srv.Close()
			for _, w := range tt.warn {
				if !strings.Contains(logs.String(), w) {
					t.Errorf("the log does not say %q:\n%s", w, logs.String())
				}
			}
			if tt.warn == nil && strings.Contains(logs.String(), "would not share") {
				t.Errorf("a warning of unshared state:\n%s", logs.String())
			}
		})
	}
}
