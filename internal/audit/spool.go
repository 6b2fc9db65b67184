package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// Spool keeps, in local files, the outcome records of write calls that ran
// but whose outcome the store did not take in time (an append error, a full
// disk, a store that stopped answering), so that the log is never silently
// short: a write's response leaves once its outcome is durable in the store
// or in the spool (a read's is withheld instead: see Auditor.Outcome).
// Replay later writes them to the store, marked Late.
//
// A spool is a directory. Each process appends to a file of its own,
// named for its writer instance and locked (flock) while the process
// lives, so that processes sharing a directory never replay one another's
// records while they run — and a process that starts replays the files
// of those that ended. A file holds one record a line, as the sinks write
// them (without chain fields: a record is chained when it is replayed),
// appended and synced to disk (fsync) before Add returns. A crash mid-line
// leaves a torn last line, which Replay skips and counts. Replay is at
// least once, and a record whose trace already has an outcome in the store
// (stored after all, or replayed just before a crash) is not written again.
//
// A Spool is safe for concurrent use.
type Spool struct {
	dir, own string

	mu sync.Mutex // serialises appends and the hand-over to Replay
	f  *os.File   // own, open for appending and locked; nil after a failure
	// replayF holds the lock of this process's file moved aside for
	// Replay, until it is replayed and removed, so that no other process
	// takes it for the file of a process that ended.
	replayF *os.File
	// held are records the file could not take, kept in memory for Replay
	// (see Hold): not durable, but stored if the process lives long enough.
	held []Record

	replayMu sync.Mutex // one Replay at a time

	spooled, replayed, torn atomic.Uint64
	pending                 atomic.Int64 // records in the files, as far as this process knows
	kick                    chan struct{}
}

// spoolExt ends the name of every spool file; replayExt, after it, that
// of a file being replayed while a fresh one takes appends.
const (
	spoolExt  = ".jsonl"
	replayExt = ".replay"
)

// OpenSpool opens the spool directory dir (creating it, private to its
// user) and, in it, the file of writer instance, which it locks: a second
// process with the same instance id fails here.
func OpenSpool(dir, instance string) (*Spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit spool %s: %w", dir, err)
	}
	name := strings.Map(func(r rune) rune {
		if r == '/' || r == filepath.Separator {
			return '_'
		}
		return r
	}, instance)
	s := &Spool{dir: dir, own: filepath.Join(dir, name+spoolExt), kick: make(chan struct{}, 1)}
	if err := s.open(); err != nil {
		return nil, err
	}
	files, err := s.files()
	if err != nil {
		s.f.Close()
		return nil, err
	}
	n := 0
	for _, p := range files {
		c, err := countLines(p)
		if err != nil {
			s.f.Close()
			return nil, fmt.Errorf("audit spool %s: %w", p, err)
		}
		n += c
	}
	s.pending.Store(int64(n))
	if n > 0 {
		s.signal()
	}
	return s, nil
}

// Dir is the spool's directory.
func (s *Spool) Dir() string { return s.dir }

// open opens and locks this process's file.
func (s *Spool) open() error {
	f, err := os.OpenFile(s.own, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit spool %s: %w", s.own, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return fmt.Errorf("audit spool %s: locking it: %w (does another running process have the same audit.instance?)", s.own, err)
	}
	s.f = f
	return nil
}

// files lists the spool files in the directory, replays first.
func (s *Spool) files() ([]string, error) {
	var out []string
	for _, pat := range []string{"*" + spoolExt + replayExt, "*" + spoolExt} {
		m, err := filepath.Glob(filepath.Join(s.dir, pat))
		if err != nil {
			return nil, err
		}
		out = append(out, m...)
	}
	return out, nil
}

// Add appends r, as it stands (chain fields are dropped), and returns once
// it is synced to disk, or with the error that stopped it: then r is not
// in the spool.
func (s *Spool) Add(r *Record) error {
	c := *r
	c.Instance, c.Seq, c.PrevHash, c.Hash = "", 0, "", ""
	line := appendLine(nil, &c)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		if err := s.open(); err != nil {
			return err
		}
	}
	if _, err := s.f.Write(line); err != nil {
		return s.fail(err)
	}
	if err := s.f.Sync(); err != nil {
		return s.fail(err)
	}
	s.spooled.Add(1)
	s.pending.Add(1)
	s.signal()
	return nil
}

