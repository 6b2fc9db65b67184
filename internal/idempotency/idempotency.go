// Package idempotency makes a write tool call at-most-once per caller and
// idempotency key.
//
// A client that may retry a write (after a lost reply, a timeout, a crash)
// puts a key of its choosing in the request's _meta:
//
//	{"name": "create_order", "arguments": {...},
//	 "_meta": {"io.wardenmcp/idempotency_key": "order-7f3a"}}
//
// The first call with the key runs; until its TTL passes, a repeat by the
// same principal, of the same tool, with the same arguments, gets the
// stored result back, marked with "io.wardenmcp/idempotent_replay": true in
// the result's _meta, and the tool does not run again. A repeat with other
// arguments is refused: the key names one operation. A repeat while the
// first call still runs is told to retry. Failed calls are not stored, so
// a retry after one runs.
//
// Keys are per principal (ID and tenant) and per tool: two callers never
// see each other's results. Read tools, and calls without a key, pass
// through.
//
// Entries live in a Store: in Warden's state database (OpenSQLite,
// OpenPostgres), where they outlive a restart; in memory (NewMemory), for
// one instance that may forget them when it stops; or in Redis (NewRedis),
// shared by instances.
package idempotency

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"time"
	"unicode/utf8"

	"github.com/wardenmcp/warden/pipeline"
)

const (
	// MetaKey is the request _meta key that carries an idempotency key: a
	// string of 1 to MaxKeyLen characters.
	MetaKey = "io.wardenmcp/idempotency_key"
	// ReplayMetaKey marks, in a result's _meta, a result replayed from an
	// earlier call.
	ReplayMetaKey = "io.wardenmcp/idempotent_replay"
	// Flag is added to Call.Flags of a replayed call, for the audit record.
	Flag = "idempotent_replay"
	// MaxKeyLen is the longest idempotency key, in characters.
	MaxKeyLen = 200
)

// claimTTL bounds how long a claim by a running call lasts, so that a key
// claimed by an instance that died is free again after a while rather than
// after the whole TTL. It is longer than any call's deadline.
const claimTTL = 10 * time.Minute

// Stage returns the idempotency stage: results of write tool calls that
// carry MetaKey are kept in s for ttl. argsHash identifies a call's
// arguments (the validated ones: two spellings of the same arguments must
// hash the same). Stage panics if s or argsHash is nil or ttl is not
// positive.
func Stage(s Store, ttl time.Duration, argsHash func(c *pipeline.Call) string) pipeline.Stage {
	if s == nil || argsHash == nil || ttl <= 0 {
		panic("idempotency.Stage: needs a store, an args hash and a positive TTL")
	}
	claim := min(ttl, claimTTL)
	return func(next pipeline.Handler) pipeline.Handler {
		return func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			// A dry run changes nothing and must never be replayed as the
			// real call's result.
			if c.Spec == nil || c.Spec.Method != pipeline.CallTool || c.Spec.Mode != pipeline.Write || c.DryRun {
				return next(ctx, c)
			}
			v, ok := c.Meta[MetaKey]
			if !ok {
				return next(ctx, c)
			}
			k, ok := v.(string)
			if !ok || k == "" || utf8.RuneCountInString(k) > MaxKeyLen {
				return nil, pipeline.Errorf(pipeline.InvalidArgument,
					"send a string of 1 to 200 characters, or omit the key",
					"_meta %q must be a string of 1 to %d characters", MetaKey, MaxKeyLen)
			}
			key := storeKey(c, k)
			hash := argsHash(c)

			stored, err := s.Put(ctx, key, &Entry{ArgsHash: hash, Pending: true}, claim)
			if err != nil {
				return nil, unavailable()
			}
			if !stored {
				return replay(ctx, s, key, hash, c)
			}

			res, err := next(ctx, c)
			// The outcome is recorded even if the client has gone: a
			// claim left behind would block retries until it expires.
			sctx := context.WithoutCancel(ctx)
			if err != nil || res == nil || res.Tool == nil || res.Tool.IsError {
				s.Delete(sctx, key)
				return res, err
			}
			b, merr := json.Marshal(res.Tool)
			if merr != nil {
				s.Delete(sctx, key)
				return res, nil
			}
			// If this fails, the claim stays until it expires: a retry is
			// told to wait rather than allowed to run the tool twice.
			s.Set(sctx, key, &Entry{ArgsHash: hash, Result: b}, ttl)
			return res, nil
		}
	}
}

// replay answers a call whose key is already taken.
func replay(ctx context.Context, s Store, key, hash string, c *pipeline.Call) (*pipeline.Result, error) {
	e, err := s.Get(ctx, key)
	if err != nil {
		return nil, unavailable()
	}
	switch {
	case e == nil:
		// The claim was released (the first call failed) or expired
		// between Put and Get: a retry may run.
		return nil, pipeline.Errorf(pipeline.Unavailable, "retry the call with the same key",
			"the first call with this idempotency key did not complete").WithRetryAfter(time.Second)
	case e.ArgsHash != hash:
		return nil, pipeline.Errorf(pipeline.InvalidArgument,
			"use a new idempotency key for a different operation",
			"this idempotency key was used with different arguments")
	case e.Pending:
		return nil, pipeline.Errorf(pipeline.Unavailable, "retry the call with the same key",
			"the first call with this key is still running; retry").WithRetryAfter(time.Second)
	}
	var r pipeline.ToolResult
	if err := json.Unmarshal(e.Result, &r); err != nil {
		return nil, pipeline.Errorf(pipeline.Internal, "", "the stored result of this idempotency key is unreadable")
	}
	m := make(map[string]any, len(r.Meta)+1)
	for k, v := range r.Meta {
		m[k] = v
	}
	m[ReplayMetaKey] = true
	r.Meta = m
	c.Flags = append(c.Flags, Flag)
	return &pipeline.Result{Tool: &r}, nil
}

func unavailable() *pipeline.Error {
	return pipeline.Errorf(pipeline.Unavailable, "retry the call later",
		"the idempotency store is unavailable").WithRetryAfter(time.Second)
}

// storeKey is the store's key for idempotency key k of call c: a hash of
// the principal, tenant, tool and k, each length-prefixed so that no two
// tuples run together into the same bytes.
func storeKey(c *pipeline.Call, k string) string {
	var id, tenant string
	if c.Principal != nil {
		id, tenant = c.Principal.ID, c.Principal.Tenant
	}
	h := sha256.New()
	for _, s := range []string{id, tenant, c.Spec.Name, k} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	return hex.EncodeToString(h.Sum(nil))
}
