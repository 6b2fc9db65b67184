package audit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// WriterOptions tunes a Writer. The zero value is valid.
type WriterOptions struct {
	// MaxBatch caps how many records share one Append. Default 256.
	MaxBatch int
	// MaxDelay is how long the writer may hold a batch open, waiting for
	// more records, once it has one. Zero, the default, never waits: a
	// batch is whatever queued while the previous one was being committed,
	// which under load is plenty and when idle costs no latency.
	MaxDelay time.Duration
	// QueueSize bounds how many records may wait for a batch; a Write that
	// finds the queue full fails at once with ErrQueueFull. Default 4096.
	QueueSize int
	// AppendTimeout bounds each Append, so a store that hangs fails its
	// batch rather than stalling every call; an Auditor bounds each call's
	// wait for its records by it too. Default 10s.
	AppendTimeout time.Duration
	// Spool, if set, keeps the outcomes of calls that ran when the store
	// does not take them in time (see Spool); the Auditor adds to it, and
	// Recover replays it.
	Spool *Spool
	// Sinks receive each record as a line of JSON once it is durable, in
	// chain order, batch by batch. A sink that fails is counted in
	// Stats.SinkErrors and does not fail calls: the store holds the record.
	// A sink that blocks holds up the writer, so the queue fills and calls
	// are refused, rather than records being dropped.
	Sinks []io.Writer
}

// Errors Write returns; they are wrapped, so test with errors.Is. Any
// error from Write means the record may not be durable: refuse the call.
var (
	ErrQueueFull = errors.New("the audit queue is full")
	ErrClosed    = errors.New("the audit writer is closed")
	ErrAbandoned = errors.New("the audit record was withdrawn before it was stored")
)

// Stats are a Writer's counters, for metrics. Counts are since NewWriter.
type Stats struct {
	Records    uint64 // records appended
	Batches    uint64 // Appends that succeeded; Records/Batches is the mean batch
	LastBatch  int    // records in the latest successful Append
	MaxBatch   int    // records in the largest successful Append
	Failed     uint64 // records whose Append failed
	Rejected   uint64 // Writes refused because the queue was full
	SinkErrors uint64 // failed writes to sinks
	QueueDepth int    // records waiting now
	QueueSize  int
	// Outcomes of calls that ran, which the store did not take in time:
	// kept in the spool, replayed from it into the store (late), or — the
	// spool failing too, or absent — not recorded at all (an alert: the
	// call's response says so).
	Spooled, Replayed, Unrecorded uint64
	SpoolPending                  int // records waiting in the spool now
}

// Writer appends records to a Store as one hash chain, committing
// concurrent writes together. Its methods are safe for concurrent use.
type Writer struct {
	store    Store
	instance string
	opts     WriterOptions
	queue    chan *Pending
	done     chan struct{} // closed when run returns

	mu     sync.RWMutex // held for writing only to close the queue
	closed bool

	// Chain state, owned by run.
	chain  *chainer
	seq    int64
	prev   string
	resync bool      // the store's head is unknown after a failed Append
	recs   []*Record // the batch being committed
	lines  []byte    // the batch as JSON lines, for the sinks

	appended, batches, failed, rejected, sinkErrors, unrecorded atomic.Uint64
	lastBatch, maxBatch                                         atomic.Int64
}

// Pending is a record queued by Queue: in the chain's order, not yet known
// to be durable. Wait tells when it is.
type Pending struct {
	rec  Record
	err  error // set by run before done is closed
	done chan struct{}
	// taken is pendingQueued until a batch takes p (pendingTaken) or
	// Abandon withdraws it (pendingAbandoned), whichever comes first.
	taken atomic.Int32
}

const (
	pendingQueued = iota
	pendingTaken
	pendingAbandoned
)

// minSecret is the shortest chain secret accepted: 256 bits, so the chain
// cannot be forged by guessing it.
const minSecret = 32

// NewWriter returns a writer that continues instance's chain in store
// from wherever it ends. An empty instance gets a fresh random id (see
// Instance). The secret keys the chain: at least 32 bytes, the same for
// every instance that shares the store, and kept from anyone who could
// alter the database, or they could rewrite the chain.
//
// Close the writer before the store.
func NewWriter(store Store, secret []byte, instance string, opts WriterOptions) (*Writer, error) {
	if len(secret) < minSecret {
		return nil, fmt.Errorf("audit secret: %d bytes, want at least %d random bytes", len(secret), minSecret)
	}
	if instance == "" {
		instance = NewInstanceID()
	}
	if err := validInstance(instance); err != nil {
		return nil, err
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 256
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 4096
	}
	if opts.AppendTimeout <= 0 {
		opts.AppendTimeout = 10 * time.Second
	}
	w := &Writer{
		store:    store,
		instance: instance,
		opts:     opts,
		queue:    make(chan *Pending, opts.QueueSize),
		done:     make(chan struct{}),
		chain:    newChainer(secret),
		recs:     make([]*Record, 0, opts.MaxBatch),
	}
	if err := w.sync(); err != nil {
		return nil, fmt.Errorf("resuming the audit chain of instance %s: %w", instance, err)
	}
	go w.run()
	return w, nil
}

