package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// State is where Warden keeps durable state: API keys today, later the
// audit log and approvals. SQLite beside the configuration file by default;
// PostgreSQL for several instances.
type State struct {
	SQLite   string `yaml:"sqlite"`
	Postgres string `yaml:"postgres"`
	// Timeouts are the ceilings of the calls to the state store made on a
	// request's behalf.
	Timeouts StateTimeouts `yaml:"timeouts"`
}

// StateTimeouts cap how long a request waits for each state store. A wait
// runs under the request's own deadline, never longer, and at most this
// long; a store that has not answered by then fails the request with
// UNAVAILABLE (HTTP 503 for authentication) and a retry_after, rather than
// holding it.
type StateTimeouts struct {
	// Keys bounds the API-key lookup of each authenticated request.
	Keys time.Duration `yaml:"keys"`
	// Audit bounds the wait of a call for its audit records, and each
	// append of a batch of records.
	Audit time.Duration `yaml:"audit"`
	// Suspensions bounds the check of whether the caller is suspended.
	Suspensions time.Duration `yaml:"suspensions"`
	// Approvals bounds each read or write of an approval request.
	Approvals time.Duration `yaml:"approvals"`
	// Idempotency bounds each read or write of an idempotency entry kept
	// in the state database.
	Idempotency time.Duration `yaml:"idempotency"`
	// Cache bounds each read or write of the result cache (memory or
	// Redis).
	Cache time.Duration `yaml:"cache"`
	// RateLimits bounds each check of the rate-limit store (memory or
	// Redis).
	RateLimits time.Duration `yaml:"rate_limits"`
	// Shared bounds each use of the state instances share for the
	// console and confirmations: a used confirmation or sign-on, a
	// console session, the sign-in limits.
	Shared time.Duration `yaml:"shared"`
}

// TLS serves HTTPS; ClientCA turns on mutual TLS.
type TLS struct {
	Cert     string `yaml:"cert"`
	Key      string `yaml:"key"`
	ClientCA string `yaml:"client_ca"`
}

// Auth says how callers prove who they are. Everything not declared here is
// refused: there is no implicit access.
type Auth struct {
	APIKeys   APIKeys    `yaml:"api_keys"`
	JWT       *JWT       `yaml:"jwt"`
	MTLS      *MTLS      `yaml:"mtls"`
	Anonymous *Principal `yaml:"anonymous"`
	// Stdio is the principal of a stdio client that presents no
	// WARDEN_API_KEY.
	Stdio *Principal `yaml:"stdio"`
}

// APIKeys configures API-key authentication (keys live in server.state).
type APIKeys struct {
	// Disabled turns API keys off; they are on by default.
	Disabled bool `yaml:"disabled"`
	// CacheTTL is how long a verified key is remembered before the state
	// store is asked again: unset is DefaultAPIKeyCacheTTL, 0 asks on every
	// call, at most MaxAPIKeyCacheTTL. A revocation on this instance bites
	// on the next call whatever it is; one made by another process or
	// instance (warden keys revoke, another replica) within CacheTTL.
	CacheTTL *time.Duration `yaml:"cache_ttl"`
}

// Cache is how long a verified key may be remembered (see CacheTTL).
func (a *APIKeys) Cache() time.Duration {
	if a.CacheTTL == nil {
		return DefaultAPIKeyCacheTTL
	}
	return *a.CacheTTL
}

// The bounds of auth.api_keys.cache_ttl. The maximum keeps a revocation
// made elsewhere from taking longer than a minute to bite.
const (
	DefaultAPIKeyCacheTTL = time.Second
	MaxAPIKeyCacheTTL     = time.Minute
)

// JWT configures Warden as an OAuth 2.1 resource server.
type JWT struct {
	Issuer string `yaml:"issuer"`
	// Audience is this server's canonical resource URI; tokens issued for
	// any other audience are refused (no token passthrough).
	Audience string `yaml:"audience"`
	// JWKSURL or JWKSFile provide the issuer's public keys.
	JWKSURL  string `yaml:"jwks_url"`
	JWKSFile string `yaml:"jwks_file"`
	// Algorithms allowed; asymmetric only. Default RS256, PS256, ES256, EdDSA.
	Algorithms       []string      `yaml:"algorithms"`
	MaxTokenLifetime time.Duration `yaml:"max_token_lifetime"`
	ClockSkew        time.Duration `yaml:"clock_skew"`
	Claims           Claims        `yaml:"claims"`
	// AuthorizationServers are advertised in the RFC 9728 metadata;
	// default [issuer].
	AuthorizationServers []string `yaml:"authorization_servers"`
}

