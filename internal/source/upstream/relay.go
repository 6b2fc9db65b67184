package upstream

import (
	"context"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden/pipeline"
)

// Ref returns the upstream's own name for the target t if this upstream
// serves it (a prompt's name, a resource's URI, a template's URI
// template).
func (u *Upstream) Ref(t *pipeline.Target) (string, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := u.served[key{t.Spec.Method, t.Spec.Name}]
	if s == nil {
		return "", false
	}
	return s.ref, true
}

// Complete asks the upstream to complete an argument of its prompt or
// resource template ref (its own name), for a caller of protocol version
// version. The caller's authority over the target is checked before.
func (u *Upstream) Complete(ctx context.Context, version string, who *mcp.ServerSession, p *mcp.CompleteParams, ref string) (*mcp.CompleteResult, error) {
	cn, err := u.sessionFor(ctx, version, who)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, u.cfg.Timeout)
	defer cancel()
	q := *p
	r := *p.Ref
	if r.Type == "ref/prompt" {
		r.Name = ref
	} else {
		r.URI = ref
	}
	q.Ref = &r
	q.Meta = nil
	res, err := cn.sess.Complete(ctx, &q)
	if err != nil {
		return nil, u.failed(ctx, "completion of "+ref, err)
	}
	return res, nil
}

// Subscribe subscribes the caller who to the upstream resource uri, for a
// caller of protocol version version: the upstream is asked once per
// connection, however many callers subscribe. The caller's authority over
// the resource is checked before.
func (u *Upstream) Subscribe(ctx context.Context, version, uri string, who *mcp.ServerSession) error {
	cn, err := u.sessionFor(ctx, version, who)
	if err != nil {
		return err
	}
	u.mu.Lock()
	n := len(u.subs[cn][uri])
	u.mu.Unlock()
	if n == 0 {
		ctx, cancel := context.WithTimeout(ctx, u.cfg.Timeout)
		defer cancel()
		if err := cn.sess.Subscribe(ctx, &mcp.SubscribeParams{URI: uri}); err != nil {
			return u.failed(ctx, uri, err)
		}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.subs[cn] == nil {
		u.subs[cn] = map[string]map[*mcp.ServerSession]bool{}
	}
	if u.subs[cn][uri] == nil {
		u.subs[cn][uri] = map[*mcp.ServerSession]bool{}
	}
	u.subs[cn][uri][who] = true
	return nil
}

// Unsubscribe ends the subscription of the caller who to uri; the
// upstream is told when the last caller on its connection unsubscribes. A
// caller who did not subscribe changes nothing, and opens no connection.
func (u *Upstream) Unsubscribe(ctx context.Context, uri string, who *mcp.ServerSession) error {
	u.mu.Lock()
	var cn *conn
	for c, uris := range u.subs {
		if uris[uri][who] {
			cn = c
		}
	}
	if cn == nil {
		u.mu.Unlock()
		return nil
	}
	subs := u.subs[cn][uri]
	last := subs[who] && len(subs) == 1
	delete(subs, who)
	if len(subs) == 0 {
		delete(u.subs[cn], uri)
	}
	u.mu.Unlock()
	if !last {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, u.cfg.Timeout)
	defer cancel()
	if err := cn.sess.Unsubscribe(ctx, &mcp.UnsubscribeParams{URI: uri}); err != nil {
		return u.failed(ctx, uri, err)
	}
	return nil
}

// relayUpdated tells the subscribed clients that the upstream says uri
// changed.
func (u *Upstream) relayUpdated(ctx context.Context, r *mcp.ResourceUpdatedNotificationRequest) {
	if u.opts.Updated != nil && r.Params != nil {
		u.opts.Updated(ctx, r.Params.URI)
	}
}