// maxHeld bounds the records Hold keeps in memory.
const maxHeld = 10_000

// Hold keeps r in memory, for Replay to store, when Add failed: unlike
// Add's, its record is lost if the process ends first. It reports whether
// it kept r (false once maxHeld records are held).
func (s *Spool) Hold(r *Record) bool {
	c := *r
	c.Instance, c.Seq, c.PrevHash, c.Hash = "", 0, "", ""
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.held) >= maxHeld {
		return false
	}
	s.held = append(s.held, c)
	s.pending.Add(1)
	s.signal()
	return true
}

// fail ends a line a failed write may have torn, so that the next record
// starts on a line of its own (Replay skips the torn one, and blank lines).
func (s *Spool) fail(err error) error {
	s.f.Write([]byte("\n")) // best effort
	return fmt.Errorf("audit spool %s: %w", s.own, err)
}

func (s *Spool) signal() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Pending reports how many records wait in the spool.
func (s *Spool) Pending() int { return int(max(s.pending.Load(), 0)) }

// Replay writes the spooled records to the store through w, each marked
// Late, file by file in the order they were spooled, skipping any whose
// trace already has an outcome in the store, and removes each file once
// its records are stored: this process's own (moved aside first, so that
// Add goes on appending meanwhile), and those of processes that ended. It
// returns how many records it wrote, and the first error, which leaves
// the rest for the next Replay.
func (s *Spool) Replay(ctx context.Context, w *Writer) (int, error) {
	s.replayMu.Lock()
	defer s.replayMu.Unlock()
	written, err := s.replayHeld(ctx, w)
	if err != nil {
		return written, err
	}
	// This process's file: moved aside, still locked through the old
	// descriptor, which stays open until it is replayed.
	ownReplay := s.own + replayExt
	if _, err := os.Stat(ownReplay); errors.Is(err, os.ErrNotExist) {
		s.mu.Lock()
		st, err := os.Stat(s.own)
		if err == nil && st.Size() > 0 {
			err = os.Rename(s.own, ownReplay)
			if err == nil {
				s.replayF, s.f = s.f, nil
				err = errors.Join(syncDir(s.dir), s.open())
			}
		}
		s.mu.Unlock()
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return written, fmt.Errorf("audit spool %s: %w", s.own, err)
		}
	}
	files, err := s.files()
	if err != nil {
		return written, fmt.Errorf("audit spool %s: %w", s.dir, err)
	}
	for _, p := range files {
		if p == s.own {
			continue
		}
		n := 0
		if p == ownReplay {
			// Left by this process, or by an earlier one of the same
			// instance, which has ended: this process holds the lock of
			// the instance's file, so no other can be running.
			if n, err = s.replayFile(ctx, w, p, nil); err == nil {
				s.mu.Lock()
				if s.replayF != nil {
					s.replayF.Close()
					s.replayF = nil
				}
				s.mu.Unlock()
			}
		} else {
			n, err = s.replayForeign(ctx, w, p)
		}
		written += n
		if err != nil {
			break
		}
	}
	s.mu.Lock()
	if files, ferr := s.files(); ferr == nil {
		total := len(s.held)
		for _, p := range files {
			c, _ := countLines(p)
			total += c
		}
		s.pending.Store(int64(total))
	}
	s.mu.Unlock()
	return written, err
}

// replayHeld stores the records Hold kept; those it could not store are
// held again, ahead of any held meanwhile.
func (s *Spool) replayHeld(ctx context.Context, w *Writer) (int, error) {
	s.mu.Lock()
	held := s.held
	s.held = nil
	s.mu.Unlock()
	done, err := outcomesOf(ctx, w.store, held)
	if err != nil {
		s.mu.Lock()
		s.held = append(held, s.held...)
		s.mu.Unlock()
		return 0, err
	}
	written := 0
	for i := range held {
		stored, err := s.replayOne(ctx, w, &held[i], done)
		if err != nil {
			s.mu.Lock()
			s.held = append(held[i:], s.held...)
			s.mu.Unlock()
			return written, err
		}
		s.pending.Add(-1)
		if stored {
			written++
		}
	}
	return written, nil
}

