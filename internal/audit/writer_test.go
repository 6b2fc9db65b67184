package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

// call is the record of one request, as a pipeline stage would write it.
func call(i int) *Record {
	return &Record{
		Phase: Intent, TraceID: fmt.Sprintf("trace-%03d", i), Principal: "alice", Tenant: "acme", AuthMethod: "api_key",
		Method: "tools/call", Target: "get_customer", Decision: Allow,
		Args: json.RawMessage(fmt.Sprintf(`{"customer_id": "c-%d"}`, i)),
	}
}

func newWriter(t testing.TB, s Store, instance string, opts WriterOptions) *Writer {
	t.Helper()
	w, err := NewWriter(s, secret, instance, opts)
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// verified fails the test unless the store's chains verify, and returns
// each chain's length by instance.
func verified(t testing.TB, s Store) map[string]int64 {
	t.Helper()
	rep, err := Verify(context.Background(), s, secret)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !rep.OK {
		t.Fatalf("the chain does not verify: %+v", rep.Problems)
	}
	n := map[string]int64{}
	for _, c := range rep.Chains {
		n[c.Instance] = c.Verified
	}
	return n
}

// writeAll writes call(from) ... call(to-1) concurrently and returns the
// error of each, by i-from. Each writer checks, as soon as its Write
// returns, that its record is in the store.
func writeAll(t testing.TB, w *Writer, s Store, from, to int) []error {
	errs := make([]error, to-from)
	var wg sync.WaitGroup
	for i := from; i < to; i++ {
		wg.Go(func() {
			r := call(i)
			errs[i-from] = w.Write(context.Background(), r)
			if errs[i-from] != nil {
				return
			}
			if seq, _, err := s.Last(context.Background(), w.Instance()); err != nil || seq < r.Seq {
				errs[i-from] = fmt.Errorf("Write of seq %d returned before the store held it (its last seq is %d, %v)", r.Seq, seq, err)
			}
		})
	}
	wg.Wait()
	return errs
}

func noErrors(t testing.TB, errs []error) {
	t.Helper()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// TestWriterGroupCommits holds the first Append while 63 more writes
// arrive: none of them returns before its batch is committed, and they are
// committed together, in one Append.
func TestWriterGroupCommits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newMemStore()
		spy := &spyStore{Store: mem, gate: make(chan struct{}), entered: make(chan int, 64)}
		w := newWriter(t, spy, "node-a", WriterOptions{})

		var returned atomic.Int32
		errs := make([]error, 64)
		var wg sync.WaitGroup
		write := func(i int) {
			wg.Go(func() {
				r := call(i)
				errs[i] = w.Write(context.Background(), r)
				returned.Add(1)
				if errs[i] == nil {
					if seq, _, _ := mem.Last(context.Background(), "node-a"); seq < r.Seq {
						errs[i] = fmt.Errorf("Write of seq %d returned before the store held it", r.Seq)
					}
				}
			})
		}
		write(0)
		<-spy.entered // the first batch, of one, is at the gate
		for i := 1; i < 64; i++ {
			write(i)
		}
		synctest.Wait()
		if n := returned.Load(); n != 0 {
			t.Errorf("%d Writes returned while their Append was held", n)
		}
		if st := w.Stats(); st.QueueDepth != 63 {
			t.Errorf("queue depth = %d, want 63", st.QueueDepth)
		}
		close(spy.gate)
		wg.Wait()
		noErrors(t, errs)

		if got := spy.appends(); !slices.Equal(got, []int{1, 63}) {
			t.Errorf("Appends of %v records, want [1 63]: the 63 that queued share one", got)
		}
		if n := verified(t, mem); n["node-a"] != 64 {
			t.Errorf("the chain verifies %d records, want 64", n["node-a"])
		}
		st := w.Stats()
		if st.Records != 64 || st.Batches != 2 || st.MaxBatch != 63 || st.LastBatch != 63 || st.QueueDepth != 0 {
			t.Errorf("Stats = %+v, want 64 records in 2 batches, the largest and last of 63, none queued", st)
		}
	})
}