// NewInstanceID returns an id for a process's chain: the host name, so an
// operator can tell where records came from, and random bits, so two
// processes on one host never share a chain.
func NewInstanceID() string {
	host, _ := os.Hostname()
	host = strings.Map(func(r rune) rune {
		if r < 0x21 || r > 0x7e {
			return -1
		}
		return r
	}, host)
	if len(host) > 64 {
		host = host[:64]
	}
	var b [6]byte
	rand.Read(b[:])
	if host == "" {
		return hex.EncodeToString(b[:])
	}
	return host + "-" + hex.EncodeToString(b[:])
}

func validInstance(s string) error {
	if len(s) > 128 {
		return fmt.Errorf("audit instance id %.20q...: at most 128 characters", s)
	}
	for _, r := range s {
		if r < 0x21 || r > 0x7e {
			return fmt.Errorf("audit instance id %q: printable ASCII only, without spaces", s)
		}
	}
	return nil
}

// Instance is the id of the chain this writer extends.
func (w *Writer) Instance() string { return w.instance }

// Write records rec and returns once it is durable in the store, or with
// an error if it is not: then the call must be refused, and rec may or may
// not have been stored.
//
// Write reads rec but does not keep it. On success it sets rec's chain
// fields (Instance, Seq, PrevHash, Hash), its Time if it was zero, and
// stores back the canonical forms it recorded (Args canonicalised, strings
// made valid UTF-8 without NUL bytes, Time in UTC to the microsecond). If
// ctx ends first Write returns its error; the record may still be stored.
func (w *Writer) Write(ctx context.Context, rec *Record) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("recording %s of %s: %w", rec.Phase, rec.TraceID, context.Cause(ctx))
	}
	p, err := w.Queue(rec)
	if err != nil {
		return err
	}
	if err := p.Wait(ctx); err != nil {
		return err
	}
	*rec = p.rec
	return nil
}

// Queue puts rec in the chain and returns at once, without waiting for it
// to be durable: Wait on the Pending for that. It fails at once, storing
// nothing, if rec is malformed, the queue is full or the writer closed.
//
// Records are chained, appended and made durable in the order they were
// queued, so a record that is durable vouches for every record queued
// before it by the same writer.
//
// Queue reads rec but does not keep it.
func (w *Writer) Queue(rec *Record) (*Pending, error) {
	p := &Pending{rec: *rec, done: make(chan struct{})}
	if err := prepare(&p.rec); err != nil {
		return nil, err
	}
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		return nil, ErrClosed
	}
	select {
	case w.queue <- p:
	default:
		w.mu.RUnlock()
		w.rejected.Add(1)
		return nil, fmt.Errorf("recording %s of %s: %w", p.rec.Phase, p.rec.TraceID, ErrQueueFull)
	}
	w.mu.RUnlock()
	return p, nil
}

// Wait returns nil once p's record is durable, its batch's error if it
// could not be stored (then it may or may not have been), or ctx's error
// if ctx ends first. It may be called any number of times, from any
// goroutine.
func (p *Pending) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return fmt.Errorf("recording %s of %s: %w", p.rec.Phase, p.rec.TraceID, context.Cause(ctx))
	}
}

// Abandon withdraws p's record if no batch has taken it yet, and reports
// whether it did: then the record is never stored, and Wait returns
// ErrAbandoned.
// Once a batch has it, Abandon returns false and the record's fate is the
// batch's, settled within AppendTimeout. A caller that gave up waiting
// uses it to keep the record elsewhere without its being stored twice.
func (p *Pending) Abandon() bool {
	return p.taken.CompareAndSwap(pendingQueued, pendingAbandoned)
}

// prepare checks r and puts it in the form the stores keep exactly, so that
// what is hashed is what reads back.
func prepare(r *Record) error {
	switch r.Phase {
	case Intent, Outcome, Refusal:
	default:
		return fmt.Errorf("audit record phase %q: want intent, outcome or refusal", r.Phase)
	}
	r.Instance, r.Seq, r.PrevHash, r.Hash = "", 0, "", ""
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	r.Time = r.Time.UTC().Truncate(time.Microsecond)
	if len(r.Args) == 0 {
		r.Args = nil
	} else {
		c, err := canonicalJSON(r.Args)
		if err != nil {
			return fmt.Errorf("audit record args are not JSON (redact them, or leave them out): %w", err)
		}
		r.Args = c
	}
	for _, s := range []*string{
		&r.TraceID, &r.Principal, &r.Tenant, &r.AuthMethod, &r.ClientName, &r.ClientVersion,
		&r.ProtocolVersion, &r.SessionID, &r.RemoteAddr, &r.Method, &r.Target, &r.ToolVersion,
		&r.Mode, &r.Source, &r.ArgsHash, &r.Reason, &r.ErrorCode, &r.Suggestion, &r.Status, &r.Approval,
		(*string)(&r.Phase), (*string)(&r.Decision),
	} {
		*s = clean(*s)
	}
	return nil
}

