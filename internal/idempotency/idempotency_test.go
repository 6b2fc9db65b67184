package idempotency

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
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
// test's own, deleted when the test ends.
func newRedisStore(t testing.TB) *Redis {
	t.Helper()
	client, prefix := statetest.Redis(t)
	testClients.Store(prefix, client)
	return NewRedis(client, prefix)
}

// testClients holds each test Redis store's client, by prefix, for tests
// that look at what the store wrote.
var testClients sync.Map

// TestRedisTTL checks that claims and results expire in Redis: claims
// sooner than results.
func TestRedisTTL(t *testing.T) {
	s := newRedisStore(t)
	v, _ := testClients.Load(s.prefix)
	client := v.(*redis.Client)
	ctx := context.Background()
	var ttls []time.Duration
	h := Stage(s, time.Hour, argsHash)(func(context.Context, *pipeline.Call) (*pipeline.Result, error) {
		ttls = append(ttls, pttl(t, client, s.prefix))
		return &pipeline.Result{Tool: &pipeline.ToolResult{Content: []pipeline.Content{pipeline.Text("done")}}}, nil
	})
	if _, err := h(ctx, call("alice", "k1", 1)); err != nil {
		t.Fatal(err)
	}
	ttls = append(ttls, pttl(t, client, s.prefix))
	if ttls[0] <= 0 || ttls[0] > claimTTL || ttls[1] <= claimTTL || ttls[1] > time.Hour {
		t.Errorf("TTLs of the claim and the result: %v, want (0, %v] and (%v, 1h]", ttls, claimTTL, claimTTL)
	}
}

// pttl returns the TTL of the one key under prefix.
func pttl(t *testing.T, client *redis.Client, prefix string) time.Duration {
	t.Helper()
	ctx := context.Background()
	keys, err := client.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if d, err := client.PTTL(ctx, k).Result(); err == nil && d > 0 {
			return d
		}
	}
	t.Fatal("no key with a TTL")
	return 0
}

// store is a store under test; advance is nil where time cannot be moved.
type store struct {
	name    string
	new     func(t testing.TB) Store
	advance func(d time.Duration)
}

func stores(t *testing.T) []store {
	clk := statetest.NewClock(time.Unix(1_700_000_000, 0))
	return []store{
		{name: "memory", new: func(testing.TB) Store { return NewMemory(clk.Now, 0) }, advance: clk.Advance},
		{name: "sqlite", new: func(t testing.TB) Store { return newSQLiteStore(t, clk.Now) }, advance: clk.Advance},
		{name: "postgres", new: func(t testing.TB) Store { return newPostgresStore(t, clk.Now) }, advance: clk.Advance},
		{name: "redis", new: func(t testing.TB) Store { return newRedisStore(t) }},
	}
}

// newSQLiteStore returns a store in a state file of the test's own, on
// clock now.
func newSQLiteStore(t testing.TB, now func() time.Time) Store {
	t.Helper()
	return openSQL(t, now, func(ctx context.Context) (Store, error) {
		return OpenSQLite(ctx, statetest.SQLitePath(t))
	})
}

// newPostgresStore returns a store in a schema of the test's own on the
// test PostgreSQL, on clock now; without one, the test is skipped.
func newPostgresStore(t testing.TB, now func() time.Time) Store {
	t.Helper()
	return openSQL(t, now, func(ctx context.Context) (Store, error) {
		return OpenPostgres(ctx, statetest.Postgres(t))
	})
}

func openSQL(t testing.TB, now func() time.Time, open func(context.Context) (Store, error)) Store {
	t.Helper()
	s, err := open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.(*sqlStore).now = now
	return s
}

// tool is a write tool that counts its runs and answers with its
// arguments, or fails while fail is set.
type tool struct {
	runs atomic.Int64
	fail atomic.Bool
}

func (tl *tool) handle(_ context.Context, c *pipeline.Call) (*pipeline.Result, error) {
	n := tl.runs.Add(1)
	if tl.fail.Load() {
		return nil, errors.New("boom")
	}
	return &pipeline.Result{Tool: &pipeline.ToolResult{
		Content: []pipeline.Content{pipeline.Text(fmt.Sprintf("run %d: %v", n, c.Args["qty"]))},
	}}, nil
}

var writeSpec = &pipeline.Spec{Method: pipeline.CallTool, Name: "create_order", Mode: pipeline.Write}

func call(who, key string, qty int) *pipeline.Call {
	c := &pipeline.Call{
		Spec:      writeSpec,
		Target:    writeSpec.Name,
		Args:      map[string]any{"qty": qty},
		Principal: &pipeline.Principal{ID: who, Tenant: "acme"},
	}
	if key != "" {
		c.Meta = map[string]any{MetaKey: key}
	}
	return c
}

func text(t *testing.T, r *pipeline.Result) string {
	t.Helper()
	if r == nil || r.Tool == nil || len(r.Tool.Content) != 1 {
		t.Fatalf("result = %+v, want one content", r)
	}
	return r.Tool.Content[0].Text
}

