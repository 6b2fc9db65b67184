package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// RecoverOptions tunes Recover. The zero value is valid.
type RecoverOptions struct {
	// OrphanAfter is how long a writer instance may go without a heartbeat
	// before it is taken for dead and its open intents are closed by
	// another. Each instance beats every OrphanAfter/4. Default 1 minute.
	OrphanAfter time.Duration
	// Log receives what recovery did and what failed; nil discards it.
	Log *slog.Logger
}

// DefaultOrphanAfter is RecoverOptions.OrphanAfter's default.
const DefaultOrphanAfter = time.Minute

// Recovery is the background work Recover started; Stop ends it.
type Recovery struct {
	w    *Writer
	opts RecoverOptions
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// Recover makes the log whole after a crash or an outage, then keeps it
// so while the writer runs. At once, before it returns, it
//   - replays w's spool (WriterOptions.Spool) into the store;
//   - closes the intents of w's own chain that have no outcome — left by a
//     process that had the same instance id and ended without recording
//     them — with an outcome of status StatusUnknown;
//   - marks w's instance alive (a heartbeat in the store) and closes the
//     open intents of instances whose heartbeat is older than OrphanAfter.
//
// Then, in the background until Stop, it beats every OrphanAfter/4,
// closes the intents of instances found dead, and replays the spool after
// records are added to it (no sooner than the writer's AppendTimeout after,
// by which time an attempt to store the same record has ended), retrying
// with backoff while the store fails, and at each beat (for the files of
// processes that ended meanwhile).
//
// Open intents are of write calls (and, in logs written before 2026-12,
// of reads too: a read leaves no intent now). Closing records are written
// to w's chain, late, one for each open intent, naming the instance and seq of the intent they close; an intent
// whose trace has an outcome or refusal anywhere in the store is not open.
// A dead instance is claimed in the store before its intents are closed,
// so that two instances never both close them. Stores that keep no
// heartbeats (other than Warden's SQL store) close only w's own intents.
//
// Errors at start are logged, not returned: what failed is retried in the
// background, and the writer's own failures refuse calls meanwhile. ctx
// bounds the work done at start.
func Recover(ctx context.Context, w *Writer, opts RecoverOptions) *Recovery {
	if opts.OrphanAfter <= 0 {
		opts.OrphanAfter = DefaultOrphanAfter
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	r := &Recovery{w: w, opts: opts, stop: make(chan struct{}), done: make(chan struct{})}
	if err := r.replay(ctx); err != nil {
		opts.Log.Warn("audit: the spool could not be replayed at start; retrying in the background", "err", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*w.opts.AppendTimeout)
	n, err := r.closeOrphans(cctx, w.instance)
	cancel()
	if err != nil {
		opts.Log.Warn("audit: closing the open intents of this instance's chain", "instance", w.instance, "closed", n, "err", err)
	} else if n > 0 {
		opts.Log.Warn("audit: closed intents left open when this instance's previous process ended: their outcome is unknown", "instance", w.instance, "closed", n)
	}
	r.beat(ctx)
	go r.run()
	return r
}

// Stop ends the background work and waits for it.
func (r *Recovery) Stop() {
	r.once.Do(func() { close(r.stop) })
	<-r.done
}

func (r *Recovery) run() {
	defer close(r.done)
	beat := time.NewTicker(r.opts.OrphanAfter / 4)
	defer beat.Stop()
	var kick chan struct{}
	if sp := r.w.opts.Spool; sp != nil {
		kick = sp.kick
	}
	// retry fires when the spool is to be replayed: after a kick, once an
	// append of the same record has ended, and then with backoff. It
	// never fires within AppendTimeout of the latest kick: a record just
	// spooled may belong to a batch whose append is still under way.
	var (
		retry    <-chan time.Time
		lastKick time.Time
	)
	backoff := r.w.opts.AppendTimeout
	for {
		select {
		case <-r.stop:
			return
		case <-beat.C:
			r.beat(context.Background())
			// Another process sharing the spool directory may have ended
			// with records in its file since: look at each beat.
			if retry == nil {
				retry = time.After(0)
			}
		case <-kick:
			lastKick = time.Now()
			if retry == nil {
				retry = time.After(r.w.opts.AppendTimeout)
			}
		case <-retry:
			if wait := r.w.opts.AppendTimeout - time.Since(lastKick); wait > 0 {
				retry = time.After(wait)
				continue
			}
			retry = nil
			if err := r.replay(context.Background()); err != nil {
				r.opts.Log.Warn("audit: the spool could not be replayed; retrying", "in", backoff, "err", err)
				retry = time.After(backoff)
				backoff = min(2*backoff, 30*time.Second)
				continue
			}
			backoff = r.w.opts.AppendTimeout
		}
	}
}

// replay writes the spool to the store, under a deadline per record.
func (r *Recovery) replay(ctx context.Context) error {
	sp := r.w.opts.Spool
	if sp == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*r.w.opts.AppendTimeout)
	defer cancel()
	n, err := sp.Replay(ctx, r.w)
	if n > 0 {
		r.opts.Log.Warn("audit: outcomes kept in the spool are now in the store, marked late", "records", n)
	}
	return err
}

// beat marks this instance alive, then claims dead instances and closes
// their open intents.
func (r *Recovery) beat(ctx context.Context) {
	l, ok := r.w.store.(leaser)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, r.w.opts.AppendTimeout)
	defer cancel()
	now := time.Now()
	if err := l.Heartbeat(ctx, r.w.instance, now); err != nil {
		r.opts.Log.Warn("audit: recording this instance's heartbeat", "err", err)
		return
	}
	dead, err := l.ClaimDead(ctx, r.w.instance, now.Add(-r.opts.OrphanAfter))
	if err != nil {
		r.opts.Log.Warn("audit: looking for instances that ended", "err", err)
		return
	}
	for _, inst := range dead {
		// Each dead instance gets a deadline of its own.
		cctx, cancel := context.WithTimeout(context.Background(), 10*r.w.opts.AppendTimeout)
		n, err := r.closeOrphans(cctx, inst)
		if err == nil {
			err = l.Closed(cctx, inst, r.w.instance)
		}
		cancel()
		if err != nil {
			// Released, the claim is taken up again at the next beat.
			r.opts.Log.Warn("audit: closing the open intents of an instance that ended", "instance", inst, "closed", n, "err", err)
			rctx, cancel := context.WithTimeout(context.Background(), r.w.opts.AppendTimeout)
			l.Release(rctx, inst, r.w.instance)
			cancel()
			continue
		}
		r.opts.Log.Warn("audit: an instance stopped beating; closed its open intents: their outcome is unknown", "instance", inst, "closed", n, "after", r.opts.OrphanAfter)
	}
}

// closeOrphans records, in w's chain, an outcome of status StatusUnknown
// for each intent of instance that has none, and returns how many. It is
// called only when no call of instance is in flight (at start, for w's own
// chain; for an instance that has ended), so once it is done every intent
// up to the chain's head is closed, which the store remembers: the next
// time, only the records after it are searched.
func (r *Recovery) closeOrphans(ctx context.Context, instance string) (int, error) {
	l, _ := r.w.store.(leaser)
	var after int64
	if l != nil {
		var err error
		if after, err = l.ClosedThrough(ctx, instance); err != nil {
			return 0, err
		}
	}
	head, _, err := r.w.store.Last(ctx, instance)
	if err != nil || head <= after {
		return 0, err
	}
	open, err := orphans(ctx, r.w.store, instance, after)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, in := range open {
		if err := r.w.Write(ctx, Closing(in)); err != nil {
			return n, err
		}
		n++
	}
	if l != nil {
		return n, l.SetClosedThrough(ctx, instance, head)
	}
	return n, nil
}

// Closing returns the record that closes intent, whose outcome is unknown
// because its process ended first: an outcome of the same trace, call and
// caller, late, with status StatusUnknown and error code ErrorProcessEnded.
func Closing(intent *Record) *Record {
	c := *intent
	c.Instance, c.Seq, c.PrevHash, c.Hash = "", 0, "", ""
	c.Time = time.Time{} // now, when written
	c.Phase, c.Status, c.Late = Outcome, StatusUnknown, true
	c.ErrorCode = ErrorProcessEnded
	c.Reason = fmt.Sprintf("outcome unknown: the process of instance %s ended before recording the outcome of the call whose intent is its seq %d", intent.Instance, intent.Seq)
	c.Suggestion = "check the target for the effect of this call: it may or may not have run to the end"
	c.Duration, c.RetryAfter, c.ResultBytes, c.ResultTokens, c.Rows, c.Truncated = 0, 0, 0, 0, 0, false
	return &c
}

// leaser is implemented by stores that keep each writer instance's
// heartbeat, so that the open intents of an instance that died can be
// closed by another.
//
// Heartbeat records that instance is alive at at, and withdraws any claim
// on it. ClaimDead claims, for claimer, every instance other than itself
// whose heartbeat is before before and whose intents have not been closed
// (nor claimed by an instance that is itself alive), and returns them.
// Closed records that claimer closed instance's intents; Release gives a
// claim up. ClosedThrough is the seq up to which instance's intents are
// known closed (0 if none is), and SetClosedThrough records it.
type leaser interface {
	Heartbeat(ctx context.Context, instance string, at time.Time) error
	ClaimDead(ctx context.Context, claimer string, before time.Time) ([]string, error)
	Closed(ctx context.Context, instance, claimer string) error
	Release(ctx context.Context, instance, claimer string) error
	ClosedThrough(ctx context.Context, instance string) (int64, error)
	SetClosedThrough(ctx context.Context, instance string, seq int64) error
}

// orphanFinder is implemented by stores that find open intents without
// reading the whole log; orphans falls back to a scan for others.
type orphanFinder interface {
	Orphans(ctx context.Context, instance string, after int64) ([]*Record, error)
}

// orphans returns the intents of instance after seq after whose trace has
// no outcome or refusal in the store, in seq order.
func orphans(ctx context.Context, store Store, instance string, after int64) ([]*Record, error) {
	if f, ok := store.(orphanFinder); ok {
		return f.Orphans(ctx, instance, after)
	}
	var open []*Record
	closed := map[string]bool{}
	err := store.Scan(ctx, Query{}, func(r *Record) error {
		switch {
		case r.Phase != Intent:
			closed[r.TraceID] = true
		case r.Instance == instance && r.Seq > after:
			open = append(open, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("finding open intents of %s: %w", instance, err)
	}
	kept := open[:0]
	for _, r := range open {
		if !closed[r.TraceID] {
			kept = append(kept, r)
		}
	}
	return kept, nil
}

var errNoClaim = errors.New("the claim on the instance was lost")