// TestWriterChainsConcurrentWrites writes 64 records at once to each store:
// one batch, a gap-free chain that verifies.
func TestWriterChainsConcurrentWrites(t *testing.T) {
	forEachStore(t, false, func(t *testing.T, s testStore) {
		spy := &spyStore{Store: s}
		// The writer waits for a full batch, however the 64 goroutines
		// are scheduled.
		w := newWriter(t, spy, "node-a", WriterOptions{MaxBatch: 64, MaxDelay: time.Hour})
		noErrors(t, writeAll(t, w, s, 0, 64))
		if got := spy.appends(); !slices.Equal(got, []int{64}) {
			t.Errorf("Appends of %v records, want one of 64", got)
		}
		var seqs []int64
		for _, r := range scanAll(t, s, Query{Instance: "node-a"}) {
			seqs = append(seqs, r.Seq)
		}
		if len(seqs) != 64 || seqs[0] != 1 || seqs[63] != 64 {
			t.Errorf("seqs = %v, want 1 to 64", seqs)
		}
		if n := verified(t, s); n["node-a"] != 64 {
			t.Errorf("the chain verifies %d records, want 64", n["node-a"])
		}
	})
}

func TestWriterFailedAppend(t *testing.T) {
	tests := []struct {
		name      string
		outcome   outcome
		lastFails int
		// wantNext is the seq of the first record after the failed
		// batch; afterThat says whether that record is written at all.
		wantNext  int64
		nextFails bool
		wantChain int64
	}{
		{"nothing stored", failBefore, 0, 2, false, 3},
		{"stored, then reported as failed", failAfterCommit, 0, 7, false, 8},
		{"and the chain head cannot be read", failBefore, 1, 2, true, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				mem := newMemStore()
				spy := &spyStore{Store: mem, gate: make(chan struct{}), entered: make(chan int, 8),
					outcome: map[int]outcome{2: tt.outcome}}
				w := newWriter(t, spy, "node-a", WriterOptions{})
				spy.mu.Lock()
				spy.lastFails = tt.lastFails
				spy.mu.Unlock()

				// Write 0 is held at the gate while 1 to 5 queue up, to
				// fail together.
				errs := make([]error, 6)
				var wg sync.WaitGroup
				wg.Go(func() { errs[0] = w.Write(context.Background(), call(0)) })
				<-spy.entered
				for i := 1; i < 6; i++ {
					wg.Go(func() { errs[i] = w.Write(context.Background(), call(i)) })
				}
				synctest.Wait()
				close(spy.gate)
				wg.Wait()
				if errs[0] != nil {
					t.Errorf("the first batch: %v", errs[0])
				}
				for i, err := range errs[1:] {
					if !errors.Is(err, errInjected) {
						t.Errorf("write %d of the failed batch: err = %v, want the store's error", i+1, err)
					}
				}
				if st := w.Stats(); st.Failed != 5 {
					t.Errorf("Stats.Failed = %d, want 5", st.Failed)
				}

				next := call(6)
				err := w.Write(context.Background(), next)
				if tt.nextFails != (err != nil) {
					t.Errorf("the next write: err = %v, want failure %v", err, tt.nextFails)
				}
				last := call(7)
				if err := w.Write(context.Background(), last); err != nil {
					t.Fatalf("a write once the store is back: %v", err)
				}
				want := tt.wantNext
				if tt.nextFails {
					next = last
				}
				if next.Seq != want {
					t.Errorf("the chain resumed at seq %d, want %d", next.Seq, want)
				}
				if n := verified(t, mem); n["node-a"] != tt.wantChain {
					t.Errorf("the chain verifies %d records, want %d", n["node-a"], tt.wantChain)
				}
			})
		})
	}
}

