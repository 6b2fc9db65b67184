package upstream

import (
	"context"
	"maps"
	"slices"
	"time"

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
	for i, v := range res.Completion.Values {
		res.Completion.Values[i] = u.cleanText(v) // the upstream's text, for the model
	}
	return res, nil
}

// Subscribe subscribes the caller who to the upstream resource uri, for a
// caller of protocol version version: the upstream is asked once per
// connection, however many callers subscribe. The caller's authority over
// the resource is checked before. The subscription lasts until the caller
// unsubscribes or its session ends: when the upstream connection it was
// made on ends, it is made again on the next (restore).
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
		u.subs[cn] = map[string]map[*mcp.ServerSession]string{}
	}
	if u.subs[cn][uri] == nil {
		u.subs[cn][uri] = map[*mcp.ServerSession]string{}
	}
	u.subs[cn][uri][who] = version
	if who != nil && !u.callers[who] {
		u.callers[who] = true
		go func() {
			_ = who.Wait()
			u.forget(who)
		}()
	}
	return nil
}

// Unsubscribe ends the subscription of the caller who to uri; the
// upstream is told when the last caller on its connection unsubscribes. A
// caller who did not subscribe changes nothing, and opens no connection.
func (u *Upstream) Unsubscribe(ctx context.Context, uri string, who *mcp.ServerSession) error {
	u.mu.Lock()
	u.dropLost(uri, who)
	var last *conn
	for cn := range u.subs {
		if u.dropOn(cn, uri, who) {
			last = cn
		}
	}
	u.mu.Unlock()
	if last == nil {
		return nil
	}
	if err := u.unsubscribeOn(ctx, last, uri); err != nil {
		return u.failed(ctx, uri, err)
	}
	return nil
}

// unsubscribeOn tells the upstream on cn that nobody follows uri there any
// longer, within its timeout.
func (u *Upstream) unsubscribeOn(ctx context.Context, cn *conn, uri string) error {
	ctx, cancel := context.WithTimeout(ctx, u.cfg.Timeout)
	defer cancel()
	return cn.sess.Unsubscribe(ctx, &mcp.UnsubscribeParams{URI: uri})
}

// dropOn removes who from the subscribers of uri on cn, and reports
// whether it was the last of them there. u.mu is held.
func (u *Upstream) dropOn(cn *conn, uri string, who *mcp.ServerSession) bool {
	subs := u.subs[cn][uri]
	if _, ok := subs[who]; !ok {
		return false
	}
	if delete(subs, who); len(subs) > 0 {
		return false
	}
	delete(u.subs[cn], uri)
	if !u.subscribedLocked(uri) {
		delete(u.updated, uri)
	}
	return true
}

// keepLost notes that who, of protocol version version, is to be
// subscribed to uri again; dropLost that it is not. u.mu is held.
func (u *Upstream) keepLost(uri string, who *mcp.ServerSession, version string) {
	if u.lost[uri] == nil {
		u.lost[uri] = map[*mcp.ServerSession]string{}
	}
	u.lost[uri][who] = version
}

func (u *Upstream) dropLost(uri string, who *mcp.ServerSession) {
	if delete(u.lost[uri], who); len(u.lost[uri]) == 0 {
		delete(u.lost, uri)
	}
}

// forget ends every subscription of the caller who, whose session ended:
// the upstream is told where it was the last subscriber.
func (u *Upstream) forget(who *mcp.ServerSession) {
	type ended struct {
		cn  *conn
		uri string
	}
	var ends []ended
	u.mu.Lock()
	delete(u.callers, who)
	for uri := range u.lost {
		u.dropLost(uri, who)
	}
	for cn, uris := range u.subs {
		for uri := range uris {
			if u.dropOn(cn, uri, who) {
				ends = append(ends, ended{cn, uri})
			}
		}
	}
	u.mu.Unlock()
	for _, e := range ends {
		_ = u.unsubscribeOn(u.ctx, e.cn, e.uri)
	}
}

// orphan keeps the subscriptions made on the connection c, which ended,
// for restore, but those of callers whose sessions ended too.
func (u *Upstream) orphan(c *conn) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for uri, subs := range u.subs[c] {
		for who, version := range subs {
			if who != nil && !u.callers[who] {
				continue
			}
			u.keepLost(uri, who, version)
		}
	}
	delete(u.subs, c)
}

