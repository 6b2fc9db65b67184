package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/observe"
	"github.com/wardenmcp/warden/internal/pin"
	"github.com/wardenmcp/warden/internal/source/upstream"
	"github.com/wardenmcp/warden/internal/state"
	"github.com/wardenmcp/warden/pipeline"
)

// openUpstreams connects to every upstream MCP server the configuration
// declares and registers its targets, through the same spec-building as
// declared tools. An upstream that cannot be reached yet is no problem:
// its targets come when it does, and /readyz names it meanwhile.
func (s *Server) openUpstreams(ctx context.Context, probs *config.Problems, sec *security) {
	if len(s.Config.Upstreams) == 0 {
		return
	}
	pins, err := s.openPins(ctx)
	if err != nil {
		probs.Add([]string{"upstreams"}, "the pins of upstream definitions cannot be kept: %v", err)
		return
	}
	// Read before the first listings, so that a decision made while they
	// run is followed too.
	f := &pinFollower{store: s.pins, upstreams: s.upstreams, log: s.log, done: make(chan struct{})}
	f.seen, err = s.pins.Versions(ctx)
	if err != nil {
		s.log.Warn("the pins cannot be read; decisions take effect at each upstream's next listing until they can", "err", err)
	}
	for _, name := range config.SortedKeys(s.Config.Upstreams) {
		u, err := upstream.Open(ctx, name, s.Config.Upstreams[name], upstream.Options{
			Catalog:  s.Server,
			ToolSpec: specOf,
			Rule:     s.Config.RuleOf,
			Check:    sec.check,
			Pins:     pins,
			Logger:   s.log,
			Updated: func(ctx context.Context, uri string) {
				_ = s.Server.MCP().ResourceUpdated(ctx, &mcp.ResourceUpdatedNotificationParams{URI: uri})
			},
			Clean: sec.clean,
		})
		if err != nil {
			probs.Add([]string{"upstreams", name}, "%v", err)
			continue
		}
		s.upstreams[name] = u
	}
	sec.metrics.ObserveUpstreams(s.upstreamStats)
	var fctx context.Context
	fctx, f.stop = context.WithCancel(context.WithoutCancel(ctx))
	go f.run(fctx)
	// Stopped before the store it reads is closed.
	s.closers = append([]io.Closer{f}, s.closers...)
	// A decision made in the console, in this process, is followed at once.
	s.pins = &decidingStore{Store: s.pins, decided: f.relist}
}

// pinPoll is how often the pins are read for decisions made elsewhere.
const pinPoll = 2 * time.Second

// pinFollower has an upstream listed again, and its listing checked
// against the pins, as soon as the decisions on its pins change — an
// operator's approval or rejection by the CLI or the console of any
// instance, or a change another instance noticed — rather than at the
// upstream's next list_ttl: every instance polls a digest of the pins
// (cheap: no bodies), so that it works across processes and instances.
type pinFollower struct {
	store     pin.Store
	upstreams map[string]*upstream.Upstream // not changed once opened
	log       *slog.Logger
	seen      map[string]string // the last digests read
	stop      context.CancelFunc
	done      chan struct{}
}

func (f *pinFollower) run(ctx context.Context) {
	defer close(f.done)
	tick := time.NewTicker(pinPoll)
	defer tick.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now, err := f.store.Versions(ctx)
		if err != nil {
			if !failing && ctx.Err() == nil {
				f.log.Warn("the pins cannot be read; decisions take effect at each upstream's next listing until they can", "err", err)
			}
			failing = true
			continue
		}
		failing = false
		for name := range f.upstreams {
			if now[name] != f.seen[name] {
				f.relist(name)
			}
		}
		f.seen = now
	}
}

// relist has the upstream name listed again, if it is one of the server's.
func (f *pinFollower) relist(name string) {
	if u := f.upstreams[name]; u != nil {
		u.Relist()
	}
}

// Close stops the polling and waits for it.
func (f *pinFollower) Close() error {
	f.stop()
	<-f.done
	return nil
}

// decidingStore is the pin store as the console decides with it: a
// decision it stores has its upstream listed again at once.
type decidingStore struct {
	pin.Store
	decided func(upstream string)
}

func (d *decidingStore) Update(ctx context.Context, upstream string, fn func([]pin.Pin) ([]pin.Pin, []*audit.Record, error)) ([]pin.Event, error) {
	events, err := d.Store.Update(ctx, upstream, fn)
	if err == nil {
		d.decided(upstream)
	}
	return events, err
}

// upstreamRules are the rules upstream tools may turn out to have: those
// of every tier (a tool's tier comes with its listing), and those of the
// tools the configuration overrides.
func upstreamRules(cfg *config.Config) []config.Rule {
	if len(cfg.Upstreams) == 0 {
		return nil
	}
	var rules []config.Rule
	for _, tier := range config.RiskTiers {
		rules = append(rules, cfg.RuleOf("", tier, "", nil))
	}
	for _, u := range cfg.Upstreams {
		for _, t := range u.Tools {
			if t == nil {
				continue
			}
			for _, tier := range config.RiskTiers {
				rules = append(rules, cfg.RuleOf("", tier, t.Require, t.Approval))
			}
		}
	}
	return rules
}

