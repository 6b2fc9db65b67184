package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wardenmcp/warden"
	"github.com/wardenmcp/warden/internal/anomaly"
	"github.com/wardenmcp/warden/internal/approval"
	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/internal/authn"
	"github.com/wardenmcp/warden/internal/cache"
	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/guard"
	"github.com/wardenmcp/warden/internal/idempotency"
	"github.com/wardenmcp/warden/internal/keys"
	"github.com/wardenmcp/warden/internal/observe"
	"github.com/wardenmcp/warden/internal/policy"
	"github.com/wardenmcp/warden/internal/ratelimit"
	"github.com/wardenmcp/warden/internal/state"
	"github.com/wardenmcp/warden/pipeline"
)

// security is what authenticates, authorizes, limits and audits calls,
// built from the configuration before any target is registered.
type security struct {
	local   func(ctx context.Context) (*pipeline.Principal, error)
	policy  pipeline.Policy
	limiter pipeline.Limiter
	audit   *audit.Auditor
	suspend pipeline.Stage
	guard   pipeline.Stage
	metrics *observe.Metrics
	tracer  warden.Tracer

	idempotency, cache, gate pipeline.Stage
	gateOptions              *approval.GateOptions // nil without a risk gate
	redactor                 *guard.Redactor
}

// check reports whether the stages built here can enforce a target's own
// controls: a target whose gate or rate limit cannot be kept is refused,
// never served without them.
func (sec *security) check(sp *pipeline.Spec) error {
	if g := sp.Gate; g != nil {
		if sec.gateOptions == nil {
			return errors.New("its risk policy needs the risk gate, which this server does not run")
		}
		if err := sec.gateOptions.Check(g); err != nil {
			return fmt.Errorf("its risk policy cannot be enforced: %v", err)
		}
	}
	if l := sp.RateLimit; l != nil {
		if err := ratelimit.CheckLimit(*l); err != nil {
			return fmt.Errorf("rate_limit: %v", err)
		}
	}
	return nil
}

