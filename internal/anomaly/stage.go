package anomaly

import (
	"context"
	"sync"
	"time"

	"github.com/wardenmcp/warden/pipeline"
)

// negativeTTL is how long Stage may take "not suspended" for an answer
// without asking the store again. It bounds how late a suspension made
// elsewhere — by another instance, or by an operator — binds this one: at
// most a second. Suspensions raised here bind at once, and a lifted
// suspension is never cached: a lift takes effect on the next call.
const negativeTTL = time.Second

// cacheShardCap bounds each shard of the negative cache; a full shard is
// emptied, which costs a store lookup per principal, never a late
// suspension.
const cacheShardCap = 128

var _ pipeline.Stage = (*Detector)(nil).Stage

// Stage refuses the calls of a suspended principal with PERMISSION_DENIED,
// and every call with UNAVAILABLE while the store cannot say whether the
// principal is suspended: it fails closed. Place it right inside the audit
// stage, so that its refusals are recorded.
//
// A call without a principal passes: it has no one to suspend, and the
// authorize stage refuses it.
func (d *Detector) Stage(next pipeline.Handler) pipeline.Handler {
	return func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
		if c.Principal != nil {
			if err := d.check(ctx, c.Principal.ID); err != nil {
				return nil, err
			}
		}
		return next(ctx, c)
	}
}

// check returns the refusal for principal's call, or nil.
func (d *Detector) check(ctx context.Context, principal string) error {
	if d.npending.Load() > 0 {
		d.mu.Lock()
		reason, ok := d.pending[principal]
		d.mu.Unlock()
		if ok {
			return suspended(reason)
		}
	}
	// The generation and the time are read before the store is: an answer
	// is cached as of when it was asked for, and is void if a suspension
	// was recorded meanwhile.
	gen, now := d.gen.Load(), d.clock()
	sh := &d.cache.shards[d.shardOf(principal)]
	if sh.allows(principal, now, gen) {
		return nil
	}
	isSuspended, reason, err := d.store.Suspended(ctx, principal)
	if err != nil {
		d.storeLog.Do(func(n int) {
			d.log.Error("anomaly: the suspension store cannot be read; calls are refused",
				"failures", n, "err", err)
		})
		return pipeline.Errorf(pipeline.Unavailable,
			"retry shortly; if it persists, tell the operator that the suspension list cannot be read",
			"the call was refused because Warden could not check whether your access is suspended").WithRetryAfter(time.Second)
	}
	if isSuspended {
		return suspended(reason)
	}
	sh.allow(principal, now+int64(negativeTTL), gen)
	return nil
}

func suspended(reason string) *pipeline.Error {
	return pipeline.Errorf(pipeline.PermissionDenied,
		"ask the operator to review the alert that suspended your access",
		"%s: %s; an operator can lift it with `warden suspensions lift`", suspendedMessage, reason)
}

// negCache remembers principals recently found not suspended.
type negCache struct {
	shards [numShards]cacheShard
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[string]cacheEntry
}

type cacheEntry struct {
	until int64 // clock
	gen   uint64
}

func (sh *cacheShard) allows(principal string, now int64, gen uint64) bool {
	sh.mu.RLock()
	e, ok := sh.m[principal]
	sh.mu.RUnlock()
	return ok && e.gen == gen && now < e.until
}

func (sh *cacheShard) allow(principal string, until int64, gen uint64) {
	sh.mu.Lock()
	if sh.m == nil {
		sh.m = make(map[string]cacheEntry)
	}
	if len(sh.m) >= cacheShardCap {
		clear(sh.m)
	}
	sh.m[principal] = cacheEntry{until: until, gen: gen}
	sh.mu.Unlock()
}
