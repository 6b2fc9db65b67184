package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/pipeline"
)

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// unlimited is a limit no test reaches, for the dimensions a test is not about.
var unlimited = &config.Limit{Rate: "1000/s", Burst: 1000}

// limitsCfg returns memory-store limits: pt per principal×tool, p per
// principal, t per tool; nil ones are unlimited for the test's purposes.
func limitsCfg(pt, p, t *config.Limit) *config.RateLimits {
	or := func(l *config.Limit) *config.Limit {
		if l == nil {
			return unlimited
		}
		return l
	}
	return &config.RateLimits{
		PerPrincipalTool:          or(pt),
		PerPrincipal:              or(p),
		PerTool:                   or(t),
		MaxConcurrentPerPrincipal: 100,
	}
}

// maker builds a Limiter over one store. advance moves the store's clock;
// it is nil for stores whose clock a test cannot move (Redis).
type maker func(t *testing.T, cfg *config.RateLimits) (l *Limiter, advance func(time.Duration))

func memoryMaker(t *testing.T, cfg *config.RateLimits) (*Limiter, func(time.Duration)) {
	t.Helper()
	clk := newFakeClock()
	l, err := newLimiter(t.Context(), cfg, nil, clk.Now, keyPrefix)
	if err != nil {
		t.Fatal(err)
	}
	return l, clk.Advance
}

// forEachStore runs f against a Limiter over each store: memory, and Redis
// when WARDEN_TEST_REDIS_URL is set.
func forEachStore(t *testing.T, f func(t *testing.T, mk maker)) {
	t.Run("memory", func(t *testing.T) { f(t, memoryMaker) })
	t.Run("redis", func(t *testing.T) { f(t, redisMaker(t)) })
}

var specs sync.Map // name → *pipeline.Spec, shared like the server shares them

func call(principal, tool string) *pipeline.Call {
	s, _ := specs.LoadOrStore(tool, &pipeline.Spec{Method: pipeline.CallTool, Name: tool, Scope: "test"})
	return &pipeline.Call{Spec: s.(*pipeline.Spec), Target: tool, Principal: &pipeline.Principal{ID: principal}}
}

// withLimit returns c with a spec of its own that has the rate limit lim.
func withLimit(c *pipeline.Call, lim *pipeline.Limit) *pipeline.Call {
	s := *c.Spec
	s.RateLimit = lim
	c.Spec = &s
	return c
}

// admit admits c and releases it at once, returning the refusal if any.
func admit(t *testing.T, l *Limiter, c *pipeline.Call) *pipeline.Error {
	t.Helper()
	release, err := l.Admit(t.Context(), c)
	if err != nil {
		var perr *pipeline.Error
		if !errors.As(err, &perr) {
			t.Fatalf("Admit(%s, %s): %v, want a *pipeline.Error", c.Principal.ID, c.Spec.Name, err)
		}
		return perr
	}
	release()
	return nil
}

func mustAdmit(t *testing.T, l *Limiter, c *pipeline.Call) {
	t.Helper()
	if perr := admit(t, l, c); perr != nil {
		t.Fatalf("Admit(%s, %s) refused: %v", c.Principal.ID, c.Spec.Name, perr)
	}
}

// mustRefuse asserts that c is RATE_LIMITED with retryAfter seconds and a
// message containing msg.
func mustRefuse(t *testing.T, l *Limiter, c *pipeline.Call, retryAfter int, msg string) {
	t.Helper()
	perr := admit(t, l, c)
	switch {
	case perr == nil:
		t.Fatalf("Admit(%s, %s) admitted, want RATE_LIMITED", c.Principal.ID, c.Spec.Name)
	case perr.Code != pipeline.RateLimited:
		t.Fatalf("Admit(%s, %s) = %v, want RATE_LIMITED", c.Principal.ID, c.Spec.Name, perr)
	case perr.RetryAfter != retryAfter:
		t.Fatalf("Admit(%s, %s) retry_after = %d, want %d (%v)", c.Principal.ID, c.Spec.Name, perr.RetryAfter, retryAfter, perr)
	case !strings.Contains(perr.Message, msg):
		t.Fatalf("Admit(%s, %s) message %q does not contain %q", c.Principal.ID, c.Spec.Name, perr.Message, msg)
	}
}