// buildAudit opens the audit log: the store, its chain writer and sink.
func (s *Server) buildAudit(ctx context.Context, sec *security, opts *Options, log *slog.Logger) error {
	cfg := s.Config
	secret, err := audit.LoadSecret(cfg)
	if err != nil {
		return err
	}
	// audit.Open reads audit.durability: with os, the store commits
	// without syncing, and the operator is told what that gives up.
	store, err := audit.Open(ctx, cfg)
	if err != nil {
		return err
	}
	if cfg.Audit.Durability == config.DurabilityOS {
		log.Warn("audit.durability is os: audit records are handed to the operating system, not synced to disk, before calls are answered; they survive a crash of Warden, but a crash of the machine may lose the newest")
	}
	// Each batch, and each call's wait for its records, is bounded by the
	// audit ceiling.
	wo := audit.WriterOptions{AppendTimeout: cfg.Server.State.Timeouts.Audit}
	switch sink := cfg.Audit.Sink; sink {
	case "":
	case "stdout":
		if opts.Stdio {
			store.Close()
			return errors.New("sink: stdout carries the protocol over stdio; write the audit stream to a file")
		}
		wo.Sinks = append(wo.Sinks, os.Stdout)
	default:
		f, err := os.OpenFile(cfg.Resolve(sink), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			store.Close()
			return fmt.Errorf("sink: %w", err)
		}
		s.closers = append(s.closers, f)
		wo.Sinks = append(wo.Sinks, f)
	}
	// Outcomes the store does not take in time wait in the spool, in a
	// file named for the instance.
	instance := cfg.Audit.Instance
	if instance == "" {
		instance = audit.NewInstanceID()
	}
	sp, err := audit.OpenSpool(cfg.SpoolPath(), instance)
	if err != nil && cfg.Audit.Spool == "" {
		// The default beside the configuration may be read-only (a mounted
		// ConfigMap): a spool in the temporary directory still keeps
		// outcomes while the process runs, if not across a restart.
		alt := filepath.Join(os.TempDir(), config.DefaultSpoolDir)
		if tsp, terr := audit.OpenSpool(alt, instance); terr == nil {
			log.Warn("audit: the default spool directory cannot be used; spooling to the temporary directory, which may not survive a restart: set audit.spool to a persistent, writable directory",
				"spool", alt, "err", err)
			sp, err = tsp, nil
		}
	}
	if err != nil {
		store.Close()
		return fmt.Errorf("spool: %w (set audit.spool to a writable directory)", err)
	}
	wo.Spool = sp
	w, err := audit.NewWriter(store, secret, instance, wo)
	if err != nil {
		sp.Close()
		store.Close()
		return err
	}
	// Before the first call: the spool is replayed and intents left open
	// by processes that ended are closed; then, in the background, the
	// instance beats and watches for others that stop.
	rec := audit.Recover(ctx, w, audit.RecoverOptions{OrphanAfter: cfg.Audit.OrphanAfter, Log: log})
	// Recovery stops, then the writer flushes into the store, before the
	// store closes.
	s.closers = append(s.closers, closerFunc(func() error {
		rec.Stop()
		return errors.Join(w.Close(), sp.Close(), store.Close())
	}))
	s.auditStore, s.auditSecret, s.auditWriter = store, secret, w
	// Every call needs the state store (keys, audit, suspensions): one
	// that does not answer a query within the readiness deadline — slow,
	// not only down — is unready.
	if p, ok := store.(interface{ Ping(context.Context) error }); ok {
		name := "state store (SQLite)"
		if cfg.Server.State.Postgres != "" {
			name = "state store (PostgreSQL)"
		}
		s.readyChecks = append(s.readyChecks, observe.Named(name, p.Ping))
	}
	sec.metrics.ObserveAudit(w.Stats)
	sec.audit = audit.NewAuditor(w, secret, log)
	// Arguments are redacted before they are stored, like results before
	// they are shown.
	red := sec.redactor
	sec.audit.Redact = func(v any) any {
		out, _ := red.Value(v, nil)
		return out
	}
	return nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func outputPolicy(o *config.Output) pipeline.Output {
	if o == nil {
		return pipeline.Output{}
	}
	return pipeline.Output{Block: o.Redact == "block", Allow: o.Allow, BlockInjection: o.Injection == "block", MaxBytes: o.MaxBytes}
}

// buildAnomalies starts the anomaly rules over the audit stream, and the
// check that refuses suspended principals (always on: an operator may
// suspend by hand).
func (s *Server) buildAnomalies(ctx context.Context, sec *security, log *slog.Logger) error {
	a := s.Config.Anomalies
	store, err := anomaly.OpenStore(ctx, s.Config)
	if err != nil {
		return err
	}
	checked := suspensionsWithin{store, s.Config.Server.State.Timeouts.Suspensions}
	d, err := anomaly.New(ctx, anomaly.Rules{
		MaxRows: a.MaxRows, MaxDestructivePerMinute: a.MaxDestructivePerMinute, MaxRefusalsPerMinute: a.MaxRefusalsPerMinute,
		Suspend: a.Suspend, WebhookURL: a.WebhookURL,
	}, checked, log, &http.Client{Timeout: 10 * time.Second})
	if err != nil {
		store.Close()
		return err
	}
	// The detector closes before its store: it saves pending suspensions.
	s.closers = append([]io.Closer{closerFunc(func() error { return errors.Join(d.Close(), store.Close()) })}, s.closers...)
	sec.audit.Observe = d.Observe
	sec.suspend = d.Stage
	return nil
}

// buildReplay sets up idempotent replay of write calls and the cache of
// read tools. Both key calls by a keyed hash of the validated arguments, so
// that their stores (Redis, possibly shared) never hold argument values.
func (s *Server) buildReplay(ctx context.Context, sec *security, probs *config.Problems) {
	cfg := s.Config
	argsKey := audit.ArgsKey(s.auditSecret)
	argsHash := func(c *pipeline.Call) string {
		b, _ := json.Marshal(c.Args)
		return audit.ArgsHash(argsKey, b)
	}
	idem := cfg.Idempotency
	var st idempotency.Store
	switch idem.Store {
	case "redis":
		client, err := redisClient(idem.RedisURL)
		if err != nil {
			probs.Add([]string{"idempotency", "redis_url"}, "%v", err)
			return
		}
		st = idempotencyWithin{idempotency.NewRedis(client, s.shared.prefix+"idem:"), cfg.Server.State.Timeouts.Idempotency}
		s.readyChecks = append(s.readyChecks, observe.Named("idempotency store (Redis)", pinger(client)))
	case "memory":
		st = idempotency.NewMemory(time.Now, 100_000)
	default: // Warden's state database: results survive restarts
		var err error
		if st, err = state.Open(ctx, cfg, idempotency.OpenPostgres, idempotency.OpenSQLite); err != nil {
			probs.Add([]string{"idempotency", "store"}, "%v", err)
			return
		}
		st = idempotencyWithin{st, cfg.Server.State.Timeouts.Idempotency}
	}
	s.closers = append(s.closers, st)
	sec.idempotency = idempotency.Stage(st, idem.TTL, argsHash)

	cached := false
	for _, t := range cfg.Tools {
		cached = cached || t.CacheTTL > 0
	}
	if !cached {
		return
	}
	var cs cache.Store
	if cfg.Cache.Store == "redis" {
		client, err := redisClient(cfg.Cache.RedisURL)
		if err != nil {
			probs.Add([]string{"cache", "redis_url"}, "%v", err)
			return
		}
		cs = cache.NewRedis(client, s.shared.prefix+"cache:")
		s.readyChecks = append(s.readyChecks, observe.Named("cache (Redis)", pinger(client)))
	} else {
		cs = cache.NewMemory(time.Now, 10_000)
	}
	s.closers = append(s.closers, cs)
	c := cache.New(newCacheWithin(cs, cfg.Server.State.Timeouts.Cache), argsHash)
	sec.cache = c.Stage
	sec.metrics.CacheStats(c.Stats)
}

// buildGate holds calls of tools whose risk tier (or own setting) needs
// approval or confirmation until they are given for exactly that call, and
// makes dry-run-only tools dry-run.
func (s *Server) buildGate(ctx context.Context, sec *security) error {
	cfg := s.Config
	gated, needStore := false, false
	rules := upstreamRules(cfg)
	for name := range cfg.Tools {
		rules = append(rules, cfg.Rule(name))
	}
	for _, r := range rules {
		gated = gated || r.Require != config.RequireNone
		needStore = needStore || r.Approval != nil
	}
	if !gated {
		return nil
	}
	argsKey := audit.ArgsKey(s.auditSecret)
	red := sec.redactor
	redacted := func(c *pipeline.Call) json.RawMessage {
		v, _ := red.Value(c.Args, nil)
		b, _ := json.Marshal(v)
		return b
	}
	o := approval.GateOptions{
		ArgsHash: func(c *pipeline.Call) string {
			b, _ := json.Marshal(c.Args)
			return audit.ArgsHash(argsKey, b)
		},
		Summary: func(c *pipeline.Call) string { return c.Spec.Name + " " + string(redacted(c)) },
		Args:    redacted,
		Secret:  s.auditSecret,
		Nonces:  s.shared.nonces,
	}
	if needStore {
		opened, err := approval.OpenStore(ctx, cfg)
		if err != nil {
			return err
		}
		store := approvalsWithin{opened, cfg.Server.State.Timeouts.Approvals}
		stop := approval.Cleaner(store, cfg.Approvals.Retention, time.Hour, s.log)
		// The cleaner stops before the store closes.
		s.closers = append(s.closers, closerFunc(func() error { stop(); return nil }), store)
		s.approvals = store
		if url := cfg.Approvals.WebhookURL; url != "" {
			o.Notify = approval.NewWebhookFormat(url, cfg.Approvals.WebhookFormat, &http.Client{Timeout: 10 * time.Second})
		}
		o.Store = store
	}
	sec.gate = approval.Gate(o)
	sec.gateOptions = &o
	return nil
}

// redisClient opens a client on url without ever echoing it (it may hold
// a password).
func redisClient(url string) (*redis.Client, error) {
	o, err := redis.ParseURL(url)
	if err != nil {
		return nil, errors.New("not a valid Redis URL")
	}
	// Each command ends with its context, so that the ceilings of
	// server.state.timeouts bound it (go-redis otherwise waits out its own
	// read timeout, and retries).
	o.ContextTimeoutEnabled = true
	return redis.NewClient(o), nil
}

// pinger is a readiness check of a Redis client.
func pinger(c *redis.Client) func(context.Context) error {
	return func(ctx context.Context) error { return c.Ping(ctx).Err() }
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

func (s *Server) buildSecurity(ctx context.Context, opts *Options, log *slog.Logger) (*security, error) {
	cfg := s.Config
	probs := cfg.Problems()
	sec := &security{local: opts.Local}
	a := &authn.Authenticator{}

	if !cfg.Auth.APIKeys.Disabled {
		opened, err := keys.Open(ctx, cfg)
		if err != nil {
			probs.Add([]string{"server", "state"}, "opening the key store: %v", err)
		} else {
			// Every lookup — of an MCP request, a stdio call, the console —
			// is bounded: a key store that does not answer within the
			// ceiling fails the request as "authentication unavailable"
			// (HTTP 503), rather than holding it. The cache sits in front,
			// so that the console's revocations, through s.Keys(), purge the
			// cache this instance authenticates with, and only its misses
			// reach the bounded store.
			store := keys.NewCache(keysWithin{opened, cfg.Server.State.Timeouts.Keys}, cfg.Auth.APIKeys.Cache())
			s.keys = store
			s.closers = append(s.closers, store)
			a.APIKeys = authn.VerifierFunc(func(ctx context.Context, token string) (*pipeline.Principal, time.Time, error) {
				return keys.Authenticate(ctx, store, token)
			})
		}
	}
	if j := cfg.Auth.JWT; j != nil {
		v, err := authn.NewJWT(ctx, j, cfg.Resolve, http.DefaultClient)
		if err != nil {
			probs.Add([]string{"auth", "jwt"}, "%v", err)
		} else {
			a.JWT = v
			s.metadata = v.Metadata(cfg.Scopes())
		}
	}
	if m := cfg.Auth.MTLS; m != nil {
		a.Certs = map[string]*pipeline.Principal{}
		for _, cp := range m.Principals {
			a.Certs[cp.Subject] = principalOf(&cp.Principal, "mtls")
		}
	}
	if an := cfg.Auth.Anonymous; an != nil {
		a.Anonymous = principalOf(an, "anonymous")
	}
	s.authn = a

	if opts.Stdio {
		switch {
		case opts.APIKey != "" && s.keys != nil:
			store, key := s.keys, opts.APIKey
			sec.local = func(ctx context.Context) (*pipeline.Principal, error) {
				p, _, err := keys.Authenticate(ctx, store, key)
				return p, err
			}
			if _, err := sec.local(ctx); err != nil {
				probs.Add([]string{"auth"}, "WARDEN_API_KEY is not a valid key: %v", err)
			}
		case opts.APIKey != "":
			probs.Add([]string{"auth", "api_keys"}, "WARDEN_API_KEY is set but API keys are disabled")
		case cfg.Auth.Stdio != nil:
			p := principalOf(cfg.Auth.Stdio, "stdio")
			sec.local = func(context.Context) (*pipeline.Principal, error) { c := *p; return &c, nil }
		default:
			probs.Add([]string{"auth"}, "a stdio client has no identity: set WARDEN_API_KEY in its environment, or declare auth.stdio with explicit scopes")
		}
	}

	if file := cfg.Policies.Cedar; file != "" {
		pol, err := policy.Load(cfg.Resolve(file))
		if err != nil {
			probs.Add([]string{"policies", "cedar"}, "%v", err)
		} else {
			sec.policy = pol
		}
	}

	sec.metrics = observe.NewMetrics()
	s.metrics = sec.metrics
	if t := cfg.Server.Tracing; t.OTLPEndpoint != "" {
		tr, err := observe.NewTracer(ctx, observe.TraceConfig{OTLPEndpoint: t.OTLPEndpoint, ServiceName: orDefault(t.ServiceName, cfg.Server.Name), SampleRatio: t.SampleRatio})
		if err != nil {
			probs.Add([]string{"server", "tracing"}, "%v", err)
		} else {
			sec.tracer = tr
			s.closers = append(s.closers, closerFunc(func() error { return tr.Shutdown(context.Background()) }))
		}
	}

	// One redactor serves results, audited arguments and approval requests.
	sec.redactor = guard.NewRedactor(guard.Options{Emails: cfg.Guard.Emails, Phones: cfg.Guard.Phones})
	red := sec.redactor
	sec.guard = guard.Stage(red)

	s.buildShared(ctx, log, probs)
	if err := s.buildAudit(ctx, sec, opts, log); err != nil {
		probs.Add([]string{"audit"}, "%v", err)
	} else {
		if err := s.buildAnomalies(ctx, sec, log); err != nil {
			probs.Add([]string{"anomalies"}, "%v", err)
		}
		s.buildReplay(ctx, sec, probs)
		if err := s.buildGate(ctx, sec); err != nil {
			probs.Add([]string{"risk_policies"}, "%v", err)
		}
	}

	lim, err := ratelimit.NewPrefixed(ctx, &cfg.RateLimit, s.shared.prefix+"rl:", log)
	if err != nil {
		probs.Add([]string{"rate_limits"}, "%v", err)
	} else {
		lim.StoreTimeout = cfg.Server.State.Timeouts.RateLimits
		sec.limiter = lim
		if cfg.RateLimit.Store == "redis" && cfg.RateLimit.OnStoreError != "local" {
			// Every call is refused while Redis is down: not ready.
			s.readyChecks = append(s.readyChecks, observe.Named("rate-limit store (Redis)", lim.Ready))
		}
		if c, ok := any(lim).(interface{ Close() error }); ok {
			s.closers = append(s.closers, c)
		}
	}
	return sec, probs.Err()
}

// Audit returns the audit store and the secret its chain is keyed with.
func (s *Server) Audit() (audit.Store, []byte) { return s.auditStore, s.auditSecret }

// Keys returns the API key store, or nil if API keys are disabled.
func (s *Server) Keys() keys.Store { return s.keys }

func principalOf(p *config.Principal, method string) *pipeline.Principal {
	return &pipeline.Principal{ID: p.ID, Tenant: p.Tenant, Scopes: slices.Clone(p.Scopes), Groups: slices.Clone(p.Groups), AuthMethod: method}
}

// TLSConfig returns the HTTPS settings of the configuration, or nil to serve
// plain HTTP. With a client CA, client certificates are verified when
// presented (clients may still authenticate with a bearer token instead).
func (s *Server) TLSConfig() (*tls.Config, error) {
	t := s.Config.Server.HTTP.TLS
	if t == nil {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(s.Config.Resolve(t.Cert), s.Config.Resolve(t.Key))
	if err != nil {
		return nil, fmt.Errorf("server.http.tls: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if t.ClientCA != "" {
		pem, err := os.ReadFile(s.Config.Resolve(t.ClientCA))
		if err != nil {
			return nil, fmt.Errorf("server.http.tls.client_ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("server.http.tls.client_ca: no PEM certificates found")
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return tc, nil
}

// clean passes a value an upstream sends a client outside a result (log
// data, a progress or elicitation message) through the output guard:
// secrets and personal data redacted, hidden text stripped.
func (sec *security) clean(v any) any {
	v, _ = sec.redactor.Value(v, nil) // no field may keep a secret
	v, _ = guard.InspectValue(v)
	return v
}
