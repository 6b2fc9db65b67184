//lint:file-ignore SA1019 the gateway relays sampling and logging, which the protocol still carries.

package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden"
	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/pipeline"
)

// call is one call in flight to the upstream, for the relays: whose
// client asked, and what it may be asked.
type call struct {
	// ctx is the call's: what is relayed to its client is sent in it, so
	// that it travels with the call (on its own stream, over HTTP).
	ctx     context.Context
	session *mcp.ServerSession // nil if the call did not come through a session
	token   any                // the client's progress token, or nil
	caps    *mcp.ClientCapabilities
	up      *mcp.ClientSession // the upstream session it is made on
	seq     uint64             // its order among calls
}

// capabilities is what a server-side request says of its client.
type capabilities interface {
	ClientCapabilities() *mcp.ClientCapabilities
}

// begin notes the call c in flight and returns it, with the progress token
// to send upstream if the client asked for progress. A call served without
// the protocol SDK's request (on the lean path: stateless, no progress
// asked) has its client's capabilities in its _meta.
func (u *Upstream) begin(ctx context.Context, cn *conn, c *pipeline.Call) (*call, string) {
	cl := &call{ctx: ctx, up: cn.sess}
	if req := warden.Request(ctx); req != nil {
		cl.session, _ = req.GetSession().(*mcp.ServerSession)
		if p, ok := req.GetParams().(interface{ GetProgressToken() any }); ok {
			cl.token = p.GetProgressToken()
		}
		if r, ok := req.(capabilities); ok {
			cl.caps = r.ClientCapabilities()
		}
	} else {
		cl.caps = metaCapabilities(c.Meta)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.seq++
	cl.seq = u.seq
	u.calls[cl] = struct{}{}
	var tok string
	if cl.token != nil && cl.session != nil {
		tok = "warden-" + strconv.FormatUint(cl.seq, 10)
		u.progress[tok] = cl
	}
	return cl, tok
}

// metaCapabilities are the client capabilities a 2026-07-28 request
// declares in its _meta (checked well formed before the call was made), or
// none.
func metaCapabilities(meta map[string]any) *mcp.ClientCapabilities {
	caps := new(mcp.ClientCapabilities)
	if m, _ := meta[mcp.MetaKeyClientCapabilities].(map[string]any); len(m) > 0 {
		_ = convert(m, caps)
	}
	return caps
}

// lean reports whether the call c needs nothing of the protocol SDK's
// request, and may be served without it: a stateless 2026-07-28 call that
// asks no progress, on a connection of 2026-07-28 or later (whose input
// requests travel in band, as the call's result), to an upstream whose log
// messages are not forwarded (they would travel on the caller's stream).
// Anything else is the SDK's, which relays it on the caller's connection.
func (u *Upstream) lean(c *pipeline.Call) bool {
	if c.ProtocolVersion < firstStateless || c.SessionID != "" || u.cfg.Logging != "" {
		return false
	}
	if _, ok := c.Meta["progressToken"]; ok {
		return false
	}
	u.mu.Lock()
	cur := u.cur
	u.mu.Unlock()
	return cur == nil || negotiated(cur) >= firstStateless
}

func (u *Upstream) end(cl *call, tok string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.calls, cl)
	delete(u.progress, tok)
}

// deadline leaves the call a margin within its own deadline, so that an
// upstream that hangs is answered UNAVAILABLE before the call times out.
func deadline(ctx context.Context) (context.Context, context.CancelFunc) {
	d, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	margin := min(time.Until(d)/10, time.Second)
	return context.WithDeadline(ctx, d.Add(-margin))
}