func TestExactBurst(t *testing.T) {
	tests := []struct {
		name       string
		cfg        *config.RateLimits
		override   *pipeline.Limit // the target's own limit
		burst      int
		interval   time.Duration
		retryAfter int
		msg        string
	}{{
		name:       "per principal×tool",
		cfg:        limitsCfg(&config.Limit{Rate: "60/m", Burst: 5}, nil, nil),
		burst:      5,
		interval:   time.Second,
		retryAfter: 1,
		msg:        "rate limit reached: 60 calls per minute to search_orders per caller",
	}, {
		name:       "per principal, retry_after rounded up",
		cfg:        limitsCfg(nil, &config.Limit{Rate: "10/s", Burst: 3}, nil),
		burst:      3,
		interval:   100 * time.Millisecond,
		retryAfter: 1,
		msg:        "rate limit reached: 10 calls per second per caller",
	}, {
		name:       "per tool",
		cfg:        limitsCfg(nil, nil, &config.Limit{Rate: "2/h", Burst: 7}),
		burst:      7,
		interval:   30 * time.Minute,
		retryAfter: 1800,
		msg:        "rate limit reached: 2 calls per hour to search_orders from all callers",
	}, {
		name:       "tool override",
		cfg:        limitsCfg(&config.Limit{Rate: "60/m", Burst: 5}, nil, nil),
		override:   &pipeline.Limit{Calls: 1, Per: time.Minute, Burst: 2},
		burst:      2,
		interval:   time.Minute,
		retryAfter: 60,
		msg:        "rate limit reached: 1 call per minute to search_orders per caller",
	}}
	forEachStore(t, func(t *testing.T, mk maker) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				l, advance := mk(t, tt.cfg)
				c := call("alice", "search_orders")
				c = withLimit(c, tt.override)
				for range tt.burst {
					mustAdmit(t, l, c)
				}
				mustRefuse(t, l, c, tt.retryAfter, tt.msg)
				mustRefuse(t, l, c, tt.retryAfter, tt.msg) // a refusal consumed nothing
				if advance == nil {
					return
				}
				advance(tt.interval - time.Nanosecond)
				mustRefuse(t, l, c, 1, tt.msg)
				advance(time.Nanosecond)
				mustAdmit(t, l, c)
				mustRefuse(t, l, c, tt.retryAfter, tt.msg)
				advance(tt.interval * time.Duration(tt.burst))
				for range tt.burst {
					mustAdmit(t, l, c)
				}
				mustRefuse(t, l, c, tt.retryAfter, tt.msg)
			})
		}
	})
}

// TestExactBurstConcurrent admits calls from many goroutines at one instant
// (synctest's clock stands still while they run) on the default clock.
func TestExactBurstConcurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const burst, callers = 50, 400
		l, err := New(t.Context(), limitsCfg(&config.Limit{Rate: "60/m", Burst: burst}, nil, nil), nil)
		if err != nil {
			t.Fatal(err)
		}
		var admitted atomic.Int64
		var wg sync.WaitGroup
		for range callers {
			wg.Go(func() {
				perr := admit(t, l, call("alice", "search_orders"))
				switch {
				case perr == nil:
					admitted.Add(1)
				case perr.Code != pipeline.RateLimited || perr.RetryAfter != 1:
					t.Errorf("refusal %v with retry_after %d, want RATE_LIMITED after 1s", perr, perr.RetryAfter)
				}
			})
		}
		wg.Wait()
		if n := admitted.Load(); n != burst {
			t.Fatalf("%d of %d concurrent calls admitted, want exactly the burst, %d", n, callers, burst)
		}
		time.Sleep(time.Second)
		mustAdmit(t, l, call("alice", "search_orders"))
		mustRefuse(t, l, call("alice", "search_orders"), 1, "per caller")
	})
}