// openPins opens the pins of upstream definitions in the state store, and
// returns the check every listing of an upstream passes before anything of
// it is served. Pin events are written to the audit log.
//
// The guard audits a listing's events inside the transaction that stores
// its pins; with SQLite, the audit log is in the same database, whose one
// writer is that transaction. So the events are collected, and written
// once the pins are stored: a listing whose events cannot be audited is
// not served (the check fails), though its pins are kept.
func (s *Server) openPins(ctx context.Context) (upstream.PinFunc, error) {
	store, err := state.Open(ctx, s.Config, pin.OpenPostgres, pin.OpenSQLite)
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, store)
	s.pins = store
	return func(ctx context.Context, name string, p config.Pinning, defs []upstream.Definition) ([]upstream.Verdict, error) {
		var events []*audit.Record
		guard := pin.NewGuard(store, func(_ context.Context, r *audit.Record) error {
			events = append(events, r)
			return nil
		})
		pd := make([]pin.Definition, len(defs))
		for i, d := range defs {
			pd[i] = pin.Definition{Upstream: name, Kind: pin.Kind(d.Kind), Name: d.Name, Body: d.Body}
		}
		vs, err := guard.Check(ctx, name, pin.Policy{NewTargets: p.NewTargets, Poisoned: p.Poisoned, MaxDescription: p.MaxDescription}, pd)
		if err != nil {
			return nil, err
		}
		for _, r := range events {
			if s.auditWriter == nil {
				break
			}
			if err := s.auditWriter.Write(ctx, r); err != nil {
				return nil, fmt.Errorf("auditing %s of %s: %w", r.Method, r.Target, err)
			}
		}
		out := make([]upstream.Verdict, len(vs))
		for i, v := range vs {
			out[i] = upstream.Verdict{Serve: v.Serve, Reason: v.Reason}
		}
		return out, nil
	}, nil
}

// relayOptions are the protocol features relayed to upstreams, where the
// configuration declares any: completion of their prompts' and resource
// templates' arguments, and subscriptions to their resources. Each is
// authorized as the lists are: the caller must be able to see the target
// it names, or it is told there is none.
func (s *Server) relayOptions() *mcp.ServerOptions {
	if len(s.Config.Upstreams) == 0 {
		return nil
	}
	return &mcp.ServerOptions{
		CompletionHandler:  s.complete,
		SubscribeHandler:   s.subscribe,
		UnsubscribeHandler: s.unsubscribe,
	}
}

// owner returns the upstream that serves t, with its own name for it.
func (s *Server) owner(t *pipeline.Target) (*upstream.Upstream, string) {
	for _, name := range config.SortedKeys(s.upstreams) {
		if ref, ok := s.upstreams[name].Ref(t); ok {
			return s.upstreams[name], ref
		}
	}
	return nil, ""
}

func (s *Server) complete(ctx context.Context, req *mcp.CompleteRequest) (*mcp.CompleteResult, error) {
	ref := req.Params.Ref
	key := "prompt:" + ref.Name
	if ref.Type == "ref/resource" {
		key = "template:" + ref.URI
	}
	t := s.Server.Visible(ctx, req, key)
	if t == nil {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf("there is no %s to complete", key)}
	}
	u, name := s.owner(t)
	if u == nil {
		// Warden's own prompts and templates offer no completions.
		return &mcp.CompleteResult{Completion: mcp.CompletionResultDetails{Values: []string{}}}, nil
	}
	// Judged as a use of the prompt or template with the arguments given
	// so far and the one being completed.
	args := map[string]any{}
	if c := req.Params.Context; c != nil {
		for k, v := range c.Arguments {
			args[k] = v
		}
	}
	if a := req.Params.Argument; a.Name != "" {
		args[a.Name] = a.Value
	}
	if err := s.Server.Permits(ctx, req, t, ref.Name+ref.URI, args); err != nil {
		return nil, err
	}
	return u.Complete(ctx, req.ProtocolVersion(), req.Session, req.Params, name)
}

func (s *Server) subscribe(ctx context.Context, req *mcp.SubscribeRequest) error {
	uri := req.Params.URI
	t := s.Server.Visible(ctx, req, "resource:"+uri)
	if t == nil {
		return &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf("there is no resource %q to subscribe to", uri)}
	}
	u, name := s.owner(t)
	if u == nil {
		return &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf("the resource %q sends no updates", uri)}
	}
	// Judged as a read of the resource: who may not read it may not
	// follow its changes either.
	if err := s.Server.Permits(ctx, req, t, uri, nil); err != nil {
		return err
	}
	return u.Subscribe(ctx, req.ProtocolVersion(), name, req.Session)
}

// unsubscribe ends the caller's subscription wherever it is: a resource
// quarantined or removed since is still unsubscribed from.
func (s *Server) unsubscribe(ctx context.Context, req *mcp.UnsubscribeRequest) error {
	for _, name := range config.SortedKeys(s.upstreams) {
		if err := s.upstreams[name].Unsubscribe(ctx, req.Params.URI, req.Session); err != nil {
			return err
		}
	}
	return nil
}

// upstreamStats is what the metrics show of each upstream, in name order.
func (s *Server) upstreamStats() []observe.UpstreamStats {
	out := make([]observe.UpstreamStats, 0, len(s.upstreams))
	for _, name := range config.SortedKeys(s.upstreams) {
		u := s.upstreams[name]
		st := u.Stats()
		up := u.Ready(context.Background()) == nil // reads the upstream's state; asks nothing
		out = append(out, observe.UpstreamStats{Name: name, Up: up, Connections: st.Connections, Served: st.Served, Quarantined: st.Quarantined})
	}
	return out
}