func TestWriteFailsFastWhenTheQueueIsFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newMemStore()
		spy := &spyStore{Store: mem, gate: make(chan struct{}), entered: make(chan int, 8)}
		w := newWriter(t, spy, "node-a", WriterOptions{QueueSize: 2})
		var wg sync.WaitGroup
		errs := make([]error, 3)
		wg.Go(func() { errs[0] = w.Write(context.Background(), call(0)) })
		<-spy.entered
		for i := 1; i < 3; i++ {
			wg.Go(func() { errs[i] = w.Write(context.Background(), call(i)) })
		}
		synctest.Wait() // the queue holds 1 and 2

		err := w.Write(context.Background(), call(3))
		if !errors.Is(err, ErrQueueFull) {
			t.Errorf("a write to a full queue: err = %v, want ErrQueueFull", err)
		}
		if e := Unavailable(err); e.Code != "AUDIT_UNAVAILABLE" || e.RetryAfter != 1 {
			t.Errorf("the refusal = %+v, want AUDIT_UNAVAILABLE, retry after 1s", e)
		}
		if st := w.Stats(); st.Rejected != 1 || st.QueueDepth != 2 || st.QueueSize != 2 {
			t.Errorf("Stats = %+v, want 1 rejected and the queue full at 2", st)
		}
		close(spy.gate)
		wg.Wait()
		noErrors(t, errs)
		if n := verified(t, mem); n["node-a"] != 3 {
			t.Errorf("the chain verifies %d records, want 3", n["node-a"])
		}
	})
}

func TestWriteReturnsWhenItsContextEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newMemStore()
		spy := &spyStore{Store: mem, gate: make(chan struct{}), entered: make(chan int, 8)}
		w := newWriter(t, spy, "node-a", WriterOptions{})

		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err := w.Write(ctx, call(0)) // held at the gate until the deadline
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want the context's", err)
		}
		if err := w.Write(ctx, call(1)); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("a Write with an ended context: err = %v, want the context's", err)
		}
		close(spy.gate)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		// The record that was under way is stored all the same: the
		// caller refused a call that is on record as intended.
		if n := verified(t, mem); n["node-a"] != 1 {
			t.Errorf("the chain verifies %d records, want 1", n["node-a"])
		}
	})
}

func TestCloseFlushes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newMemStore()
		spy := &spyStore{Store: mem, gate: make(chan struct{}), entered: make(chan int, 8)}
		var sink bytes.Buffer
		w := newWriter(t, spy, "node-a", WriterOptions{Sinks: []io.Writer{&sink}})
		var wg sync.WaitGroup
		errs := make([]error, 5)
		wg.Go(func() { errs[0] = w.Write(context.Background(), call(0)) })
		<-spy.entered
		for i := 1; i < 5; i++ {
			wg.Go(func() { errs[i] = w.Write(context.Background(), call(i)) })
		}
		synctest.Wait()
		closed := make(chan error)
		go func() { closed <- w.Close() }()
		synctest.Wait() // Close waits for the queue

		if err := w.Write(context.Background(), call(5)); !errors.Is(err, ErrClosed) {
			t.Errorf("a write while closing: err = %v, want ErrClosed", err)
		}
		close(spy.gate)
		if err := <-closed; err != nil {
			t.Errorf("Close: %v", err)
		}
		wg.Wait()
		noErrors(t, errs)
		if n := strings.Count(sink.String(), "\n"); n != 5 {
			t.Errorf("the sink got %d lines by the time Close returned, want 5", n)
		}
		if err := w.Close(); err != nil {
			t.Errorf("closing again: %v", err)
		}
		if err := w.Write(context.Background(), call(6)); !errors.Is(err, ErrClosed) {
			t.Errorf("a write after Close: err = %v, want ErrClosed", err)
		}
	})
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// TestSinksGetDurableRecords: the sink sees exactly what the store holds,
// as JSON lines, and nothing that failed to be stored.
func TestSinksGetDurableRecords(t *testing.T) {
	mem := newMemStore()
	spy := &spyStore{Store: mem, outcome: map[int]outcome{2: failBefore}}
	var sink bytes.Buffer
	w := newWriter(t, spy, "node-a", WriterOptions{Sinks: []io.Writer{&sink, failingWriter{}}})
	ctx := context.Background()
	if err := w.Write(ctx, call(0)); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(ctx, call(1)); err == nil {
		t.Fatal("the failing Append succeeded")
	}
	if err := w.Write(ctx, call(2)); err != nil {
		t.Fatal(err)
	}
	w.Close()

	var lines []*Record
	sc := bufio.NewScanner(bytes.NewReader(sink.Bytes()))
	for sc.Scan() {
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("sink line %q: %v", sc.Text(), err)
		}
		lines = append(lines, &r)
	}
	stored := scanAll(t, mem, Query{Instance: "node-a"})
	if !reflect.DeepEqual(lines, stored) {
		t.Errorf("the sink got\n%v\nthe store holds\n%v", lines, stored)
	}
	if len(stored) != 2 || stored[1].TraceID != "trace-002" {
		t.Errorf("stored %v, want trace-000 and trace-002", stored)
	}
	if !strings.Contains(sink.String(), `"args":{"customer_id":"c-0"}`) {
		t.Errorf("the sink does not show the arguments as JSON: %s", sink.String())
	}
	if st := w.Stats(); st.SinkErrors != 2 {
		t.Errorf("Stats.SinkErrors = %d, want 2 (one per batch to the failing sink)", st.SinkErrors)
	}
}

