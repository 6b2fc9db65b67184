package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisStore keeps rate limits in Redis, shared by every Warden instance
// that uses the same server and key prefix.
//
// Each Take is one script, which Redis runs atomically: it reads the
// clock, checks every limit and, only if all admit the call, commits them
// all. The clock is Redis's own (TIME), so instances whose clocks disagree
// still share one limit. Arrival times are kept in whole microseconds and
// intervals are rounded up to one, which can only make a limit stricter.
// Keys expire when their TAT passes, when they are worth nothing.
//
// The keys of one call live in different hash slots, so this store needs a
// single Redis server (or a primary with replicas), not Redis Cluster.
type redisStore struct {
	client *redis.Client
}

// takeScript is GCRA over every key at once, admitting under all or none.
//
// KEYS[i] holds limit i's TAT in microseconds of Redis's clock; ARGV[2i-1]
// is its interval and ARGV[2i] its tolerance (burst × interval), both in
// microseconds. It returns {1, 0, 0} on admission, or {0, wait, i}: limit
// i (from 1) refuses, and would admit the call after wait microseconds; of
// several, the one with the longest wait.
//
// Numbers are Lua doubles: exact, as integers, to 2^53 microseconds, which
// maxTolerance keeps them within. string.format('%.0f') writes them whole;
// Lua's default conversion would round them to 14 digits.
var takeScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local nexts = {}
local wait, which = 0, 0
for i = 1, #KEYS do
	local interval = tonumber(ARGV[2 * i - 1])
	local tolerance = tonumber(ARGV[2 * i])
	local tat = tonumber(redis.call('GET', KEYS[i])) or now
	if tat < now then
		tat = now
	end
	nexts[i] = tat + interval
	local w = nexts[i] - now - tolerance
	if w > wait then
		wait, which = w, i
	end
end
if which > 0 then
	return {0, wait, which}
end
for i = 1, #KEYS do
	redis.call('SET', KEYS[i], string.format('%.0f', nexts[i]))
	redis.call('PEXPIRE', KEYS[i], string.format('%.0f', math.ceil((nexts[i] - now) / 1000)))
end
return {1, 0, 0}
`)

// newRedis returns a store for the Redis at rawURL (redis://, rediss://
// or unix://, with go-redis's query parameters). It does not connect.
//
// Unless the URL says otherwise, the client fails fast: a rate-limit check
// is on every call's path, and a clear refusal (or local limiting) now is
// better than a call held for go-redis's default retries and timeouts.
// Nor does it retry the script: a retry after a lost reply would count the
// call twice.
func newRedis(rawURL string) (*redisStore, error) {
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, urlError(err)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, urlError(err)
	}
	q := u.Query()
	for _, d := range []struct {
		param string
		value *time.Duration
	}{
		{"dial_timeout", &opt.DialTimeout},
		{"read_timeout", &opt.ReadTimeout},
		{"write_timeout", &opt.WriteTimeout},
	} {
		if !q.Has(d.param) {
			*d.value = time.Second
		}
	}
	if !q.Has("max_retries") {
		opt.MaxRetries = -1
	}
	opt.DialerRetries = 1
	// A command also ends with its context: Limiter.StoreTimeout and the
	// call's own deadline bound it.
	opt.ContextTimeoutEnabled = true
	return &redisStore{client: redis.NewClient(opt)}, nil
}

// urlError reports a bad rate_limits.redis_url without the URL, which may
// hold a password.
func urlError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("rate_limits.redis_url: %w", err)
}

func (s *redisStore) ping(ctx context.Context) error {
	return s.client.Ping(ctx).Err()
}

func (s *redisStore) close() error { return s.client.Close() }

func (s *redisStore) Take(ctx context.Context, keys []string, limits []gcra) (bool, time.Duration, int, error) {
	args := make([]any, 0, 2*len(limits))
	for _, l := range limits {
		us := int64((l.interval + time.Microsecond - 1) / time.Microsecond)
		args = append(args, us, us*int64(l.burst))
	}
	r, err := takeScript.Run(ctx, s.client, keys, args...).Int64Slice()
	if err != nil {
		return false, 0, 0, fmt.Errorf("rate limits in Redis: %w", err)
	}
	if len(r) != 3 || r[2] < 0 || int(r[2]) > len(keys) {
		return false, 0, 0, errReply
	}
	if r[0] == 1 {
		return true, 0, -1, nil
	}
	return false, time.Duration(r[1]) * time.Microsecond, int(r[2]) - 1, nil
}

var errReply = errors.New("rate limits in Redis: unexpected reply from the script")