// clean makes s storable in every store: PostgreSQL text holds neither NUL
// bytes nor invalid UTF-8, and a client must not be able to fail a whole
// batch — other callers' records with it — by putting one in a tool name.
func clean(s string) string {
	if strings.IndexByte(s, 0) < 0 && utf8.ValidString(s) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\ufffd"), "\x00", "\ufffd")
}

// Close stops accepting records, waits until every queued record is
// appended (or has failed) and written to the sinks, and returns. It does
// not close the store. Close may be called more than once.
func (w *Writer) Close() error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.queue)
	}
	w.mu.Unlock()
	<-w.done
	return nil
}

// Stats returns the writer's counters.
func (w *Writer) Stats() Stats {
	st := Stats{
		Records:    w.appended.Load(),
		Batches:    w.batches.Load(),
		LastBatch:  int(w.lastBatch.Load()),
		MaxBatch:   int(w.maxBatch.Load()),
		Failed:     w.failed.Load(),
		Rejected:   w.rejected.Load(),
		SinkErrors: w.sinkErrors.Load(),
		QueueDepth: len(w.queue),
		QueueSize:  cap(w.queue),
		Unrecorded: w.unrecorded.Load(),
	}
	if sp := w.opts.Spool; sp != nil {
		st.Spooled, st.Replayed, st.SpoolPending = sp.spooled.Load(), sp.replayed.Load(), sp.Pending()
	}
	return st
}

// run is the one goroutine that extends the chain: it takes whatever is
// queued as a batch, appends it, and answers every writer in it. It returns
// once Close has closed the queue and the queue is empty.
func (w *Writer) run() {
	defer close(w.done)
	batch := make([]*Pending, 0, w.opts.MaxBatch)
	for {
		p, ok := <-w.queue
		if !ok {
			return
		}
		batch = append(batch[:0], p)
		var deadline <-chan time.Time
		if w.opts.MaxDelay > 0 {
			deadline = time.After(w.opts.MaxDelay)
		}
	collect:
		for ok && len(batch) < w.opts.MaxBatch {
			select {
			case p, ok = <-w.queue:
			default:
				if deadline == nil {
					break collect
				}
				select {
				case p, ok = <-w.queue:
				case <-deadline:
					break collect
				}
			}
			if ok {
				batch = append(batch, p)
			}
		}
		w.commit(batch)
		if !ok {
			return
		}
	}
}

// commit chains, appends and acknowledges one batch.
func (w *Writer) commit(batch []*Pending) {
	kept := batch[:0]
	for _, p := range batch {
		if !p.taken.CompareAndSwap(pendingQueued, pendingTaken) {
			p.err = fmt.Errorf("recording %s of %s: %w", p.rec.Phase, p.rec.TraceID, ErrAbandoned)
			w.failed.Add(1)
			close(p.done)
			continue
		}
		kept = append(kept, p)
	}
	batch = kept
	if len(batch) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.opts.AppendTimeout)
	defer cancel()
	err := error(nil)
	if w.resync {
		err = w.syncContext(ctx)
	}
	if err == nil {
		w.recs = w.recs[:0]
		seq, prev := w.seq, w.prev
		for _, p := range batch {
			r := &p.rec
			seq++
			r.Instance, r.Seq, r.PrevHash = w.instance, seq, prev
			r.Hash = w.chain.hash(r)
			prev = r.Hash
			w.recs = append(w.recs, r)
		}
		if err = w.store.Append(ctx, w.recs); err == nil {
			w.seq, w.prev = seq, prev
		}
	}
	if err != nil {
		// The chain does not advance. The Append may have committed all
		// the same (a connection lost after COMMIT), so the next batch
		// starts from what the store holds rather than from memory.
		w.resync = true
		w.failed.Add(uint64(len(batch)))
		err = fmt.Errorf("recording audit records of instance %s: %w", w.instance, err)
		for _, p := range batch {
			p.err = err
			close(p.done)
		}
		return
	}
	n := len(batch)
	w.appended.Add(uint64(n))
	w.batches.Add(1)
	w.lastBatch.Store(int64(n))
	if int64(n) > w.maxBatch.Load() {
		w.maxBatch.Store(int64(n))
	}
	// Encode before answering: once answered, a record is no longer ours.
	w.lines = w.lines[:0]
	if len(w.opts.Sinks) > 0 {
		for _, r := range w.recs {
			w.lines = appendLine(w.lines, r)
		}
	}
	for _, p := range batch {
		close(p.done)
	}
	for _, s := range w.opts.Sinks {
		if _, err := s.Write(w.lines); err != nil {
			w.sinkErrors.Add(1)
		}
	}
}

func (w *Writer) sync() error {
	ctx, cancel := context.WithTimeout(context.Background(), w.opts.AppendTimeout)
	defer cancel()
	return w.syncContext(ctx)
}

// syncContext reads the head of the chain from the store.
func (w *Writer) syncContext(ctx context.Context) error {
	seq, hash, err := w.store.Last(ctx, w.instance)
	if err != nil {
		return fmt.Errorf("reading the head of the chain: %w", err)
	}
	if seq == 0 {
		hash = w.chain.genesis(w.instance)
	}
	w.seq, w.prev, w.resync = seq, hash, false
	return nil
}