// TestWriterResumesTheChain: a restarted instance, or a second process,
// continues where the store ends; another instance starts its own chain.
func TestWriterResumesTheChain(t *testing.T) {
	forEachStore(t, false, func(t *testing.T, s testStore) {
		ctx := context.Background()
		w := newWriter(t, s, "node-a", WriterOptions{})
		for i := range 3 {
			if err := w.Write(ctx, call(i)); err != nil {
				t.Fatal(err)
			}
		}
		w.Close()
		w = newWriter(t, s, "node-a", WriterOptions{})
		r := call(3)
		if err := w.Write(ctx, r); err != nil {
			t.Fatal(err)
		}
		if r.Seq != 4 || r.Instance != "node-a" {
			t.Errorf("the restarted writer wrote %s seq %d, want node-a seq 4", r.Instance, r.Seq)
		}
		other := newWriter(t, s, "", WriterOptions{})
		r = call(4)
		if err := other.Write(ctx, r); err != nil {
			t.Fatal(err)
		}
		if r.Seq != 1 || r.Instance == "node-a" || r.Instance == "" {
			t.Errorf("a new instance wrote %q seq %d, want its own chain from seq 1", r.Instance, r.Seq)
		}
		if n := verified(t, s); n["node-a"] != 4 || n[r.Instance] != 1 {
			t.Errorf("chains verified: %v, want node-a: 4 and %s: 1", n, r.Instance)
		}
	})
}

// TestWriterStoresWhatItHashes: whatever a client puts in a field, the
// record is stored and reads back as hashed, in every store.
func TestWriterStoresWhatItHashes(t *testing.T) {
	forEachStore(t, false, func(t *testing.T, s testStore) {
		r := call(0)
		r.Target = "evil\x00tool"
		r.ClientName = "bad utf-8 \xff\xfe"
		r.Args = json.RawMessage(`{ "z": 1.50, "a": "nul \u0000 here", "m": [1e2, -0] }`)
		r.Time = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.FixedZone("CET", 3600))
		w := newWriter(t, s, "node-a", WriterOptions{})
		if err := w.Write(context.Background(), r); err != nil {
			t.Fatalf("Write: %v", err)
		}
		want := map[string]string{
			"target":      "evil\ufffdtool",
			"client name": "bad utf-8 \ufffd",
			"args":        `{"a":"nul \u0000 here","m":[100,0],"z":1.5}`,
			"time":        "2026-03-01T11:00:00.123456Z",
		}
		got := map[string]string{"target": r.Target, "client name": r.ClientName, "args": string(r.Args), "time": r.Time.Format(time.RFC3339Nano)}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("the record as written = %q\nwant %q", got, want)
		}
		stored := scanAll(t, s, Query{})
		if len(stored) != 1 || !reflect.DeepEqual(stored[0], r) {
			t.Errorf("stored %+v\nwant %+v", stored, r)
		}
		verified(t, s)
	})
}

