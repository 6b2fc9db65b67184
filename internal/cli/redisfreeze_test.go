package cli

import (
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

// A Redis that stops answering — connections open, no replies — bounds the
// calls that need it by the ceilings in server.state.timeouts:
//   - the rate-limit store (on_store_error: refuse) refuses every call with
//     UNAVAILABLE and a retry_after, each within the ceiling, and calls
//     succeed again once Redis answers;
//   - the cache, which controls nothing, counts as a miss: calls of a cached
//     tool still succeed, each within its two ceilings (read and write).
func TestFrozenRedisBoundsCalls(t *testing.T) {
	const (
		ceiling = time.Second
		// bound tells a bounded call from a hung one on a loaded machine:
		// the ceilings a call can meet, and slack.
		bound = 2*ceiling + 3*time.Second
	)
	u, err := url.Parse(rlRedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, store := range []string{"rate limits", "cache"} {
		t.Run(store, func(t *testing.T) {
			proxy := newTCPProxy(t, u.Host)
			redisURL := "redis://" + proxy.addr + u.Path
			src, err := os.ReadFile(demoConfig(t))
			if err != nil {
				t.Fatal(err)
			}
			doc := strings.Replace(string(src), "  state:\n", fmt.Sprintf("  state:\n    timeouts: {cache: %[1]s, rate_limits: %[1]s}\n", ceiling), 1)
			limits := "rate_limits:\n  per_principal_tool: {rate: 100000/s, burst: 100000}\n  per_principal: {rate: 100000/s, burst: 100000}\n  per_tool: {rate: 100000/s, burst: 100000}\n"
			if store == "rate limits" {
				limits += fmt.Sprintf("  store: redis\n  redis_url: %q\n  on_store_error: refuse\n", redisURL)
			} else {
				doc = replaceTopLevel(doc, "cache", fmt.Sprintf("cache:\n  store: redis\n  redis_url: %q\n", redisURL))
				doc = strings.Replace(doc, "  get_customer:\n", "  get_customer:\n    cache_ttl: 1m\n", 1)
			}
			doc = replaceTopLevel(doc, "rate_limits", limits)
			cfgPath := os.Getenv("WARDEN_DEMO_DIR") + "/warden-redis-freeze.yaml"
			if err := os.WriteFile(cfgPath, []byte(doc), 0o600); err != nil {
				t.Fatal(err)
			}
			key := createKey(t, cfgPath, "redis-freeze")
			client := newTestClient(t)
			srv := startWarden(t, client, cfgPath)
			if o := callGetCustomer(t.Context(), client, srv.endpoint, key, 1); !o.ok {
				t.Fatalf("before the freeze, a call = %v", o)
			}

			proxy.freeze(true)
			for i := range 4 {
				start := time.Now()
				o := callGetCustomer(t.Context(), client, srv.endpoint, key, 10+i)
				took := time.Since(start)
				switch {
				case took > bound:
					t.Errorf("with Redis frozen, a call took %v (bound %v): %v", took, bound, o)
				case store == "rate limits" && (o.code != "UNAVAILABLE" || o.retryAfter <= 0):
					t.Errorf("with the rate-limit store frozen, a call = %v, want UNAVAILABLE with a retry_after", o)
				case store == "cache" && !o.ok:
					t.Errorf("with the cache frozen, a call = %v, want its result (a miss)", o)
				}
				t.Logf("with Redis frozen, call %d: %v after %v", i+1, o, took.Round(time.Millisecond))
			}
			proxy.freeze(false)
			thawed := time.Now()
			deadline := thawed.Add(rlDeadline)
			for id := 100; ; id++ {
				if o := callGetCustomer(t.Context(), client, srv.endpoint, key, id); o.ok {
					break
				} else if time.Now().After(deadline) {
					t.Fatalf("%v after Redis answered again, a call = %v", rlDeadline, o)
				}
			}
			t.Logf("calls succeeded again %v after Redis answered", time.Since(thawed).Round(time.Millisecond))
		})
	}
}