// Claims names the token claims that carry principal attributes.
type Claims struct {
	User   string `yaml:"user"`   // default sub
	Tenant string `yaml:"tenant"` // default tenant
	Groups string `yaml:"groups"` // default groups
}

// MTLS maps client certificates to principals.
type MTLS struct {
	Principals []CertPrincipal `yaml:"principals"`
}

// CertPrincipal is the principal of a client certificate whose subject
// common name or a subject alternative name (DNS, email or URI) equals
// Subject.
type CertPrincipal struct {
	Subject   string `yaml:"subject"`
	Principal `yaml:",inline"`
}

// Principal is a principal declared in the configuration.
type Principal struct {
	ID     string   `yaml:"id"`
	Tenant string   `yaml:"tenant"`
	Scopes []string `yaml:"scopes"`
	Groups []string `yaml:"groups"`
}

// Policies hold optional authorization rules beyond scopes.
type Policies struct {
	// Cedar is a file of Cedar policies. Default deny; forbid beats permit.
	Cedar string `yaml:"cedar"`
}

// RateLimits configures call rate limits.
type RateLimits struct {
	// Store is memory (default; one instance) or redis (shared).
	Store    string `yaml:"store"`
	RedisURL string `yaml:"redis_url"`
	// OnStoreError is refuse (default) or local: fall back to in-memory
	// limits while the shared store is unreachable. Never unlimited.
	OnStoreError     string `yaml:"on_store_error"`
	PerPrincipal     *Limit `yaml:"per_principal"`
	PerTool          *Limit `yaml:"per_tool"`
	PerPrincipalTool *Limit `yaml:"per_principal_tool"`
	// MaxConcurrentPerPrincipal caps one principal's calls in flight.
	MaxConcurrentPerPrincipal int `yaml:"max_concurrent_per_principal"`
}

// Limit is a rate with a burst: "60/m" and burst 10 allow 10 calls at
// once, then one a second on average.
type Limit struct {
	Rate  string `yaml:"rate"`
	Burst int    `yaml:"burst"`
}

// Per parses Rate ("N/s", "N/m", "N/h") into a count and a period.
func (l *Limit) Per() (n int, period time.Duration, err error) {
	num, unit, ok := strings.Cut(l.Rate, "/")
	if !ok {
		return 0, 0, fmt.Errorf("rate %q: want N/s, N/m or N/h", l.Rate)
	}
	n, err = strconv.Atoi(strings.TrimSpace(num))
	if err != nil || n <= 0 {
		return 0, 0, fmt.Errorf("rate %q: the count must be a positive integer", l.Rate)
	}
	switch strings.TrimSpace(unit) {
	case "s":
		period = time.Second
	case "m":
		period = time.Minute
	case "h":
		period = time.Hour
	default:
		return 0, 0, fmt.Errorf("rate %q: the unit must be s, m or h", l.Rate)
	}
	return n, period, nil
}

// Default limits, applied where the file sets none.
var (
	DefaultPerPrincipal     = Limit{Rate: "600/m", Burst: 100}
	DefaultPerTool          = Limit{Rate: "6000/m", Burst: 1000}
	DefaultPerPrincipalTool = Limit{Rate: "60/m", Burst: 20}
)

// DefaultMaxConcurrentPerPrincipal caps one principal's calls in flight.
const DefaultMaxConcurrentPerPrincipal = 16

// DefaultMaxTokenLifetime is the longest-lived bearer token accepted.
const DefaultMaxTokenLifetime = 15 * time.Minute

// DefaultClockSkew is the tolerance for exp and nbf.
const DefaultClockSkew = 60 * time.Second

// DefaultAlgorithms are the JWT signature algorithms accepted by default.
var DefaultAlgorithms = []string{"RS256", "PS256", "ES256", "EdDSA"}

// AsymmetricAlgorithms are every algorithm that may be allowed: never none,
// never an HMAC (which would let a public key sign).
var AsymmetricAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// DefaultStateFile is the SQLite state database beside the configuration.
const DefaultStateFile = "warden-state.db"

