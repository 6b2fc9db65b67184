package server

import (
	"context"
	"fmt"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/internal/config"
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
		})
		if err != nil {
			probs.Add([]string{"upstreams", name}, "%v", err)
			continue
		}
		s.upstreams[name] = u
	}
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