func TestDimensionsIndependent(t *testing.T) {
	forEachStore(t, func(t *testing.T, mk maker) {
		t.Run("another principal", func(t *testing.T) {
			l, _ := mk(t, limitsCfg(&config.Limit{Rate: "1/h", Burst: 2}, nil, nil))
			mustAdmit(t, l, call("alice", "search"))
			mustAdmit(t, l, call("alice", "search"))
			mustRefuse(t, l, call("alice", "search"), 3600, "to search per caller")
			mustAdmit(t, l, call("bob", "search"))
			mustAdmit(t, l, call("bob", "search"))
			mustRefuse(t, l, call("bob", "search"), 3600, "to search per caller")
		})
		t.Run("another tool", func(t *testing.T) {
			l, _ := mk(t, limitsCfg(&config.Limit{Rate: "1/h", Burst: 2}, nil, nil))
			mustAdmit(t, l, call("alice", "search"))
			mustAdmit(t, l, call("alice", "search"))
			mustRefuse(t, l, call("alice", "search"), 3600, "to search per caller")
			mustAdmit(t, l, call("alice", "list"))
			mustAdmit(t, l, call("alice", "list"))
			mustRefuse(t, l, call("alice", "list"), 3600, "to list per caller")
		})
		t.Run("per principal spans tools", func(t *testing.T) {
			l, _ := mk(t, limitsCfg(nil, &config.Limit{Rate: "1/h", Burst: 3}, nil))
			mustAdmit(t, l, call("alice", "a"))
			mustAdmit(t, l, call("alice", "b"))
			mustAdmit(t, l, call("alice", "c"))
			mustRefuse(t, l, call("alice", "d"), 3600, "1 call per hour per caller")
			mustAdmit(t, l, call("bob", "a"))
		})
		t.Run("per tool spans principals", func(t *testing.T) {
			l, _ := mk(t, limitsCfg(nil, nil, &config.Limit{Rate: "1/h", Burst: 3}))
			mustAdmit(t, l, call("a", "search"))
			mustAdmit(t, l, call("b", "search"))
			mustAdmit(t, l, call("c", "search"))
			mustRefuse(t, l, call("d", "search"), 3600, "1 call per hour to search from all callers")
			mustAdmit(t, l, call("d", "list"))
		})
		t.Run("override applies to its tool only", func(t *testing.T) {
			l, _ := mk(t, limitsCfg(&config.Limit{Rate: "1/h", Burst: 2}, nil, nil))
			search := func() *pipeline.Call {
				c := call("alice", "search")
				c = withLimit(c, &pipeline.Limit{Calls: 1, Per: time.Minute, Burst: 1})
				return c
			}
			mustAdmit(t, l, search())
			mustRefuse(t, l, search(), 60, "1 call per minute to search per caller")
			mustAdmit(t, l, call("alice", "list"))
			mustAdmit(t, l, call("alice", "list"))
			mustRefuse(t, l, call("alice", "list"), 3600, "1 call per hour to list per caller")
		})
		t.Run("a prompt and a tool of one name", func(t *testing.T) {
			l, _ := mk(t, limitsCfg(&config.Limit{Rate: "1/h", Burst: 1}, nil, nil))
			tool := func() *pipeline.Call {
				c := call("alice", "search")
				c = withLimit(c, &pipeline.Limit{Calls: 1, Per: time.Hour, Burst: 5})
				return c
			}
			prompt := &pipeline.Call{Spec: &pipeline.Spec{Method: pipeline.GetPrompt, Name: "search"}, Principal: &pipeline.Principal{ID: "alice"}}
			mustAdmit(t, l, tool())
			mustAdmit(t, l, prompt)
			// The override is the tool's; the prompt has the default.
			mustRefuse(t, l, prompt, 3600, "1 call per hour to search per caller")
			mustAdmit(t, l, tool())
		})
	})
}