// dryRun is call as a dry run.
func dryRun(who, key string, qty int) *pipeline.Call {
	c := call(who, key, qty)
	c.DryRun = true
	return c
}

func code(err error) pipeline.Code {
	var pe *pipeline.Error
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func TestStage(t *testing.T) {
	type step struct {
		call     *pipeline.Call
		fail     bool          // the tool fails on this step
		advance  time.Duration // move the clock first (memory only)
		want     string        // the result text, or
		wantCode pipeline.Code // the refusal
		replay   bool
	}
	tests := []struct {
		name     string
		steps    []step
		wantRuns int64
		clock    bool // needs a clock that can be moved
	}{
		{"a repeat replays the stored result", []step{
			{call: call("alice", "k1", 1), want: "run 1: 1"},
			{call: call("alice", "k1", 1), want: "run 1: 1", replay: true},
			{call: call("alice", "k1", 1), want: "run 1: 1", replay: true},
		}, 1, false},
		{"a dry run is never stored or replayed", []step{
			{call: dryRun("alice", "k1", 1), want: "run 1: 1"},
			{call: call("alice", "k1", 1), want: "run 2: 1"},
			{call: dryRun("alice", "k1", 1), want: "run 3: 1"},
			{call: call("alice", "k1", 1), want: "run 2: 1", replay: true},
		}, 3, false},
		{"different arguments are refused", []step{
			{call: call("alice", "k1", 1), want: "run 1: 1"},
			{call: call("alice", "k1", 2), wantCode: pipeline.InvalidArgument},
		}, 1, false},
		{"errors are not stored, so a retry runs", []step{
			{call: call("alice", "k1", 1), fail: true, wantCode: "boom"},
			{call: call("alice", "k1", 1), want: "run 2: 1"},
			{call: call("alice", "k1", 1), want: "run 2: 1", replay: true},
		}, 2, false},
		{"keys are per principal", []step{
			{call: call("alice", "k1", 1), want: "run 1: 1"},
			{call: call("bob", "k1", 1), want: "run 2: 1"},
			{call: call("bob", "k1", 1), want: "run 2: 1", replay: true},
		}, 2, false},
		{"calls without a key always run", []step{
			{call: call("alice", "", 1), want: "run 1: 1"},
			{call: call("alice", "", 1), want: "run 2: 1"},
		}, 2, false},
		{"a key that is not a string is refused", []step{
			{call: func() *pipeline.Call { c := call("alice", "", 1); c.Meta = map[string]any{MetaKey: 7.0}; return c }(), wantCode: pipeline.InvalidArgument},
			{call: call("alice", strings.Repeat("k", MaxKeyLen+1), 1), wantCode: pipeline.InvalidArgument},
		}, 0, false},
		{"read tools pass through", []step{
			{call: func() *pipeline.Call {
				c := call("alice", "k1", 1)
				c.Spec = &pipeline.Spec{Method: pipeline.CallTool, Name: "get_order", Mode: pipeline.Read}
				return c
			}(), want: "run 1: 1"},
			{call: func() *pipeline.Call {
				c := call("alice", "k1", 1)
				c.Spec = &pipeline.Spec{Method: pipeline.CallTool, Name: "get_order", Mode: pipeline.Read}
				return c
			}(), want: "run 2: 1"},
		}, 2, false},
		{"after the TTL the key runs again", []step{
			{call: call("alice", "k1", 1), want: "run 1: 1"},
			{call: call("alice", "k1", 1), advance: time.Hour - time.Second, want: "run 1: 1", replay: true},
			{call: call("alice", "k1", 2), advance: time.Second, want: "run 2: 2"},
		}, 2, true},
	}
	for _, st := range stores(t) {
		for _, tt := range tests {
			t.Run(st.name+"/"+tt.name, func(t *testing.T) {
				if tt.clock && st.advance == nil {
					t.Skip("the store's clock cannot be moved")
				}
				tl := &tool{}
				h := Stage(st.new(t), time.Hour, argsHash)(tl.handle)
				for i, s := range tt.steps {
					if s.advance > 0 {
						st.advance(s.advance)
					}
					tl.fail.Store(s.fail)
					s.call.Flags = nil // the table's calls are reused by every store
					res, err := h(context.Background(), s.call)
					switch {
					case s.wantCode == "boom":
						if err == nil || err.Error() != "boom" {
							t.Fatalf("step %d: err = %v, want the tool's error", i, err)
						}
						continue
					case s.wantCode != "":
						if code(err) != s.wantCode {
							t.Fatalf("step %d: err = %v, want %s", i, err, s.wantCode)
						}
						continue
					case err != nil:
						t.Fatalf("step %d: %v", i, err)
					}
					if got := text(t, res); got != s.want {
						t.Errorf("step %d: result %q, want %q", i, got, s.want)
					}
					gotReplay := res.Tool.Meta[ReplayMetaKey] == true
					flagged := len(s.call.Flags) == 1 && s.call.Flags[0] == Flag
					if gotReplay != s.replay || flagged != s.replay {
						t.Errorf("step %d: replay marked %v, flagged %v; want %v", i, gotReplay, flagged, s.replay)
					}
				}
				if got := tl.runs.Load(); got != tt.wantRuns {
					t.Errorf("the tool ran %d times, want %d", got, tt.wantRuns)
				}
			})
		}
	}
}

// TestConcurrent sends a second call while the first, with the same key,
// still runs: the second is told to retry, and the tool runs once.
func TestConcurrent(t *testing.T) {
	for _, st := range stores(t) {
		t.Run(st.name, func(t *testing.T) {
			started, release := make(chan struct{}), make(chan struct{})
			var runs atomic.Int64
			h := Stage(st.new(t), time.Hour, argsHash)(func(context.Context, *pipeline.Call) (*pipeline.Result, error) {
				runs.Add(1)
				close(started)
				<-release
				return &pipeline.Result{Tool: &pipeline.ToolResult{Content: []pipeline.Content{pipeline.Text("done")}}}, nil
			})
			first := make(chan error)
			go func() {
				_, err := h(context.Background(), call("alice", "k1", 1))
				first <- err
			}()
			<-started
			_, err := h(context.Background(), call("alice", "k1", 1))
			var pe *pipeline.Error
			if !errors.As(err, &pe) || pe.Code != pipeline.Unavailable || pe.RetryAfter != 1 {
				t.Errorf("second call: err = %v, want UNAVAILABLE with retry_after 1", err)
			}
			close(release)
			if err := <-first; err != nil {
				t.Fatalf("first call: %v", err)
			}
			res, err := h(context.Background(), call("alice", "k1", 1))
			if err != nil {
				t.Fatal(err)
			}
			if got := text(t, res); got != "done" || res.Tool.Meta[ReplayMetaKey] != true {
				t.Errorf("third call: %q, meta %v; want the replayed result", got, res.Tool.Meta)
			}
			if n := runs.Load(); n != 1 {
				t.Errorf("the tool ran %d times, want 1", n)
			}
		})
	}
}

// TestMemoryBounded checks that a full memory store refuses new keys
// rather than forgetting live ones, and makes room as keys expire.
func TestMemoryBounded(t *testing.T) {
	clk := statetest.NewClock(time.Unix(0, 0))
	s := NewMemory(clk.Now, 2)
	ctx := context.Background()
	for _, k := range []string{"a", "b"} {
		if ok, err := s.Put(ctx, k, &Entry{}, time.Minute); !ok || err != nil {
			t.Fatalf("Put(%s) = %v, %v", k, ok, err)
		}
	}
	if _, err := s.Put(ctx, "c", &Entry{}, time.Minute); !errors.Is(err, ErrFull) {
		t.Fatalf("Put into a full store: err = %v, want ErrFull", err)
	}
	clk.Advance(time.Minute)
	if ok, err := s.Put(ctx, "c", &Entry{}, time.Minute); !ok || err != nil {
		t.Fatalf("Put after expiry = %v, %v", ok, err)
	}
}

func BenchmarkReplay(b *testing.B) {
	for _, st := range []struct {
		name string
		new  func(testing.TB) Store
	}{
		{"memory", func(testing.TB) Store { return NewMemory(nil, 0) }},
		{"sqlite", func(t testing.TB) Store { return newSQLiteStore(t, time.Now) }},
		{"postgres", func(t testing.TB) Store { return newPostgresStore(t, time.Now) }},
		{"redis", func(t testing.TB) Store { return newRedisStore(t) }},
	} {
		b.Run(st.name, func(b *testing.B) {
			tl := &tool{}
			h := Stage(st.new(b), time.Hour, argsHash)(tl.handle)
			ctx := context.Background()
			if _, err := h(ctx, call("alice", "k1", 1)); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := h(ctx, call("alice", "k1", 1)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestReplayOfEarlierVersion checks that a result stored before
// pipeline.ToolResult existed, when it was the SDK's CallToolResult, is
// still replayed: both encode the MCP wire shape.
func TestReplayOfEarlierVersion(t *testing.T) {
	const old = `{"_meta":{"io.wardenmcp/trace":"x"},"content":[{"type":"text","text":"run 1: 2"}],"structuredContent":{"qty":2}}`
	s := NewMemory(nil, 0)
	ctx := context.Background()
	c := call("alice", "k1", 2)
	if err := s.Set(ctx, storeKey(c, "k1"), &Entry{ArgsHash: argsHash(c), Result: json.RawMessage(old)}, time.Hour); err != nil {
		t.Fatal(err)
	}
	tl := &tool{}
	res, err := Stage(s, time.Hour, argsHash)(tl.handle)(ctx, c)
	if err != nil || tl.runs.Load() != 0 {
		t.Fatalf("err %v, runs %d; want a replay", err, tl.runs.Load())
	}
	want := &pipeline.ToolResult{
		Meta:              map[string]any{"io.wardenmcp/trace": "x", ReplayMetaKey: true},
		Content:           []pipeline.Content{pipeline.Text("run 1: 2")},
		StructuredContent: map[string]any{"qty": 2.0},
	}
	if !reflect.DeepEqual(res.Tool, want) {
		t.Errorf("replay:\n got %+v\nwant %+v", res.Tool, want)
	}
}