// replayOne stores r, late, unless its trace is done (has an outcome in
// the store already), and reports whether it was written; r's trace is
// done then.
func (s *Spool) replayOne(ctx context.Context, w *Writer, r *Record, done map[string]bool) (bool, error) {
	if done[r.TraceID] {
		return false, nil
	}
	r.Late = true
	if err := w.Write(ctx, r); err != nil {
		return false, err
	}
	if r.TraceID != "" {
		done[r.TraceID] = true
	}
	s.replayed.Add(1)
	return true, nil
}

// replayForeign replays the file of another process if that process has
// ended, which its lock, released by the kernel then, tells.
func (s *Spool) replayForeign(ctx context.Context, w *Writer, path string) (int, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil // another process replayed it
	}
	if err != nil {
		return 0, fmt.Errorf("audit spool %s: %w", path, err)
	}
	defer f.Close()
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		return 0, nil // its process is alive, and replays it itself
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return 0, nil // replayed and removed while this one waited
	}
	return s.replayFile(ctx, w, path, f)
}

// replayFile writes the records of the file at path (open as f, if not
// nil) to the store, and removes it.
func (s *Spool) replayFile(ctx context.Context, w *Writer, path string, f *os.File) (int, error) {
	var (
		data []byte
		err  error
	)
	if f != nil {
		data, err = io.ReadAll(f)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return 0, fmt.Errorf("audit spool %s: %w", path, err)
	}
	var recs []Record
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var r Record
		if err := json.Unmarshal(line, &r); err != nil || r.Phase == "" {
			// A line torn by a crash or a failed write: its call's
			// response never left, so nothing was acknowledged with it.
			s.torn.Add(1)
			continue
		}
		recs = append(recs, r)
	}
	done, err := outcomesOf(ctx, w.store, recs)
	if err != nil {
		return 0, err
	}
	written := 0
	for i := range recs {
		stored, err := s.replayOne(ctx, w, &recs[i], done)
		if err != nil {
			return written, err
		}
		if stored {
			written++
		}
	}
	if err := os.Remove(path); err != nil {
		return written, fmt.Errorf("audit spool %s: %w", path, err)
	}
	return written, syncDir(s.dir)
}

// outcomeFinder is implemented by stores that can tell in one query which
// of many traces have an outcome or refusal stored. No index covers
// trace_id, so asking trace by trace (hasOutcome) reads the whole log for
// each: 40-70ms a record in a log of 80,000 records on SQLite, where
// Outcomes answers for 1,000 traces in 40ms.
type outcomeFinder interface {
	Outcomes(ctx context.Context, traces []string) (map[string]bool, error)
}

// outcomesOf returns the traces of recs that have an outcome or refusal in
// the store.
func outcomesOf(ctx context.Context, store Store, recs []Record) (map[string]bool, error) {
	var traces []string
	for _, r := range recs {
		if r.TraceID != "" {
			traces = append(traces, r.TraceID)
		}
	}
	if f, ok := store.(outcomeFinder); ok {
		return f.Outcomes(ctx, traces)
	}
	done := make(map[string]bool)
	for _, t := range traces {
		found, err := hasOutcome(ctx, store, t)
		if err != nil {
			return nil, err
		}
		done[t] = found
	}
	return done, nil
}

// hasOutcome reports whether the store holds an outcome or refusal of
// trace.
func hasOutcome(ctx context.Context, store Store, trace string) (bool, error) {
	if trace == "" {
		return false, nil
	}
	found := false
	err := store.Scan(ctx, Query{TraceID: trace}, func(r *Record) error {
		if r.Phase != Intent {
			found = true
			return errStop
		}
		return nil
	})
	if err != nil && err != errStop {
		return false, err
	}
	return found, nil
}

// Close closes the spool file.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, f := range []**os.File{&s.replayF, &s.f} {
		if *f != nil {
			errs = append(errs, (*f).Close())
			*f = nil
		}
	}
	return errors.Join(errs...)
}

// countLines counts the records in the file at path (0 if it is missing).
func countLines(path string) (int, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	r := bufio.NewReader(f)
	for {
		line, err := r.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			n++
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// syncDir makes a rename or removal in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
