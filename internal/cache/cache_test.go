package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/wardenmcp/warden/internal/state/statetest"
	"github.com/wardenmcp/warden/pipeline"
)

func argsHash(c *pipeline.Call) string {
	b, _ := json.Marshal(c.Args) // map keys are sorted
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// newRedisStore returns a store over the test Redis with keys of the
// test's own, deleted when the test ends, and its client for inspection.
func newRedisStore(t testing.TB) (*Redis, *redis.Client, string) {
	t.Helper()
	client, prefix := statetest.Redis(t)
	return NewRedis(client, prefix), client, prefix
}

type store struct {
	name    string
	new     func(t testing.TB) Store
	advance func(d time.Duration) // nil where time cannot be moved
}

func stores() []store {
	clk := statetest.NewClock(time.Unix(1_700_000_000, 0))
	return []store{
		{name: "memory", new: func(testing.TB) Store { return NewMemory(clk.Now, 0) }, advance: clk.Advance},
		{name: "redis", new: func(t testing.TB) Store { s, _, _ := newRedisStore(t); return s }},
	}
}

// tool is a read tool that counts its runs and answers with its runs, the
// caller's tenant and its arguments; or fails, or refuses, as told.
type tool struct {
	runs    atomic.Int64
	outcome atomic.Value // "", "error", "is_error" or "refuse"
}

func (tl *tool) handle(_ context.Context, c *pipeline.Call) (*pipeline.Result, error) {
	n := tl.runs.Add(1)
	switch o, _ := tl.outcome.Load().(string); o {
	case "error":
		return nil, errors.New("boom")
	case "refuse":
		return nil, pipeline.Errorf(pipeline.PermissionDenied, "", "no")
	case "is_error":
		return &pipeline.Result{Tool: &pipeline.ToolResult{IsError: true, Content: []pipeline.Content{pipeline.Text("bad")}}}, nil
	}
	return &pipeline.Result{
		Tool: &pipeline.ToolResult{Content: []pipeline.Content{
			pipeline.Text(fmt.Sprintf("run %d: %s %v", n, c.Principal.Tenant, c.Args["id"])),
		}},
		Rows: 3,
	}, nil
}

func call(tenant string, id int, version string, meta map[string]any) *pipeline.Call {
	spec := &pipeline.Spec{Method: pipeline.CallTool, Name: "list_orders", Version: version, Mode: pipeline.Read, CacheTTL: time.Minute}
	return &pipeline.Call{
		Spec:      spec,
		Target:    spec.Name,
		Args:      map[string]any{"id": id},
		Meta:      meta,
		Principal: &pipeline.Principal{ID: "u-" + tenant, Tenant: tenant},
	}
}

var bypass = map[string]any{BypassMetaKey: true}

func TestStage(t *testing.T) {
	type step struct {
		call    *pipeline.Call
		outcome string        // the tool's outcome ("" for success)
		advance time.Duration // move the clock first (memory only)
		want    string        // the result text, or "" for a failure
		hit     bool
	}
	tests := []struct {
		name     string
		steps    []step
		wantRuns int64
		clock    bool
	}{
		{"a hit follows a miss", []step{
			{call: call("a", 1, "1", nil), want: "run 1: a 1"},
			{call: call("a", 1, "1", nil), want: "run 1: a 1", hit: true},
			{call: call("a", 2, "1", nil), want: "run 2: a 2"},
		}, 2, false},
		{"tenants never share", []step{
			{call: call("a", 1, "1", nil), want: "run 1: a 1"},
			{call: call("b", 1, "1", nil), want: "run 2: b 1"},
			{call: call("b", 1, "1", nil), want: "run 2: b 1", hit: true},
			{call: call("a", 1, "1", nil), want: "run 1: a 1", hit: true},
		}, 2, false},
		{"the bypass flag runs the tool", []step{
			{call: call("a", 1, "1", nil), want: "run 1: a 1"},
			{call: call("a", 1, "1", bypass), want: "run 2: a 1"},
			{call: call("a", 1, "1", map[string]any{BypassMetaKey: false}), want: "run 2: a 1", hit: true},
		}, 2, false},
		{"errors and refusals are never cached", []step{
			{call: call("a", 1, "1", nil), outcome: "error"},
			{call: call("a", 1, "1", nil), outcome: "refuse"},
			{call: call("a", 1, "1", nil), outcome: "is_error"},
			{call: call("a", 1, "1", nil), want: "run 4: a 1"},
			{call: call("a", 1, "1", nil), want: "run 4: a 1", hit: true},
		}, 4, false},
		{"a new version misses", []step{
			{call: call("a", 1, "1", nil), want: "run 1: a 1"},
			{call: call("a", 1, "2", nil), want: "run 2: a 1"},
		}, 2, false},
		{"entries expire", []step{
			{call: call("a", 1, "1", nil), want: "run 1: a 1"},
			{call: call("a", 1, "1", nil), advance: time.Minute - time.Second, want: "run 1: a 1", hit: true},
			{call: call("a", 1, "1", nil), advance: time.Second, want: "run 2: a 1"},
		}, 2, true},
		{"tools without a TTL are not cached", []step{
			{call: func() *pipeline.Call { c := call("a", 1, "1", nil); c.Spec.CacheTTL = 0; return c }(), want: "run 1: a 1"},
			{call: func() *pipeline.Call { c := call("a", 1, "1", nil); c.Spec.CacheTTL = 0; return c }(), want: "run 2: a 1"},
		}, 2, false},
		{"write tools are not cached", []step{
			{call: func() *pipeline.Call { c := call("a", 1, "1", nil); c.Spec.Mode = pipeline.Write; return c }(), want: "run 1: a 1"},
			{call: func() *pipeline.Call { c := call("a", 1, "1", nil); c.Spec.Mode = pipeline.Write; return c }(), want: "run 2: a 1"},
		}, 2, false},
	}
	for _, st := range stores() {
		for _, tt := range tests {
			t.Run(st.name+"/"+tt.name, func(t *testing.T) {
				if tt.clock && st.advance == nil {
					t.Skip("the store's clock cannot be moved")
				}
				tl := &tool{}
				ch := New(st.new(t), argsHash)
				h := ch.Stage(tl.handle)
				var hits uint64
				for i, s := range tt.steps {
					if s.advance > 0 {
						st.advance(s.advance)
					}
					tl.outcome.Store(s.outcome)
					s.call.Flags = nil // the table's calls are reused by every store
					res, err := h(context.Background(), s.call)
					if s.want == "" {
						if err == nil && (res == nil || !res.Tool.IsError) {
							t.Fatalf("step %d: %+v, want the tool's failure", i, res)
						}
						continue
					}
					if err != nil {
						t.Fatalf("step %d: %v", i, err)
					}
					if got := res.Tool.Content[0].Text; got != s.want {
						t.Errorf("step %d: result %q, want %q", i, got, s.want)
					}
					gotHit := res.Tool.Meta[ResultMetaKey] == "hit"
					flagged := len(s.call.Flags) == 1 && s.call.Flags[0] == Flag
					if gotHit != s.hit || flagged != s.hit {
						t.Errorf("step %d: hit marked %v, flagged %v; want %v", i, gotHit, flagged, s.hit)
					}
					if s.hit {
						hits++
						if res.Rows != 3 {
							t.Errorf("step %d: rows %d, want 3 as the original", i, res.Rows)
						}
					}
				}
				if got := tl.runs.Load(); got != tt.wantRuns {
					t.Errorf("the tool ran %d times, want %d", got, tt.wantRuns)
				}
				if got, _ := ch.Stats(); got != hits {
					t.Errorf("Stats: %d hits, want %d", got, hits)
				}
			})
		}
	}
}

// TestHitIsACopy checks that a caller changing a hit's result cannot
// change what the next caller gets.
func TestHitIsACopy(t *testing.T) {
	tl := &tool{}
	h := New(NewMemory(nil, 0), argsHash).Stage(tl.handle)
	ctx := context.Background()
	h(ctx, call("a", 1, "1", nil))
	r1, _ := h(ctx, call("a", 1, "1", nil))
	r1.Tool.Content[0].Text = "tampered"
	r1.Tool.Meta["x"] = 1
	r2, _ := h(ctx, call("a", 1, "1", nil))
	if got := r2.Tool.Content[0].Text; got != "run 1: a 1" || r2.Tool.Meta["x"] != nil {
		t.Errorf("second hit %q, meta %v; want the original", got, r2.Tool.Meta)
	}
}

func TestBadBypassFlag(t *testing.T) {
	h := New(NewMemory(nil, 0), argsHash).Stage((&tool{}).handle)
	_, err := h(context.Background(), call("a", 1, "1", map[string]any{BypassMetaKey: "yes"}))
	var pe *pipeline.Error
	if !errors.As(err, &pe) || pe.Code != pipeline.InvalidArgument {
		t.Errorf("err = %v, want INVALID_ARGUMENT", err)
	}
}

func TestMemoryLRU(t *testing.T) {
	s := NewMemory(nil, 2)
	ctx := context.Background()
	s.Set(ctx, "a", []byte("1"), time.Minute)
	s.Set(ctx, "b", []byte("2"), time.Minute)
	s.Get(ctx, "a") // a is now the most recently used
	s.Set(ctx, "c", []byte("3"), time.Minute)
	for k, want := range map[string]bool{"a": true, "b": false, "c": true} {
		if _, ok, _ := s.Get(ctx, k); ok != want {
			t.Errorf("Get(%s): present %v, want %v", k, ok, want)
		}
	}
	if s.Len() != 2 {
		t.Errorf("Len = %d, want 2", s.Len())
	}
}

func TestRedisTTL(t *testing.T) {
	s, client, prefix := newRedisStore(t)
	ctx := context.Background()
	if err := s.Set(ctx, "k", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	d, err := client.PTTL(ctx, prefix+"k").Result()
	if err != nil || d <= 0 || d > time.Minute {
		t.Errorf("PTTL = %v, %v; want within a minute", d, err)
	}
}

func BenchmarkHit(b *testing.B) {
	for _, st := range []struct {
		name string
		new  func(testing.TB) Store
	}{
		{"memory", func(testing.TB) Store { return NewMemory(nil, 0) }},
		{"redis", func(t testing.TB) Store { s, _, _ := newRedisStore(t); return s }},
	} {
		b.Run(st.name, func(b *testing.B) {
			h := New(st.new(b), argsHash).Stage((&tool{}).handle)
			ctx := context.Background()
			if _, err := h(ctx, call("a", 1, "1", nil)); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := h(ctx, call("a", 1, "1", nil)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestEntryOfEarlierVersionHits checks that an entry stored before
// pipeline.ToolResult existed, when the result was the SDK's
// CallToolResult, is still served: both encode the MCP wire shape.
func TestEntryOfEarlierVersionHits(t *testing.T) {
	const old = `{"result":{"_meta":{"io.wardenmcp/guard":{"redacted":["email"]}},` +
		`"content":[{"type":"text","text":"{\"rows\":[{\"id\":1}]}"},{"type":"image","mimeType":"image/png","data":"AQID"}],` +
		`"structuredContent":{"rows":[{"id":1}]}},"rows":1,"flags":["redacted email"]}`
	s := NewMemory(nil, 0)
	ch := New(s, argsHash)
	tl := &tool{}
	h := ch.Stage(tl.handle)
	ctx := context.Background()
	c := call("a", 1, "1", nil)
	if err := s.Set(ctx, ch.key(c), []byte(old), time.Minute); err != nil {
		t.Fatal(err)
	}
	res, err := h(ctx, c)
	if err != nil || tl.runs.Load() != 0 {
		t.Fatalf("err %v, runs %d; want a hit", err, tl.runs.Load())
	}
	want := &pipeline.Result{Rows: 1, Tool: &pipeline.ToolResult{
		Meta: map[string]any{"io.wardenmcp/guard": map[string]any{"redacted": []any{"email"}}, ResultMetaKey: "hit"},
		Content: []pipeline.Content{
			pipeline.Text(`{"rows":[{"id":1}]}`),
			{Type: "image", MIMEType: "image/png", Data: []byte{1, 2, 3}},
		},
		StructuredContent: map[string]any{"rows": []any{map[string]any{"id": 1.0}}},
	}}
	if !reflect.DeepEqual(res, want) {
		t.Errorf("hit:\n got %+v\nwant %+v", res.Tool, want.Tool)
	}
	if !slices.Equal(c.Flags, []string{"redacted email", Flag}) {
		t.Errorf("flags %q, want the stored flags and %q", c.Flags, Flag)
	}
}
