package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/throttle"
	"github.com/wardenmcp/warden/pipeline"
)

var _ pipeline.Limiter = (*Limiter)(nil)

// Limiter admits calls under three rate limits — per principal×target, per
// principal and per target — and a cap on each principal's calls in flight.
//
// The rate limits are kept by a GCRA store: in memory, or in Redis so that
// several Warden instances share them. A call consumes from the rate limits
// only if every one of them admits it. The in-flight cap is always kept in
// memory, so when Warden is scaled out it applies per instance.
//
// A Limiter is safe for concurrent use.
type Limiter struct {
	perPrincipalTarget rule
	perPrincipal       rule
	perTarget          rule

	store store   // memory or Redis
	local *memory // while Redis is down, with on_store_error local; else nil
	close func() error
	// downUntil is when a failed store is next asked, in nanoseconds since
	// epoch; zero while it answers. Until then calls do not wait for it.
	downUntil atomic.Int64
	epoch     time.Time
	now       func() time.Time
	log       *slog.Logger
	storeLog  throttle.Throttle
	prefix    string

	// StoreTimeout, if positive, bounds each call's wait for the store,
	// within the call's own deadline: a store that has not answered by
	// then counts as failed (see Admit). Set it before the first Admit.
	StoreTimeout time.Duration

	maxInFlight int
	mu          sync.Mutex
	inFlight    map[string]int // by principal ID; absent means zero
}

// rule is one configured limit: n calls per period, in bursts.
type rule struct {
	gcra
	n      int
	period time.Duration
}

// desc describes the rule to a caller: "60 calls per minute".
func (r rule) desc() string {
	unit := map[time.Duration]string{time.Second: "second", time.Minute: "minute", time.Hour: "hour"}[r.period]
	if unit == "" {
		unit = r.period.String()
	}
	calls := " calls per "
	if r.n == 1 {
		calls = " call per "
	}
	return strconv.Itoa(r.n) + calls + unit
}

// Settings fixed here rather than configured.
const (
	// keyPrefix begins every key in Redis.
	keyPrefix = "warden:rl:"
	// storeLogEvery is how often, at most, a failing shared store is
	// logged: an outage must be visible without flooding the log.
	storeLogEvery = time.Minute
	// storeCooldown is how long a failed shared store is left alone before
	// one call tries it again. Meanwhile calls are refused (or limited
	// locally) at once, rather than each waiting for a dial to time out.
	storeCooldown = time.Second
	// concurrencyRetry is the retry_after of a call refused by the
	// in-flight cap. Nothing predicts when a call in flight ends; a second
	// is the shortest honest hint.
	concurrencyRetry = time.Second
	// maxTolerance bounds burst × interval, so that arithmetic on arrival
	// times can overflow neither int64 nanoseconds nor Redis's Lua numbers
	// (doubles, exact to 2^53 microseconds).
	maxTolerance = 100 * 365 * 24 * time.Hour
)

// New returns a Limiter for cfg. A target's own Spec.RateLimit replaces
// cfg.PerPrincipalTool for it.
//
// cfg is normally config's, with defaults applied; limits it leaves nil get
// the same defaults here, so a Limiter is never unlimited. With store redis,
// New connects to cfg.RedisURL; if Redis cannot be reached yet, New logs a
// warning and returns the Limiter anyway, which then refuses calls (or,
// with on_store_error local, limits them in memory) until Redis is back.
// Close releases the connection.
func New(ctx context.Context, cfg *config.RateLimits, log *slog.Logger) (*Limiter, error) {
	return newLimiter(ctx, cfg, log, time.Now, keyPrefix)
}

// NewPrefixed is New with the limits' keys in Redis under prefix rather
// than "warden:rl:", for deployments that share one Redis.
func NewPrefixed(ctx context.Context, cfg *config.RateLimits, prefix string, log *slog.Logger) (*Limiter, error) {
	return newLimiter(ctx, cfg, log, time.Now, prefix)
}

