package server

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"log/slog"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/console"
	"github.com/wardenmcp/warden/internal/nonce"
	"github.com/wardenmcp/warden/internal/observe"
)

// shared is the state a request may depend on beyond the stores each stage
// opens itself, where every instance serving as one can reach it.
type shared struct {
	// prefix begins every key in Redis (server.redis.key_prefix).
	prefix string
	// redis is server.redis, or nil without it.
	redis *redis.Client
	// nonces remembers used confirmations and single sign-ons: in Redis,
	// else PostgreSQL, else nil (each user's own memory).
	nonces nonce.Store
	// sessions keeps console sessions in the state database (nil without
	// the console); failures counts failed sign-ins in Redis (nil: memory).
	sessions console.SessionStore
	failures console.Failures
}

// buildShared opens the shared stores: those in server.redis, the nonces in
// PostgreSQL without it, and the console's sessions in the state database.
// It warns of state that stays in this process while other state is
// shared, which several instances would each keep on their own.
func (s *Server) buildShared(ctx context.Context, log *slog.Logger, probs *config.Problems) {
	cfg := s.Config
	sh := &s.shared
	sh.prefix = cfg.Server.Redis.KeyPrefix
	if sh.prefix == "" { // a configuration not read by config.Load
		sh.prefix = config.DefaultRedisKeyPrefix
	}
	if u := cfg.Server.Redis.URL; u != "" {
		client, err := redisClient(u)
		if err != nil {
			probs.Add([]string{"server", "redis", "url"}, "%v", err)
			return
		}
		sh.redis = client
		s.closers = append(s.closers, client)
		s.readyChecks = append(s.readyChecks, observe.Named("shared state (Redis)", pinger(client)))
		ceiling := cfg.Server.State.Timeouts.Shared
		sh.nonces = noncesWithin{nonce.NewRedis(client, sh.prefix+"nonce:"), ceiling}
		sh.failures = failuresWithin{console.NewRedisFailures(client, sh.prefix+"signin:"), ceiling}
	} else if cfg.Server.State.Postgres != "" {
		n, err := nonce.Open(ctx, cfg)
		if err != nil {
			probs.Add([]string{"server", "state"}, "opening the store of used confirmations: %v", err)
			return
		}
		sh.nonces = noncesWithin{n, cfg.Server.State.Timeouts.Shared}
		s.closers = append(s.closers, n)
	}
	if cfg.Console.Enabled {
		st, err := console.OpenSessions(ctx, cfg)
		if err != nil {
			probs.Add([]string{"server", "state"}, "opening the console's sessions: %v", err)
			return
		}
		sh.sessions = console.SessionsWithin(st, cfg.Server.State.Timeouts.Shared)
		s.closers = append(s.closers, st)
	}
	if local := s.unshared(); len(local) > 0 {
		log.Warn("several instances would not share some state: this server keeps it in its own memory while other state is shared; run one instance, or move it to Redis (see \"Running several instances\" in the README)",
			"per_instance", strings.Join(local, "; "))
	}
	if cfg.Server.Redis.URL != "" && cfg.Server.State.Postgres == "" {
		log.Warn("server.redis is set but server.state is a SQLite file: API keys, approvals, the audit log and console sessions stay on this machine; set server.state.postgres for several instances")
	}
}

// unshared lists the state kept in this process's memory, if any state is
// shared at all (PostgreSQL or Redis is configured): what a second
// instance would not see.
func (s *Server) unshared() []string {
	cfg := s.Config
	scaled := cfg.Server.State.Postgres != "" || cfg.Server.Redis.URL != "" ||
		cfg.RateLimit.Store == "redis" || cfg.Idempotency.Store == "redis" || cfg.Cache.Store == "redis"
	if !scaled {
		return nil
	}
	var local []string
	if cfg.RateLimit.Store != "redis" {
		local = append(local, "rate limits (rate_limits.store: memory)")
	}
	switch {
	case cfg.Idempotency.Store == "memory":
		local = append(local, "idempotency keys (idempotency.store: memory)")
	case cfg.Idempotency.Store == "state" && cfg.Server.State.Postgres == "":
		local = append(local, "idempotency keys (idempotency.store: state, on SQLite)")
	}
	cached := false
	for _, t := range cfg.Tools {
		cached = cached || t.CacheTTL > 0
	}
	if cached && cfg.Cache.Store != "redis" {
		local = append(local, "cached results (cache.store: memory)")
	}
	if s.shared.nonces == nil {
		local = append(local, "used confirmations and single sign-ons (set server.redis.url, or server.state.postgres)")
	}
	if cfg.Console.Enabled && s.shared.failures == nil {
		local = append(local, "the console's sign-in limits (set server.redis.url)")
	}
	return local
}

// consoleSecret keys the console's sign-in tokens and single sign-on flow
// cookies: derived from the audit secret, which every instance shares.
func consoleSecret(auditSecret []byte) []byte {
	if len(auditSecret) == 0 {
		return nil
	}
	m := hmac.New(sha256.New, auditSecret)
	m.Write([]byte("warden console sign-in"))
	return m.Sum(nil)
}
