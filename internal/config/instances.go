package config

import (
	"net/netip"
	"strconv"
	"strings"
)

// The settings of several instances serving as one: where their
// short-lived shared state lives, and which proxies in front of them are
// believed about client addresses. Durable shared state lives in
// server.state (PostgreSQL).

// Redis is the Redis that instances share short-lived state through:
// confirmation nonces, single sign-on states, the console's sign-in
// limits, and — unless they name their own redis_url — the rate limits,
// idempotency keys and cache of stores set to redis.
type Redis struct {
	URL string `yaml:"url"`
	// KeyPrefix begins every key Warden writes there (rate limits under
	// KeyPrefix+"rl:", and so on); default DefaultRedisKeyPrefix. Give
	// each deployment sharing one Redis its own.
	KeyPrefix string `yaml:"key_prefix"`
}

// DefaultRedisKeyPrefix begins Warden's keys in Redis.
const DefaultRedisKeyPrefix = "warden:"

// TrustedProxyPrefixes returns server.trusted_proxies as prefixes: a bare
// address is a prefix of one address. Entries that do not parse are
// skipped; the configuration check reports them.
func (s *Server) TrustedProxyPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, p := range s.TrustedProxies {
		if pfx, ok := parseProxy(p); ok {
			out = append(out, pfx)
		}
	}
	return out
}

func parseProxy(s string) (netip.Prefix, bool) {
	s = strings.TrimSpace(s)
	if pfx, err := netip.ParsePrefix(s); err == nil {
		return pfx.Masked(), true
	}
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	return netip.Prefix{}, false
}

// applyInstanceDefaults fills in the key prefix, and points the stores set
// to redis without a URL of their own at server.redis.
func (cfg *Config) applyInstanceDefaults() {
	r := &cfg.Server.Redis
	if r.KeyPrefix == "" {
		r.KeyPrefix = DefaultRedisKeyPrefix
	}
	if r.URL == "" {
		return
	}
	for _, sh := range []struct{ store, url *string }{
		{&cfg.RateLimit.Store, &cfg.RateLimit.RedisURL},
		{&cfg.Idempotency.Store, &cfg.Idempotency.RedisURL},
		{&cfg.Cache.Store, &cfg.Cache.RedisURL},
	} {
		if *sh.store == "redis" && *sh.url == "" {
			*sh.url = r.URL
		}
	}
}

// checkInstances checks server.redis and server.trusted_proxies.
func (c *checker) checkInstances(s *Server) {
	for i, p := range s.TrustedProxies {
		if _, ok := parseProxy(p); !ok {
			c.errorf([]string{"server", "trusted_proxies", strconv.Itoa(i)}, "%q is not an address or CIDR prefix (such as 10.0.0.0/8 or 192.0.2.7)", p)
		}
	}
	if u := s.Redis.URL; u != "" && !strings.HasPrefix(u, "redis://") && !strings.HasPrefix(u, "rediss://") && !strings.HasPrefix(u, "unix://") {
		c.errorf([]string{"server", "redis", "url"}, "must be a redis://, rediss:// or unix:// URL")
	}
}
