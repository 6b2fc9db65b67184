// Package cache answers repeated calls to read-only tools from a cache.
//
// A tool is cached only if it is read-only and configured with a TTL. The
// key is the tool, its version, its canonical arguments and the caller's
// tenant (or, for a caller of no tenant, the caller): a result is never
// served to another tenant, and a new version of
// a tool never serves its predecessor's results. Only successful results
// are kept; refusals and errors never are. A hit is marked with
// "io.wardenmcp/cache": "hit" in the result's _meta and with the flag
// "cache_hit" in the audit record.
//
// A client that needs a fresh answer sets a flag in the request's _meta:
//
//	{"name": "list_orders", "arguments": {...},
//	 "_meta": {"io.wardenmcp/no_cache": true}}
//
// which runs the tool (and caches its result for the next caller).
package cache

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"slices"
	"sync/atomic"

	"github.com/wardenmcp/warden/pipeline"
)

const (
	// BypassMetaKey is the request _meta flag that, when true, skips the
	// cache for one call.
	BypassMetaKey = "io.wardenmcp/no_cache"
	// ResultMetaKey marks, in a result's _meta, a result served from the
	// cache (value "hit").
	ResultMetaKey = "io.wardenmcp/cache"
	// Flag is added to Call.Flags of a call served from the cache.
	Flag = "cache_hit"
)

// Cache is the cache stage and its counters.
type Cache struct {
	store    Store
	argsHash func(*pipeline.Call) string

	hits, misses atomic.Uint64
}

// New returns a cache over s. A read tool is cached for its Spec.CacheTTL;
// tools without a positive TTL are not cached. argsHash identifies a
// call's arguments (the validated ones: two spellings of the same arguments
// must hash the same). New panics if s or argsHash is nil.
func New(s Store, argsHash func(*pipeline.Call) string) *Cache {
	if s == nil || argsHash == nil {
		panic("cache.New: needs a store and an args hash")
	}
	return &Cache{store: s, argsHash: argsHash}
}

// Stats reports the hits and misses of cacheable calls so far, for
// metrics. Bypassed calls count as neither.
func (ch *Cache) Stats() (hits, misses uint64) {
	return ch.hits.Load(), ch.misses.Load()
}

// entry is what the store keeps: the result, and what the audit record
// needs to describe it as the original call did.
type entry struct {
	Result    json.RawMessage `json:"result"`
	Rows      int             `json:"rows,omitempty"`
	Truncated bool            `json:"truncated,omitempty"`
	Flags     []string        `json:"flags,omitempty"`
}

// Stage is the cache stage.
func (ch *Cache) Stage(next pipeline.Handler) pipeline.Handler {
	return func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
		if c.Spec == nil || c.Spec.Method != pipeline.CallTool || c.Spec.Mode != pipeline.Read {
			return next(ctx, c)
		}
		ttl := c.Spec.CacheTTL
		if ttl <= 0 {
			return next(ctx, c)
		}
		bypass := false
		if v, ok := c.Meta[BypassMetaKey]; ok {
			b, isBool := v.(bool)
			if !isBool {
				return nil, pipeline.Errorf(pipeline.InvalidArgument,
					"send true to bypass the cache, or omit the flag",
					"_meta %q must be a boolean", BypassMetaKey)
			}
			bypass = b
		}
		key := ch.key(c)
		if !bypass {
			// A store that cannot answer is a miss: the cache only saves
			// work, and the tool can still answer.
			if b, ok, err := ch.store.Get(ctx, key); err == nil && ok {
				if res, ok := hit(b, c); ok {
					ch.hits.Add(1)
					return res, nil
				}
			}
			ch.misses.Add(1)
		}
		flags := len(c.Flags)
		res, err := next(ctx, c)
		if err != nil || res == nil || res.Tool == nil || res.Tool.IsError {
			return res, err
		}
		b, merr := json.Marshal(res.Tool)
		if merr != nil {
			return res, nil
		}
		e, merr := json.Marshal(entry{Result: b, Rows: res.Rows, Truncated: res.Truncated, Flags: c.Flags[flags:]})
		if merr == nil {
			ch.store.Set(context.WithoutCancel(ctx), key, e, ttl)
		}
		return res, nil
	}
}

// hit decodes a stored entry into a result of its own.
func hit(b []byte, c *pipeline.Call) (*pipeline.Result, bool) {
	var e entry
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, false
	}
	var r pipeline.ToolResult
	if err := json.Unmarshal(e.Result, &r); err != nil {
		return nil, false
	}
	m := make(map[string]any, len(r.Meta)+1)
	for k, v := range r.Meta {
		m[k] = v
	}
	m[ResultMetaKey] = "hit"
	r.Meta = m
	c.Flags = append(slices.Concat(c.Flags, e.Flags), Flag)
	return &pipeline.Result{Tool: &r, Rows: e.Rows, Truncated: e.Truncated}, true
}

// scope is whom a cached result may be served to: the caller's tenant, or
// for a caller of no tenant, the caller alone.
func scope(p *pipeline.Principal) string {
	switch {
	case p == nil:
		return "p:"
	case p.Tenant == "":
		return "p:" + p.ID
	}
	return "t:" + p.Tenant
}

// key is the store's key for call c: a hash of the tool, its version, the
// arguments and the caller's scope, each length-prefixed so that no two tuples run
// together into the same bytes.
func (ch *Cache) key(c *pipeline.Call) string {
	h := sha256.New()
	for _, s := range []string{c.Spec.Name, c.Spec.Version, ch.argsHash(c), scope(c.Principal)} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	return hex.EncodeToString(h.Sum(nil))
}