// Audit configures the audit log, kept in server.state.
type Audit struct {
	// Secret keys the hash chain and the argument hashes: at least 32
	// bytes. With SQLite it defaults to a key file created beside the state
	// database; with PostgreSQL every instance must share it, so it must be
	// set (use ${VAR}).
	Secret string `yaml:"secret"`
	// Instance names this process's chain; default: host name and a random
	// suffix, new at every start.
	Instance string `yaml:"instance"`
	// Sink streams each durable record as a JSON line to stdout or to a
	// file, for a SIEM, in addition to the store.
	Sink string `yaml:"sink"`
	// Durability is when a record counts as stored: DurabilityFsync (the
	// default) once the state database has synced it to disk, so that it
	// survives a power loss; DurabilityOS once it has been handed to the
	// operating system (SQLite synchronous=NORMAL, PostgreSQL
	// synchronous_commit=off), so that it survives a crash of Warden but
	// the newest records may be lost with a crash of the machine.
	Durability string `yaml:"durability"`
	// Spool is the directory that keeps, synced to disk, the outcomes of
	// calls that ran when the store did not take them in time, until they
	// are replayed into it (marked late); each process has a file there.
	// Default: beside the SQLite state file (<state file>.audit-spool), or
	// with PostgreSQL beside the configuration file (warden-audit-spool).
	// Put it on a disk other than the state's to keep outcomes when that
	// one fills.
	Spool string `yaml:"spool"`
	// OrphanAfter is how long an instance may go without a heartbeat in
	// the store before another takes it for dead and closes its open
	// intents (outcome unknown). Default 1m.
	OrphanAfter time.Duration `yaml:"orphan_after"`
}

// DefaultSpoolSuffix, after the SQLite state file's name, and
// DefaultSpoolDir, beside the configuration with PostgreSQL, are the
// default audit.spool.
const (
	DefaultSpoolSuffix = ".audit-spool"
	DefaultSpoolDir    = "warden-audit-spool"
)

// SpoolPath is the audit spool directory, absolute.
func (c *Config) SpoolPath() string {
	switch {
	case c.Audit.Spool != "":
		return c.Resolve(c.Audit.Spool)
	case c.Server.State.Postgres != "":
		return c.Resolve(DefaultSpoolDir)
	case c.Server.State.SQLite != "":
		return c.Resolve(c.Server.State.SQLite) + DefaultSpoolSuffix
	}
	return c.Resolve(DefaultStateFile) + DefaultSpoolSuffix
}

// Values of Audit.Durability.
const (
	DurabilityFsync = "fsync"
	DurabilityOS    = "os"
)

// MinAuditSecret is the shortest audit secret accepted.
const MinAuditSecret = 32

// Anomalies configures rules over the audit stream. Zero turns a rule off.
type Anomalies struct {
	MaxRows                 int    `yaml:"max_rows"`
	MaxDestructivePerMinute int    `yaml:"max_destructive_per_minute"`
	MaxRefusalsPerMinute    int    `yaml:"max_refusals_per_minute"`
	Suspend                 bool   `yaml:"suspend"`
	WebhookURL              string `yaml:"webhook_url"`
}

// Guard configures the output guard for the whole server.
type Guard struct {
	// Emails and Phones also redact email addresses and phone numbers
	// (secrets, payment cards, SSNs and IBANs always are).
	Emails bool `yaml:"emails"`
	Phones bool `yaml:"phones"`
}

// Output is a tool's or resource's output guard policy.
type Output struct {
	// Redact is redact (the default: replace each secret or piece of
	// personal data with a marker) or block (withhold the result).
	Redact string `yaml:"redact"`
	// Allow names fields passed unredacted, such as rows.*.email.
	Allow []string `yaml:"allow"`
	// Injection is flag (the default: strip hidden text, flag instructions
	// addressed to the model) or block (withhold the result).
	Injection string `yaml:"injection"`
	// MaxBytes caps each text block of a result.
	MaxBytes int `yaml:"max_bytes"`
}

// Shared is where state shared by several instances lives: memory (one
// instance) or Redis.
type Shared struct {
	Store    string `yaml:"store"`
	RedisURL string `yaml:"redis_url"`
}