// failed turns an error from the upstream into the call's refusal. An
// upstream's own message is not shown: it is untrusted, and may describe
// its internals.
func (u *Upstream) failed(ctx context.Context, what string, err error) error {
	var perr *pipeline.Error
	if errors.As(err, &perr) {
		return perr
	}
	var rpc *jsonrpc.Error
	if errors.As(err, &rpc) {
		switch rpc.Code {
		case jsonrpc.CodeInvalidParams, mcp.CodeMissingRequiredClientCapabilities:
			// The protocol's own refusals reach the client as such, naming
			// the upstream; their data, which may describe the upstream's
			// internals, is dropped, but for the capabilities a call needs.
			return &jsonrpc.Error{Code: rpc.Code, Message: u.from(clip(u.cleanText(rpc.Message))), Data: requiredCapabilities(rpc)}
		case mcp.CodeResourceNotFound:
			return pipeline.Errorf(pipeline.NotFound, "list the resources to see what exists",
				"the upstream server %s has no resource %s", u.name, what)
		}
	}
	u.log.Warn("upstream call failed", "target", what, "err", err)
	u.askProbe()
	retry := time.Second
	if ctx.Err() != nil {
		retry = 5 * time.Second
	}
	return pipeline.Errorf(pipeline.Unavailable, "retry after the time given; if it persists, tell the operator",
		"the upstream server %s did not answer %s", u.name, what).WithRetryAfter(retry)
}

// requiredCapabilities keeps, of an upstream's missing-capability error,
// the capabilities it names that a client can declare to Warden
// (elicitation, sampling), each an object; nil for any other error.
func requiredCapabilities(rpc *jsonrpc.Error) json.RawMessage {
	if rpc.Code != mcp.CodeMissingRequiredClientCapabilities || len(rpc.Data) > 4096 {
		return nil
	}
	var d struct {
		Required map[string]map[string]any `json:"requiredCapabilities"`
	}
	if json.Unmarshal(rpc.Data, &d) != nil {
		return nil
	}
	need := map[string]map[string]any{}
	for _, name := range []string{"elicitation", "sampling"} {
		if c, ok := d.Required[name]; ok {
			need[name] = c
		}
	}
	if len(need) == 0 {
		return nil
	}
	b, _ := json.Marshal(map[string]any{"requiredCapabilities": need})
	return b
}

// clip shortens an upstream's message to one plain line of at most 200
// bytes, without control or invisible characters.
func clip(msg string) string {
	msg = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return -1
		}
		return r
	}, msg)
	if len(msg) > 200 {
		msg = strings.ToValidUTF8(msg[:200], "") + "…"
	}
	return msg
}

// callTool is the handler of the upstream tool name; mirrored says its
// arguments are mirrored in headers (x-mcp-header).
func (u *Upstream) callTool(name string, mirrored bool) pipeline.Handler {
	return func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
		cn, err := u.session(ctx)
		if err != nil {
			return nil, err
		}
		ctx, cancel := deadline(ctx)
		defer cancel()
		cl, tok := u.begin(ctx, cn, c)
		defer u.end(cl, tok)
		if ctx, err = u.credential(ctx, c); err != nil {
			return nil, err
		}
		p := &mcp.CallToolParams{Name: name, Arguments: c.Args, RequestState: c.State, Meta: u.relayedMeta(cn, cl)}
		if tok != "" {
			p.SetProgressToken(tok)
		}
		if p.InputResponses, err = inputResponses(c); err != nil {
			return nil, err
		}
		var out *pipeline.ToolResult
		if u.direct(cn, tok, mirrored) {
			out, err = u.callDirect(ctx, cn, p)
		} else {
			out, err = u.callSDK(ctx, cn, p)
		}
		if err != nil {
			return nil, u.failed(ctx, name, err)
		}
		if err := u.inputRequests(cl, out.InputRequests); err != nil {
			return nil, err
		}
		return &pipeline.Result{Tool: out}, nil
	}
}

// callSDK makes the call p on cn with the go-sdk client, which relays
// what the upstream sends while it runs.
func (u *Upstream) callSDK(ctx context.Context, cn *conn, p *mcp.CallToolParams) (*pipeline.ToolResult, error) {
	res, err := cn.sess.CallTool(ctx, p)
	cn.notes.settle(ctx)
	if err != nil {
		return nil, err
	}
	out := new(pipeline.ToolResult)
	if err := convert(res, out); err != nil {
		return nil, err
	}
	return out, nil
}