// restoreRetry is how often subscriptions that could not be made again
// are retried while the upstream is connected.
const restoreRetry = 5 * time.Second

// askResub asks serve to make the lost subscriptions again.
func (u *Upstream) askResub() {
	select {
	case u.resub <- struct{}{}:
	default:
	}
}

// restore subscribes again, in the background, the callers whose upstream
// connection ended, to the resources still served unquarantined; a
// resource removed or quarantined since is not subscribed to again. What
// fails stays lost, and is retried.
func (u *Upstream) restore() {
	u.mu.Lock()
	if u.restoring || len(u.lost) == 0 {
		u.mu.Unlock()
		return
	}
	u.restoring = true
	lost := u.lost
	u.lost = map[string]map[*mcp.ServerSession]string{}
	u.mu.Unlock()
	go func() {
		defer func() {
			u.mu.Lock()
			u.restoring = false
			u.mu.Unlock()
		}()
		for _, uri := range slices.Sorted(maps.Keys(lost)) {
			if !u.servesResource(uri) {
				u.log.Warn("a subscription is not made again: the resource is no longer served", "uri", uri)
				continue
			}
			for who, version := range lost[uri] {
				u.mu.Lock()
				gone := who != nil && !u.callers[who]
				u.mu.Unlock()
				if gone || u.ctx.Err() != nil {
					continue
				}
				if err := u.Subscribe(u.ctx, version, uri, who); err != nil {
					u.log.Warn("a subscription could not be made again; retrying", "uri", uri, "err", err)
					u.mu.Lock()
					if u.callers[who] || who == nil {
						u.keepLost(uri, who, version)
					}
					u.mu.Unlock()
				}
			}
		}
	}()
}

// servesResource reports whether the upstream resource uri (its own URI)
// is served and not quarantined.
func (u *Upstream) servesResource(uri string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	for k, s := range u.served {
		if k.method == pipeline.ReadResource && s.ref == uri {
			return !s.hidden
		}
	}
	return false
}

// minUpdate is the least time between two updates of one resource relayed
// to its subscribers.
const minUpdate = time.Second

// relayUpdated tells the subscribed clients that the upstream says uri
// changed: at most once a minUpdate per resource, the last update always
// relayed, so that an upstream sending updates without end cannot flood
// the clients through Warden; and only for a resource a caller subscribed
// to through this upstream.
func (u *Upstream) relayUpdated(ctx context.Context, r *mcp.ResourceUpdatedNotificationRequest) {
	if u.opts.Updated == nil || r.Params == nil {
		return
	}
	uri := r.Params.URI
	u.mu.Lock()
	if !u.subscribedLocked(uri) {
		delete(u.updated, uri)
		u.mu.Unlock()
		return
	}
	now := time.Now()
	at, seen := u.updated[uri]
	switch {
	case at.pending:
		u.mu.Unlock()
		return // relayed when its wait ends
	case seen && now.Before(at.last.Add(minUpdate)):
		u.updated[uri] = updated{last: at.last, pending: true}
		u.mu.Unlock()
		time.AfterFunc(at.last.Add(minUpdate).Sub(now), func() {
			u.mu.Lock()
			if !u.subscribedLocked(uri) {
				delete(u.updated, uri)
				u.mu.Unlock()
				return
			}
			u.updated[uri] = updated{last: time.Now()}
			u.mu.Unlock()
			u.opts.Updated(u.ctx, uri)
		})
		return
	}
	u.updated[uri] = updated{last: now}
	u.mu.Unlock()
	u.opts.Updated(ctx, uri)
}

// updated is when a resource's update was last relayed, and whether one
// waits to be.
type updated struct {
	last    time.Time
	pending bool
}

// subscribedLocked reports whether a caller is subscribed to uri through
// the upstream, or is to be again (lost). u.mu is held.
func (u *Upstream) subscribedLocked(uri string) bool {
	if len(u.lost[uri]) > 0 {
		return true
	}
	for _, uris := range u.subs {
		if len(uris[uri]) > 0 {
			return true
		}
	}
	return false
}