func TestWriteRefusesBadRecords(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(r *Record)
		errHas string
	}{
		{"no phase", func(r *Record) { r.Phase = "" }, "phase"},
		{"an unknown phase", func(r *Record) { r.Phase = "maybe" }, "phase"},
		{"arguments that are not JSON", func(r *Record) { r.Args = json.RawMessage(`{"a":`) }, "not JSON"},
		{"two JSON values", func(r *Record) { r.Args = json.RawMessage(`{} {}`) }, "not JSON"},
	}
	mem := newMemStore()
	w := newWriter(t, mem, "node-a", WriterOptions{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := call(0)
			tt.edit(r)
			if err := w.Write(context.Background(), r); err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Errorf("err = %v, want one saying %q", err, tt.errHas)
			}
		})
	}
	r := call(1)
	if err := w.Write(context.Background(), r); err != nil || r.Seq != 1 {
		t.Errorf("a good record after bad ones: seq %d, err %v; want seq 1", r.Seq, err)
	}
}

func TestNewWriterRefuses(t *testing.T) {
	tests := []struct {
		name     string
		store    Store
		secret   []byte
		instance string
		errHas   string
	}{
		{"a short secret", newMemStore(), secret[:31], "a", "at least 32"},
		{"a space in the instance id", newMemStore(), secret, "node a", "printable ASCII"},
		{"a store that cannot say where the chain ends", &spyStore{Store: newMemStore(), lastFails: 1}, secret, "a", "injected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := NewWriter(tt.store, tt.secret, tt.instance, WriterOptions{})
			if err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Errorf("err = %v, want one saying %q", err, tt.errHas)
			}
			if w != nil {
				w.Close()
			}
		})
	}
}

// TestInstancesShareADatabase: two processes with a store each, writing
// to one database at once, keep two chains that both verify.
func TestInstancesShareADatabase(t *testing.T) {
	forEachStore(t, true, func(t *testing.T, s testStore) {
		other := s.reopen(t)
		wa := newWriter(t, s, "node-a", WriterOptions{})
		wb := newWriter(t, other, "node-b", WriterOptions{})
		var wg sync.WaitGroup
		var ea, eb []error
		wg.Go(func() { ea = writeAll(t, wa, s, 0, 50) })
		wg.Go(func() { eb = writeAll(t, wb, other, 50, 100) })
		wg.Wait()
		noErrors(t, ea)
		noErrors(t, eb)
		if n := verified(t, s); !reflect.DeepEqual(n, map[string]int64{"node-a": 50, "node-b": 50}) {
			t.Errorf("chains verified: %v, want 50 records each for node-a and node-b", n)
		}
	})
}

// A record queued without waiting is made durable before any record
// queued after it, so waiting for the later one settles both.
func TestQueueKeepsOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newMemStore()
		spy := &spyStore{Store: mem, gate: make(chan struct{}), entered: make(chan int, 8)}
		w := newWriter(t, spy, "node-a", WriterOptions{})
		first, err := w.Queue(call(1))
		if err != nil {
			t.Fatal(err)
		}
		<-spy.entered // the first record's batch is committing
		second, err := w.Queue(call(2))
		if err != nil {
			t.Fatal(err)
		}
		close(spy.gate)
		if err := second.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		select {
		case <-first.done:
		default:
			t.Fatal("the second record is durable, the first not yet settled")
		}
		if err := first.Wait(context.Background()); err != nil {
			t.Fatalf("the first record: %v", err)
		}
		recs := scanAll(t, mem, Query{Instance: "node-a"})
		if len(recs) != 2 || recs[0].TraceID != "trace-001" || recs[1].TraceID != "trace-002" {
			t.Errorf("stored %+v, want trace-001, then trace-002", recs)
		}
		verified(t, mem)
	})
}