// readResource is the handler of the upstream's resources and templates:
// the URI asked for is read upstream.
func (u *Upstream) readResource(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
	cn, err := u.session(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := deadline(ctx)
	defer cancel()
	cl, tok := u.begin(ctx, cn, c)
	defer u.end(cl, tok)
	if ctx, err = u.credential(ctx, c); err != nil {
		return nil, err
	}
	p := &mcp.ReadResourceParams{URI: c.Target, RequestState: c.State, Meta: u.relayedMeta(cn, cl)}
	if p.InputResponses, err = inputResponses(c); err != nil {
		return nil, err
	}
	res, err := cn.sess.ReadResource(ctx, p)
	cn.notes.settle(ctx)
	if err != nil {
		return nil, u.failed(ctx, c.Target, err)
	}
	out := new(pipeline.ResourceResult)
	if err := convert(res, out); err != nil {
		return nil, u.failed(ctx, c.Target, err)
	}
	if err := u.inputRequests(cl, out.InputRequests); err != nil {
		return nil, err
	}
	return &pipeline.Result{Resource: out}, nil
}

// getPrompt is the handler of the upstream prompt name.
func (u *Upstream) getPrompt(name string) pipeline.Handler {
	return func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
		cn, err := u.session(ctx)
		if err != nil {
			return nil, err
		}
		ctx, cancel := deadline(ctx)
		defer cancel()
		cl, tok := u.begin(ctx, cn, c)
		defer u.end(cl, tok)
		if ctx, err = u.credential(ctx, c); err != nil {
			return nil, err
		}
		p := &mcp.GetPromptParams{Name: name, Arguments: map[string]string{}, RequestState: c.State, Meta: u.relayedMeta(cn, cl)}
		for k, v := range c.Args {
			p.Arguments[k] = fmt.Sprint(v)
		}
		if p.InputResponses, err = inputResponses(c); err != nil {
			return nil, err
		}
		res, err := cn.sess.GetPrompt(ctx, p)
		cn.notes.settle(ctx)
		if err != nil {
			return nil, u.failed(ctx, name, err)
		}
		out := new(pipeline.PromptResult)
		if err := convert(res, out); err != nil {
			return nil, u.failed(ctx, name, err)
		}
		if err := u.inputRequests(cl, out.InputRequests); err != nil {
			return nil, err
		}
		return &pipeline.Result{Prompt: out}, nil
	}
}

// relayedMeta is the _meta of a call to an upstream that speaks 2026-07-28
// or later: the client capabilities it declares are those of the caller
// that Warden relays — elicitation, and sampling where the upstream's
// policy allows it; never roots, which Warden does not share — so that
// the upstream asks the caller only what it can answer. Nil for an older
// session, whose capabilities were declared once, as Warden's.
func (u *Upstream) relayedMeta(cn *conn, cl *call) mcp.Meta {
	if negotiated(cn) < firstStateless {
		return nil
	}
	// A map, not mcp.ClientCapabilities, which always declares roots.
	caps := map[string]any{}
	if cl.caps != nil {
		if cl.caps.Elicitation != nil {
			caps["elicitation"] = cl.caps.Elicitation
		}
		if cl.caps.Sampling != nil && u.cfg.Sampling == "allow" {
			caps["sampling"] = cl.caps.Sampling
		}
	}
	return mcp.Meta{mcp.MetaKeyClientCapabilities: caps}
}

// convert re-encodes an SDK result as Warden's: both are the wire shape.
func convert(from, to any) error {
	b, err := json.Marshal(from)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, to)
}

// inputResponses passes the client's answers to a previous round's input
// requests on to the upstream, which asked them.
func inputResponses(c *pipeline.Call) (mcp.InputResponseMap, error) {
	if len(c.Responses) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(c.Responses)
	if err != nil {
		return nil, err
	}
	var m mcp.InputResponseMap
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, pipeline.Errorf(pipeline.InvalidArgument, "answer the input requests as the protocol defines",
			"the answers to the input requests are not well formed")
	}
	return m, nil
}