func newLimiter(ctx context.Context, cfg *config.RateLimits, log *slog.Logger, now func() time.Time, prefix string) (*Limiter, error) {
	if cfg == nil {
		cfg = &config.RateLimits{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &Limiter{
		log:         log,
		storeLog:    throttle.Throttle{Every: storeLogEvery, Now: now},
		epoch:       now(),
		now:         now,
		prefix:      prefix,
		maxInFlight: cfg.MaxConcurrentPerPrincipal,
		inFlight:    make(map[string]int),
		close:       func() error { return nil },
	}
	var err error
	if l.perPrincipalTarget, err = newRule("rate_limits.per_principal_tool", cfg.PerPrincipalTool, config.DefaultPerPrincipalTool); err != nil {
		return nil, err
	}
	if l.perPrincipal, err = newRule("rate_limits.per_principal", cfg.PerPrincipal, config.DefaultPerPrincipal); err != nil {
		return nil, err
	}
	if l.perTarget, err = newRule("rate_limits.per_tool", cfg.PerTool, config.DefaultPerTool); err != nil {
		return nil, err
	}
	switch {
	case cfg.MaxConcurrentPerPrincipal == 0:
		l.maxInFlight = config.DefaultMaxConcurrentPerPrincipal
	case cfg.MaxConcurrentPerPrincipal < 0:
		return nil, fmt.Errorf("rate_limits.max_concurrent_per_principal: must be at least 1")
	}

	switch cfg.Store {
	case "", "memory":
		l.store = newMemory(now)
		return l, nil
	case "redis":
	default:
		return nil, fmt.Errorf("rate_limits.store: %q is not memory or redis", cfg.Store)
	}
	switch cfg.OnStoreError {
	case "", "refuse":
	case "local":
		l.local = newMemory(now)
	default:
		return nil, fmt.Errorf("rate_limits.on_store_error: %q is not refuse or local", cfg.OnStoreError)
	}
	rs, err := newRedis(cfg.RedisURL)
	if err != nil {
		return nil, err
	}
	l.store, l.close = rs, rs.close
	if err := rs.ping(ctx); err != nil {
		log.Warn("rate limits: Redis cannot be reached yet; calls are refused or limited locally until it can",
			"on_store_error", cfg.OnStoreError, "err", err)
	}
	return l, nil
}

// newRule checks lim, or def if lim is nil.
func newRule(path string, lim *config.Limit, def config.Limit) (rule, error) {
	if lim == nil {
		lim = &def
	}
	n, period, err := lim.Per()
	if err != nil {
		return rule{}, fmt.Errorf("%s: %w", path, err)
	}
	r, err := ruleOf(pipeline.Limit{Calls: n, Per: period, Burst: lim.Burst})
	if err != nil {
		return rule{}, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// ruleOf checks a limit and makes it a rule.
func ruleOf(lim pipeline.Limit) (rule, error) {
	if lim.Calls < 1 || lim.Per <= 0 {
		return rule{}, fmt.Errorf("a rate needs a positive count and period")
	}
	if lim.Burst < 1 {
		return rule{}, fmt.Errorf("burst must be at least 1")
	}
	interval := lim.Per / time.Duration(lim.Calls)
	if interval < 1 {
		interval = 1
	}
	if lim.Burst > int(maxTolerance/interval) {
		return rule{}, fmt.Errorf("burst %d at %d per %s is too large", lim.Burst, lim.Calls, lim.Per)
	}
	return rule{gcra: gcra{interval: interval, burst: lim.Burst}, n: lim.Calls, period: lim.Per}, nil
}

// CheckLimit reports whether lim can be a target's rate limit.
func CheckLimit(lim pipeline.Limit) error {
	_, err := ruleOf(lim)
	return err
}

// Ready reports whether calls can be admitted: with the store in Redis and
// on_store_error refuse, whether Redis answers a PING within ctx. With
// on_store_error local, calls are limited locally while Redis is down, so
// the Limiter is ready either way.
func (l *Limiter) Ready(ctx context.Context) error {
	rs, ok := l.store.(*redisStore)
	if !ok || l.local != nil {
		return nil
	}
	return rs.ping(ctx)
}

// Close releases the Limiter's connection to a shared store, if any.
func (l *Limiter) Close() error { return l.close() }

// Admit admits c or refuses it with RATE_LIMITED and the time after which
// a retry could succeed. It checks the per principal×target, per principal
// and per target rate limits together, consuming from all of them or none;
// where several refuse, the error names the one that refuses longest (the
// first of those, in that order, on a tie), so retry_after is never too
// early. Then the principal's in-flight cap applies, whose slot is held
// until release is called.
//
// In practice the in-flight slot is taken first, because it is local and
// free to give back: a call refused by the rate limits returns it, and a
// call refused by the cap consumes no rate.
//
// If the shared store fails, or does not answer within StoreTimeout, the
// call is refused with UNAVAILABLE or, with on_store_error local, limited
// by this instance's memory alone; so are the calls of the following
// second, after which one call tries the store again.
func (l *Limiter) Admit(ctx context.Context, c *pipeline.Call) (release func(), err error) {
	p := c.Principal
	if p == nil {
		return nil, pipeline.Errorf(pipeline.PermissionDenied, "authenticate, then retry",
			"the call has no authenticated principal, so it cannot be rate-limited and is refused")
	}
	if !l.acquire(p.ID) {
		return nil, pipeline.Errorf(pipeline.RateLimited, "wait for your other calls to finish, then retry",
			"too many calls in flight: at most %d at once per caller", l.maxInFlight).WithRetryAfter(concurrencyRetry)
	}

	name := c.Spec.Name
	pt := l.perPrincipalTarget
	if o := c.Spec.RateLimit; o != nil {
		r, err := ruleOf(*o)
		if err != nil {
			// Targets are checked when they are registered; a limit that
			// still cannot be kept refuses the call rather than lifting it.
			l.releaseSlot(p.ID)
			return nil, fmt.Errorf("rate limit of %s: %w", name, err)
		}
		pt = r
	}
	// Keys name the method too: a tool and a prompt may share a name.
	method, target, principal := c.Spec.Method.String(), escapeKey(name), escapeKey(p.ID)
	a := &admission{l: l, id: p.ID,
		keys: [3]string{
			l.prefix + "pt:" + method + ":" + target + ":" + principal,
			l.prefix + "p:" + principal,
			l.prefix + "t:" + method + ":" + target,
		},
		limits: [3]gcra{pt.gcra, l.perPrincipal.gcra, l.perTarget.gcra},
	}

	ok, wait, which, err := l.take(ctx, a.keys[:], a.limits[:])
	if err != nil || !ok {
		l.releaseSlot(p.ID)
		if err != nil {
			return nil, err
		}
		var msg string
		switch which {
		case 0:
			msg = pt.desc() + " to " + name + " per caller"
		case 1:
			msg = l.perPrincipal.desc() + " per caller"
		default:
			msg = l.perTarget.desc() + " to " + name + " from all callers"
		}
		return nil, (&pipeline.Error{
			Code:       pipeline.RateLimited,
			Message:    "rate limit reached: " + msg,
			Suggestion: "wait retry_after seconds before calling again, and spread calls out",
		}).WithRetryAfter(wait)
	}
	return a.release, nil
}

// admission is one call's way through Admit, in one allocation: the keys
// and limits it is taken under, and the release of its in-flight slot.
type admission struct {
	l      *Limiter
	id     string
	keys   [3]string
	limits [3]gcra
	done   atomic.Bool
}

// release gives the call's in-flight slot back, once however often it is
// called.
func (a *admission) release() {
	if a.done.CompareAndSwap(false, true) {
		a.l.releaseSlot(a.id)
	}
}

// take asks the store, and decides what a store failure means.
func (l *Limiter) take(ctx context.Context, keys []string, limits []gcra) (bool, time.Duration, int, error) {
	if l.ask() {
		sctx, cancel := ctx, context.CancelFunc(func() {})
		if _, inMemory := l.store.(*memory); l.StoreTimeout > 0 && !inMemory {
			// Only a shared store can keep a call waiting; memory answers
			// at once, and a timer per call would be all cost.
			sctx, cancel = context.WithTimeout(ctx, l.StoreTimeout)
		}
		ok, wait, which, err := l.store.Take(sctx, keys, limits)
		cancel()
		if err == nil {
			l.downUntil.Store(0)
			return ok, wait, which, nil
		}
		if ctx.Err() != nil {
			// The caller gave up; that says nothing about the store.
			return false, 0, 0, ctx.Err()
		}
		l.downUntil.Store(int64(l.now().Sub(l.epoch) + storeCooldown))
		l.storeLog.Do(func(failures int) {
			if l.local == nil {
				l.log.Error("rate limits: Redis failed; refusing calls until it answers (on_store_error: refuse)",
					"err", err, "failures", failures)
			} else {
				l.log.Warn("rate limits: Redis failed; limiting calls in this instance's memory until it answers (on_store_error: local)",
					"err", err, "failures", failures)
			}
		})
	}
	if l.local == nil {
		return false, 0, 0, pipeline.Errorf(pipeline.Unavailable,
			"retry shortly; if this persists, tell the operator that Warden cannot reach Redis",
			"the shared rate-limit store (Redis) cannot be reached, so the call is refused").WithRetryAfter(storeCooldown)
	}
	return l.local.Take(ctx, keys, limits)
}

// ask reports whether to ask the store: it answered last time, or it
// failed and its cooldown is over, and this is the one call to try it.
func (l *Limiter) ask() bool {
	until := l.downUntil.Load()
	if until == 0 {
		return true
	}
	now := int64(l.now().Sub(l.epoch))
	return now >= until && l.downUntil.CompareAndSwap(until, now+int64(storeCooldown))
}

func (l *Limiter) acquire(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.inFlight[id]
	if n >= l.maxInFlight {
		return false
	}
	l.inFlight[id] = n + 1
	return true
}

func (l *Limiter) releaseSlot(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := l.inFlight[id]; n > 1 {
		l.inFlight[id] = n - 1
	} else {
		delete(l.inFlight, id) // keep the map as small as the set of callers in flight
	}
}

// escapeKey makes s safe as one component of a ':'-separated key, so that
// keys of different principals and targets never collide.
func escapeKey(s string) string {
	if !strings.ContainsAny(s, "%:") {
		return s
	}
	return keyEscaper.Replace(s)
}

var keyEscaper = strings.NewReplacer("%", "%25", ":", "%3A")