func TestRefusalConsumesNothing(t *testing.T) {
	forEachStore(t, func(t *testing.T, mk maker) {
		// Per principal×tool 1, per principal 2 (slow), per tool 3.
		l, advance := mk(t, limitsCfg(
			&config.Limit{Rate: "1/h", Burst: 1},
			&config.Limit{Rate: "1/m", Burst: 2},
			&config.Limit{Rate: "1/h", Burst: 3}))
		mustAdmit(t, l, call("alice", "search"))
		for range 10 {
			// Refused by alice×search: must take nothing from alice or search.
			mustRefuse(t, l, call("alice", "search"), 3600, "to search per caller")
		}
		mustAdmit(t, l, call("alice", "list")) // alice's second
		mustAdmit(t, l, call("bob", "search")) // search's second
		mustRefuse(t, l, call("alice", "other"), 60, "1 call per minute per caller")
		mustRefuse(t, l, call("alice", "other"), 60, "1 call per minute per caller")
		mustAdmit(t, l, call("carol", "search"))                           // search's third
		mustRefuse(t, l, call("dave", "search"), 3600, "from all callers") // search is spent
		// dave was not charged by that refusal: both his calls pass.
		mustAdmit(t, l, call("dave", "list"))
		mustAdmit(t, l, call("dave", "other"))
		mustRefuse(t, l, call("dave", "more"), 60, "1 call per minute per caller")
		if advance == nil {
			return
		}
		advance(time.Minute)
		// alice×other was not charged by its refusals (its burst is one).
		mustAdmit(t, l, call("alice", "other"))
	})
}

func TestRefusalNamesLongestWait(t *testing.T) {
	forEachStore(t, func(t *testing.T, mk maker) {
		l, _ := mk(t, limitsCfg(
			&config.Limit{Rate: "1/m", Burst: 1},
			&config.Limit{Rate: "1/h", Burst: 1},
			&config.Limit{Rate: "2/m", Burst: 1}))
		mustAdmit(t, l, call("alice", "search"))
		// All three refuse; the per-principal limit admits last.
		mustRefuse(t, l, call("alice", "search"), 3600, "1 call per hour per caller")
	})
}

func TestKeysDoNotCollide(t *testing.T) {
	pairs := [][2][2]string{ // {principal, tool} × 2
		{{"a:b", "x"}, {"b", "x:a"}},
		{{"a%3Ab", "x"}, {"a:b", "x"}},
		{{"a", "x%3Ab"}, {"a", "x:b"}},
		{{"", "x:"}, {":", "x"}},
	}
	forEachStore(t, func(t *testing.T, mk maker) {
		for _, p := range pairs {
			l, _ := mk(t, limitsCfg(&config.Limit{Rate: "1/h", Burst: 1}, nil, nil))
			mustAdmit(t, l, call(p[0][0], p[0][1]))
			mustAdmit(t, l, call(p[1][0], p[1][1]))
			mustRefuse(t, l, call(p[0][0], p[0][1]), 3600, "per caller")
		}
	})
}

func TestConcurrencyCap(t *testing.T) {
	cfg := limitsCfg(&config.Limit{Rate: "1/h", Burst: 4}, nil, nil)
	cfg.MaxConcurrentPerPrincipal = 2
	l, _ := memoryMaker(t, cfg)
	ctx := t.Context()

	r1, err := l.Admit(ctx, call("alice", "search"))
	if err != nil {
		t.Fatal(err)
	}
	r2, err := l.Admit(ctx, call("alice", "list"))
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		// Refused by the cap, consuming no rate.
		mustRefuse(t, l, call("alice", "search"), 1, "too many calls in flight: at most 2 at once per caller")
	}
	mustAdmit(t, l, call("bob", "search"))

	r1()
	r1() // a second release frees nothing more
	r3, err := l.Admit(ctx, call("alice", "search"))
	if err != nil {
		t.Fatalf("after a release: %v", err)
	}
	mustRefuse(t, l, call("alice", "search"), 1, "in flight")
	r2()
	r3()

	// alice×search has had two calls; the five refused ones took nothing.
	mustAdmit(t, l, call("alice", "search"))
	mustAdmit(t, l, call("alice", "search"))
	mustRefuse(t, l, call("alice", "search"), 3600, "to search per caller")
	// A call refused by a rate limit gave its slot back.
	if n := len(l.inFlight); n != 0 {
		t.Fatalf("%d principals still hold slots after every call ended", n)
	}
}