// inputRequests checks what an upstream asks of the client in band
// (multi round-trip): elicitation reaches the user naming the upstream;
// sampling only where the upstream's policy allows it.
func (u *Upstream) inputRequests(cl *call, reqs map[string]*pipeline.InputRequest) error {
	caps := cl.caps
	if caps == nil {
		caps = &mcp.ClientCapabilities{}
	}
	for _, id := range sortedIDs(reqs) {
		r := reqs[id]
		switch r.Method {
		case "elicitation/create":
			if caps.Elicitation == nil {
				return missingCapability(&mcp.ClientCapabilities{Elicitation: &mcp.ElicitationCapabilities{}})
			}
			if p, ok := r.Params.(map[string]any); ok {
				msg, _ := p["message"].(string)
				p["message"] = u.from(u.cleanText(msg))
				if s, ok := p["requestedSchema"]; ok {
					p["requestedSchema"] = u.clean(s) // its titles and descriptions are shown too
				}
			}
		case "sampling/createMessage":
			if u.cfg.Sampling != "allow" {
				return u.samplingRefused()
			}
			if caps.Sampling == nil {
				return missingCapability(&mcp.ClientCapabilities{Sampling: &mcp.SamplingCapabilities{}})
			}
			if p, ok := r.Params.(map[string]any); ok {
				// What the upstream puts before the model: its messages
				// and system prompt, guarded as its results are.
				if m, ok := p["messages"]; ok {
					p["messages"] = u.clean(m)
				}
				if sp, ok := p["systemPrompt"].(string); ok {
					p["systemPrompt"] = u.cleanText(sp)
				}
			}
		case "roots/list":
			return pipeline.Errorf(pipeline.PermissionDenied, "", "the upstream server %s asked for the client's roots, which Warden does not share", u.name)
		default:
			return pipeline.Errorf(pipeline.Unavailable, "tell the operator", "the upstream server %s asked the client for %q, which Warden does not relay", u.name, r.Method)
		}
	}
	return nil
}

// missingCapability is the protocol's refusal of a call that needs a
// capability the client did not declare (an upstream asked it for input it
// cannot give).
func missingCapability(need *mcp.ClientCapabilities) error {
	data, _ := json.Marshal(mcp.MissingRequiredClientCapabilityData{RequiredCapabilities: need})
	return &jsonrpc.Error{Code: mcp.CodeMissingRequiredClientCapabilities, Message: "the upstream server needs a client capability this client did not declare", Data: data}
}

func sortedIDs(m map[string]*pipeline.InputRequest) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (u *Upstream) samplingRefused() error {
	return pipeline.Errorf(pipeline.PermissionDenied, "ask the operator to set sampling: allow on the upstream if it should",
		"the upstream server %s asked the client's model for a completion (sampling), which its policy refuses", u.name)
}

// from names the upstream in a message shown to the user.
func (u *Upstream) from(msg string) string {
	return "[" + u.name + "] " + msg
}

// clientOptions are the client's: it relays what the upstream sends during
// calls, and lists again when the upstream's lists change. Multi
// round-trip is not handled here: input requests pass to Warden's client.
func (u *Upstream) clientOptions() *mcp.ClientOptions {
	relist := func(context.Context, *mcp.ToolListChangedRequest) { u.askRelist() }
	o := &mcp.ClientOptions{
		Logger:                     u.log,
		Capabilities:               &mcp.ClientCapabilities{},
		MultiRoundTrip:             &mcp.MultiRoundTripOptions{Disabled: true},
		ToolListChangedHandler:     relist,
		PromptListChangedHandler:   func(context.Context, *mcp.PromptListChangedRequest) { u.askRelist() },
		ResourceListChangedHandler: func(context.Context, *mcp.ResourceListChangedRequest) { u.askRelist() },
		ProgressNotificationHandler: func(_ context.Context, r *mcp.ProgressNotificationClientRequest) {
			defer u.noted(r.Session)
			u.relayProgress(r.Params)
		},
		ElicitationHandler:     u.relayElicitation,
		ResourceUpdatedHandler: u.relayUpdated,
	}
	if u.cfg.Sampling == "allow" {
		o.CreateMessageHandler = u.relaySampling
	}
	if u.cfg.Logging != "" {
		o.LoggingMessageHandler = func(_ context.Context, r *mcp.LoggingMessageRequest) {
			defer u.noted(r.Session)
			u.relayLog(r.Session, r.Params)
		}
	}
	return o
}

