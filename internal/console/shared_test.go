package console_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/wardenmcp/warden/internal/console"
)

// With the sign-in limits in a Redis that does not answer, nobody signs in:
// an unknown count is not taken for zero.
func TestSignInLimitsUnreadableRefuse(t *testing.T) {
	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	t.Cleanup(func() { down.Close() })
	f := newFixture(t, func(o *console.Options) { o.Failures = console.NewRedisFailures(down, "warden:signin:") })
	good := f.key("ops-admin", admin)
	r := f.browser().signIn(good)
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.alert(), "sign-in limits") {
		t.Fatalf("a good key with the sign-in limits unreadable: HTTP %d (%s), want 503", r.status, r.alert())
	}
}