func TestNilPrincipalRefused(t *testing.T) {
	l, _ := memoryMaker(t, limitsCfg(nil, nil, nil))
	c := call("x", "search")
	c.Principal = nil
	_, err := l.Admit(t.Context(), c)
	if perr := pipeline.AsError(err); perr.Code != pipeline.PermissionDenied {
		t.Fatalf("Admit with no principal = %v, want PERMISSION_DENIED", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	bad := &config.Limit{Rate: "60/d", Burst: 1}
	tests := []struct {
		name string
		cfg  config.RateLimits
		want string
	}{
		{"rate", config.RateLimits{PerTool: bad}, "rate_limits.per_tool: rate"},
		{"burst", config.RateLimits{PerPrincipal: &config.Limit{Rate: "1/s"}}, "rate_limits.per_principal: burst"},
		{"huge burst", config.RateLimits{PerPrincipal: &config.Limit{Rate: "1/h", Burst: 1 << 30}}, "too large"},
		{"store", config.RateLimits{Store: "etcd"}, "rate_limits.store"},
		{"on_store_error", config.RateLimits{Store: "redis", RedisURL: "redis://127.0.0.1:1/0", OnStoreError: "allow"}, "rate_limits.on_store_error"},
		{"redis_url scheme", config.RateLimits{Store: "redis", RedisURL: "http://secret@example.com"}, "rate_limits.redis_url"},
		{"redis_url port", config.RateLimits{Store: "redis", RedisURL: "redis://user:secret@host:%zz/0"}, "rate_limits.redis_url: invalid port"},
		{"max_concurrent", config.RateLimits{MaxConcurrentPerPrincipal: -1}, "max_concurrent_per_principal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(t.Context(), &tt.cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want an error containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Fatalf("error %q reveals the URL's credentials", err)
			}
		})
	}
}

// TestNilConfigIsLimited: an embedder that passes no configuration gets
// config's defaults, never unlimited calls.
func TestNilConfigIsLimited(t *testing.T) {
	l, err := newLimiter(t.Context(), nil, nil, newFakeClock().Now, keyPrefix)
	if err != nil {
		t.Fatal(err)
	}
	for range config.DefaultPerPrincipalTool.Burst {
		mustAdmit(t, l, call("alice", "search"))
	}
	mustRefuse(t, l, call("alice", "search"), 1, "60 calls per minute to search per caller")
}

func TestMemoryStaysBounded(t *testing.T) {
	clk := newFakeClock()
	m := newMemory(clk.Now)
	lim := []gcra{{interval: time.Second, burst: 2}}
	const perRound = 1000
	for round := range 100 {
		for i := range perRound {
			ok, _, _, _ := m.Take(context.Background(), []string{fmt.Sprintf("k%d-%d", round, i)}, lim)
			if !ok {
				t.Fatal("a fresh key was refused")
			}
		}
		clk.Advance(time.Second)
	}
	if n := len(m.tat); n > 2*perRound+minSweep {
		t.Fatalf("memory store holds %d keys after 100 rounds of %d short-lived ones", n, perRound)
	}
}

// flakyStore is a store that fails while down is set.
type flakyStore struct {
	store
	down  atomic.Bool
	asked atomic.Int64
}

func (f *flakyStore) Take(ctx context.Context, keys []string, limits []gcra) (bool, time.Duration, int, error) {
	f.asked.Add(1)
	if f.down.Load() {
		return false, 0, 0, errors.New("dial tcp 127.0.0.1:6379: connect: connection refused")
	}
	return f.store.Take(ctx, keys, limits)
}