// relayProgress forwards an upstream's progress to the client that asked
// for it, under the client's own token.
func (u *Upstream) relayProgress(p *mcp.ProgressNotificationParams) {
	tok, _ := p.ProgressToken.(string)
	u.mu.Lock()
	cl := u.progress[tok]
	u.mu.Unlock()
	if cl == nil {
		return
	}
	_ = cl.session.NotifyProgress(cl.ctx, &mcp.ProgressNotificationParams{
		ProgressToken: cl.token, Progress: p.Progress, Total: p.Total, Message: u.cleanText(p.Message),
	})
}

// asking returns the call in flight on the upstream session up whose
// client a request the upstream makes there outside any call's result is
// for: the newest call on a connection of one caller session's own (an
// older protocol generation's), else the one call in flight. With several
// callers' calls in flight it cannot be told whose it is, and nobody is
// asked.
func (u *Upstream) asking(up *mcp.ClientSession) *call {
	u.mu.Lock()
	defer u.mu.Unlock()
	own := false
	for who, c := range u.older {
		if c.sess == up && who != nil {
			own = true
		}
	}
	var found *call
	n := 0
	for cl := range u.calls {
		if cl.up != up || cl.session == nil {
			continue
		}
		n++
		if found == nil || cl.seq > found.seq {
			found = cl
		}
	}
	if n == 1 || (own && n > 0) {
		return found
	}
	return nil
}

// relayElicitation asks the user of the call in flight, naming the
// upstream. Nobody to ask declines.
func (u *Upstream) relayElicitation(ctx context.Context, r *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
	cl := u.asking(r.Session)
	if cl == nil {
		return &mcp.ElicitResult{Action: "decline"}, nil
	}
	p := *r.Params
	p.Message = u.from(u.cleanText(p.Message))
	p.RequestedSchema = u.clean(p.RequestedSchema) // its titles and descriptions are shown too
	return cl.session.Elicit(merge(cl.ctx, ctx), &p)
}

// relaySampling asks the model of the call in flight, if the upstream's
// policy allows sampling at all (else the capability is not offered).
func (u *Upstream) relaySampling(ctx context.Context, r *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
	cl := u.asking(r.Session)
	if cl == nil {
		return nil, u.samplingRefused()
	}
	// What the upstream puts before the model, guarded as its results are.
	p := *r.Params
	p.SystemPrompt = u.cleanText(p.SystemPrompt)
	p.Messages = make([]*mcp.SamplingMessage, len(r.Params.Messages))
	for i, m := range r.Params.Messages {
		if m == nil {
			continue
		}
		c := *m
		if t, ok := c.Content.(*mcp.TextContent); ok {
			tc := *t
			tc.Text = u.cleanText(t.Text)
			c.Content = &tc
		}
		p.Messages[i] = &c
	}
	return cl.session.CreateMessage(merge(cl.ctx, ctx), &p)
}

// relayLog forwards an upstream's log message at or above the configured
// level to the client of the call in flight, naming the upstream.
func (u *Upstream) relayLog(up *mcp.ClientSession, p *mcp.LoggingMessageParams) {
	if slices.Index(config.LogLevels, string(p.Level)) < slices.Index(config.LogLevels, u.cfg.Logging) {
		return
	}
	cl := u.asking(up)
	if cl == nil {
		return
	}
	_ = cl.session.Log(cl.ctx, &mcp.LoggingMessageParams{Level: p.Level, Logger: u.name, Data: u.clean(p.Data)})
}

// clean passes v, which the upstream sends a client outside a result,
// through the output guard (Options.Clean).
func (u *Upstream) clean(v any) any {
	if u.opts.Clean == nil || v == nil {
		return v
	}
	return u.opts.Clean(v)
}

// cleanText is clean for a text.
func (u *Upstream) cleanText(s string) string {
	if s == "" {
		return s
	}
	out, _ := u.clean(s).(string)
	return out
}

// merge returns the call's context, cancelled also when the upstream's
// request (ctx) is.
func merge(call, ctx context.Context) context.Context {
	m, cancel := context.WithCancel(call)
	stop := context.AfterFunc(ctx, cancel)
	context.AfterFunc(m, func() { stop() })
	return m
}
