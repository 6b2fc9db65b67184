package console

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"
)

// Failed sign-ins from one address: a burst of failBurst, then one each
// failEvery. Keys carry 256 random bits, so guessing one is hopeless
// anyway; the limit keeps a guesser slow and the audit log short.
const (
	failBurst  = 10
	failEvery  = 30 * time.Second
	maxTracked = 10000 // addresses, before those back to a full burst are forgotten
)

// Failures counts failed sign-ins by client address (see remoteHost;
// behind a proxy named in server.trusted_proxies, the address the proxy
// vouches for). Allowed reports whether addr may try to sign in now; Add
// counts one failure of addr. An error means the store could not answer,
// and the sign-in is refused. Implementations are safe for concurrent use.
type Failures interface {
	Allowed(ctx context.Context, addr string) (bool, error)
	Add(ctx context.Context, addr string) error
}

var (
	_ Failures = (*memFailures)(nil)
	_ Failures = (*redisFailures)(nil)
)

// addFailure counts a failed sign-in from addr; a store that cannot count
// it is logged, as the sign-in is refused anyway.
func (c *console) addFailure(ctx context.Context, addr string) {
	if err := c.failures.Add(ctx, addr); err != nil {
		c.log.Error("console: a failed sign-in could not be counted", "remote", addr, "err", err)
	}
}

// memFailures counts in this process: the limits of one instance.
type memFailures struct {
	now func() time.Time
	mu  sync.Mutex
	by  map[string]*rate.Limiter
}

func newFailures(now func() time.Time) *memFailures {
	return &memFailures{now: now, by: map[string]*rate.Limiter{}}
}

func (f *memFailures) Allowed(_ context.Context, addr string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.by[addr]
	return !ok || l.TokensAt(f.now()) >= 1, nil
}

func (f *memFailures) Add(_ context.Context, addr string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	l, ok := f.by[addr]
	if !ok {
		if len(f.by) >= maxTracked {
			for a, lim := range f.by {
				if lim.TokensAt(now) >= failBurst {
					delete(f.by, a)
				}
			}
		}
		l = rate.NewLimiter(rate.Every(failEvery), failBurst)
		f.by[addr] = l
	}
	l.AllowN(now, 1)
	return nil
}

// redisFailures counts in Redis, so that every instance sharing it keeps
// one limit per address: a guesser gains nothing from a load balancer
// spreading its attempts. It is GCRA on Redis's own clock: a key holds the
// theoretical arrival time of the address's next failure, in microseconds,
// and expires when it passes.
type redisFailures struct {
	client redis.UniversalClient
	prefix string
}

// NewRedisFailures returns sign-in limits kept in Redis under prefix. It
// does not own client.
func NewRedisFailures(client redis.UniversalClient, prefix string) Failures {
	return &redisFailures{client: client, prefix: prefix}
}

var (
	interval  = failEvery.Microseconds()
	tolerance = (failBurst - 1) * interval // a failure more fits while TAT - now ≤ tolerance
)

// allowedScript returns 1 if one more failure fits: KEYS[1] is the TAT,
// ARGV[1] the tolerance.
var allowedScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat - now <= tonumber(ARGV[1]) then return 1 end
return 0
`)

// addScript counts a failure: KEYS[1] is the TAT, ARGV[1] the interval.
var addScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
tat = tat + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000))
return 1
`)

func (f *redisFailures) Allowed(ctx context.Context, addr string) (bool, error) {
	n, err := allowedScript.Run(ctx, f.client, []string{f.prefix + addr}, tolerance).Int()
	if err != nil {
		return false, fmt.Errorf("reading sign-in limits in Redis: %w", err)
	}
	return n == 1, nil
}

func (f *redisFailures) Add(ctx context.Context, addr string) error {
	if err := addScript.Run(ctx, f.client, []string{f.prefix + addr}, interval).Err(); err != nil {
		return fmt.Errorf("counting a failed sign-in in Redis: %w", err)
	}
	return nil
}