// Idempotency configures at-most-once write calls: a call whose _meta
// carries io.wardenmcp/idempotency_key runs once per principal, tool and
// key; a repeat gets the stored result.
type Idempotency struct {
	Shared `yaml:",inline"`
	// TTL is how long a result is kept for replay; default 24h.
	TTL time.Duration `yaml:"ttl"`
}

// DefaultIdempotencyTTL is how long an idempotent result is kept.
const DefaultIdempotencyTTL = 24 * time.Hour

// Approval says who must approve a call before it runs.
type Approval struct {
	// Groups whose members may approve; Needed of them must (N of M).
	Groups []string `yaml:"groups"`
	// Needed defaults to 1.
	Needed int `yaml:"needed"`
	// TTL is how long a request may wait for its decision and then for its
	// retry; default 1h.
	TTL time.Duration `yaml:"ttl"`
	// DryRun runs the call as a dry run when it is held, so that approvers
	// see what it would change (write tools whose source can dry-run).
	DryRun bool `yaml:"dry_run"`
}

// What a call needs before it runs (RiskPolicy.Require, Tool.Require).
const (
	RequireNone         = "none"         // it runs directly
	RequireConfirmation = "confirmation" // the caller's own confirmation, asked by elicitation
	RequireApproval     = "approval"     // approval by members of named groups
	RequireDryRun       = "dry_run"      // it only ever runs as a dry run
)

// Requirements are the values of Require.
var Requirements = []string{RequireNone, RequireConfirmation, RequireApproval, RequireDryRun}

// RiskPolicy is what a risk tier requires.
type RiskPolicy struct {
	// Require is none, confirmation, approval or dry_run; default approval
	// if Approval is set, else none. With confirmation, a client that
	// cannot be asked (no elicitation) falls back to Approval if set, and
	// is refused otherwise.
	Require  string    `yaml:"require"`
	Approval *Approval `yaml:"approval"`
}

// Approvals configures the approval queue.
type Approvals struct {
	// WebhookURL receives an announcement of each new request.
	WebhookURL string `yaml:"webhook_url"`
	// WebhookFormat is json (default) or slack (an incoming-webhook
	// payload).
	WebhookFormat string `yaml:"webhook_format"`
	// Retention is how long decided, used and expired requests are kept;
	// default 30 days.
	Retention time.Duration `yaml:"retention"`
}

// DefaultApprovalRetention is how long finished approval requests are kept.
const DefaultApprovalRetention = 30 * 24 * time.Hour

// DefaultConsoleSessionTTL bounds a console sign-in.
const DefaultConsoleSessionTTL = 8 * time.Hour

// Console configures the web console at /console on the HTTP transport.
type Console struct {
	Enabled bool `yaml:"enabled"`
	// SessionTTL bounds a sign-in; default 8h.
	SessionTTL time.Duration `yaml:"session_ttl"`
	// OIDC adds single sign-on with an OpenID Connect provider beside
	// sign-in with an API key.
	OIDC *ConsoleOIDC `yaml:"oidc"`
}

// ConsoleOIDC signs console users in with an OpenID Connect provider
// (authorization code flow with PKCE).
type ConsoleOIDC struct {
	// Issuer is the provider's issuer URL; its discovery document is read
	// from Issuer/.well-known/openid-configuration.
	Issuer       string `yaml:"issuer"`
	ClientID     string `yaml:"client_id"`
	ClientSecret string `yaml:"client_secret"`
	// RedirectURL is this console's callback as registered with the
	// provider: https://HOST/console/oidc/callback.
	RedirectURL string `yaml:"redirect_url"`
	// Claims name the ID token claims of the user's id (default sub),
	// tenant (default none) and groups (default groups).
	Claims Claims `yaml:"claims"`
	// Members of ConsoleGroups may sign in (the scope warden.console); those
	// also in KeyGroups may create and revoke API keys (warden.console.keys).
	// A user in none of ConsoleGroups is refused.
	ConsoleGroups []string `yaml:"console_groups"`
	KeyGroups     []string `yaml:"key_groups"`
}

// RiskTiers are the tiers a tool may declare, lowest first.
var RiskTiers = []string{"read", "write", "high", "critical"}

// DefaultApprovalTTL is how long an approval request lives.
const DefaultApprovalTTL = time.Hour