// TestStoreFailure covers what a failing shared store means, on a fake
// store and clock; TestRedisStopped covers a real Redis going away.
func TestStoreFailure(t *testing.T) {
	for _, mode := range []string{"refuse", "local"} {
		t.Run(mode, func(t *testing.T) {
			clk := newFakeClock()
			var logs logBuffer
			l, err := newLimiter(t.Context(), limitsCfg(&config.Limit{Rate: "1/h", Burst: 2}, nil, nil),
				slog.New(slog.NewTextHandler(&logs, nil)), clk.Now, keyPrefix)
			if err != nil {
				t.Fatal(err)
			}
			shared := &flakyStore{store: l.store}
			l.store = shared
			if mode == "local" {
				l.local = newMemory(clk.Now)
			}
			// failing asserts how a call fares while the store is down.
			failing := func(principal string) {
				t.Helper()
				if mode == "local" {
					mustAdmit(t, l, call(principal, "search"))
					mustAdmit(t, l, call(principal, "search"))
					mustRefuse(t, l, call(principal, "search"), 3600, "to search per caller")
					return
				}
				_, err := l.Admit(t.Context(), call(principal, "search"))
				if perr := pipeline.AsError(err); perr.Code != pipeline.Unavailable {
					t.Fatalf("with the store down, Admit = %v, want UNAVAILABLE", err)
				}
			}

			mustAdmit(t, l, call("alice", "search"))
			shared.down.Store(true)
			failing("bob")
			if n := shared.asked.Load(); n != 2 {
				t.Fatalf("store asked %d times, want 2", n)
			}
			// Within the cooldown, calls do not wait for the store.
			failing("carol")
			failing("dave")
			if n := shared.asked.Load(); n != 2 {
				t.Fatalf("store asked %d times during its cooldown, want still 2", n)
			}
			// After it, one call tries again.
			clk.Advance(storeCooldown)
			failing("erin")
			if n := shared.asked.Load(); n != 3 {
				t.Fatalf("store asked %d times after its cooldown, want 3", n)
			}
			if n := logs.count("rate limits: Redis failed"); n != 1 {
				t.Fatalf("the outage was logged %d times within %v, want once:\n%s", n, storeLogEvery, logs.buf.String())
			}
			// The store is back, and used again after the cooldown.
			shared.down.Store(false)
			clk.Advance(storeCooldown)
			mustAdmit(t, l, call("alice", "search"))
			// alice's burst of two is spent in the store, two seconds in.
			mustRefuse(t, l, call("alice", "search"), 3598, "to search per caller")
			if n := shared.asked.Load(); n != 5 {
				t.Fatalf("store asked %d times once back, want 5", n)
			}
			// A later outage is logged again, with the count of failures.
			clk.Advance(storeLogEvery)
			shared.down.Store(true)
			failing("frank")
			if n := logs.count("rate limits: Redis failed"); n != 2 {
				t.Fatalf("a second outage a minute later was logged %d times in all, want 2", n)
			}
			if logs.count("failures=2") != 1 {
				t.Fatalf("the second log line does not count 2 failures:\n%s", logs.buf.String())
			}
			if len(l.inFlight) != 0 {
				t.Fatal("refused calls kept their in-flight slots")
			}
		})
	}
}

// TestBadTargetLimitRefuses: a target whose own limit cannot be kept is
// refused, never served without a limit.
func TestBadTargetLimitRefuses(t *testing.T) {
	l, _ := memoryMaker(t, nil)
	for _, lim := range []pipeline.Limit{{Calls: 0, Per: time.Minute, Burst: 1}, {Calls: 1, Per: time.Minute}, {Calls: 1, Per: time.Hour, Burst: 1 << 40}} {
		c := withLimit(call("alice", "search_orders"), &lim)
		release, err := l.Admit(t.Context(), c)
		if err == nil {
			release()
			t.Fatalf("Admit with limit %+v admitted the call", lim)
		}
	}
	// The refused calls gave back their in-flight slots.
	mustAdmit(t, l, call("alice", "search_orders"))
}
