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
	"sync"
	"sync/atomic"
)

// Spool keeps, in a local file, the outcome records of calls that ran but
// whose outcome the store did not take in time (an append error, a full
// disk, a store that stopped answering), so that the log is never silently
// short: a call's response leaves once its outcome is durable in the store
// or in the spool. Replay later writes them to the store, marked Late.
//
// The file holds one record a line, as the sinks write them (without chain
// fields: a record is chained when it is replayed), appended and synced to
// disk (fsync) before Add returns. A crash mid-line leaves a torn last line,
// which Replay skips and counts. Replay is at least once: a record stored
// and not yet removed from the spool when the process died is found in the
// store by its trace id and not written again.
//
// A Spool is safe for concurrent use.
type Spool struct {
	path string

	mu sync.Mutex // serialises appends and the hand-over to Replay
	f  *os.File   // open for appending; nil after a failure, reopened by Add

	replayMu sync.Mutex // one Replay at a time

	spooled, replayed, torn atomic.Uint64
	pending                 atomic.Int64 // records in the files, as far as this process knows
	kick                    chan struct{}
}

// OpenSpool opens (creating, private to its user) the spool file at path,
// and the directory it is in if need be. Records left there by a previous
// process are replayed by the next Replay.
func OpenSpool(path string) (*Spool, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("audit spool %s: %w", path, err)
	}
	s := &Spool{path: path, kick: make(chan struct{}, 1)}
	if err := s.open(); err != nil {
		return nil, err
	}
	n := 0
	for _, p := range []string{s.replaying(), path} {
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

// Path is the spool file's path.
func (s *Spool) Path() string { return s.path }

// replaying is the file Replay works from: the spool, moved aside so that
// Add goes on appending to a fresh one meanwhile.
func (s *Spool) replaying() string { return s.path + ".replay" }

func (s *Spool) open() error {
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit spool %s: %w", s.path, err)
	}
	s.f = f
	return nil
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

// fail drops the file after a failed write: a short write may have left a
// torn line, which the next Add starts after, on a line of its own.
func (s *Spool) fail(err error) error {
	s.f.Close()
	s.f = nil
	if f, oerr := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND, 0); oerr == nil {
		f.Write([]byte("\n")) // best effort: Replay skips blank lines
		f.Close()
	}
	return fmt.Errorf("audit spool %s: %w", s.path, err)
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
// Late, in the order they were spooled, skipping any whose trace already
// has an outcome in the store, and removes them from the spool once all
// are stored. It returns how many it wrote, and the first error, which
// leaves the rest for the next Replay.
func (s *Spool) Replay(ctx context.Context, w *Writer) (int, error) {
	s.replayMu.Lock()
	defer s.replayMu.Unlock()
	// Move the spool aside, unless a previous Replay left one there.
	if _, err := os.Stat(s.replaying()); errors.Is(err, os.ErrNotExist) {
		s.mu.Lock()
		st, err := os.Stat(s.path)
		if err == nil && st.Size() > 0 {
			if s.f != nil {
				s.f.Close()
				s.f = nil
			}
			err = os.Rename(s.path, s.replaying())
			if err == nil {
				err = syncDir(filepath.Dir(s.path))
			}
		}
		s.mu.Unlock()
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return 0, fmt.Errorf("audit spool %s: %w", s.path, err)
		}
	} else if err != nil {
		return 0, fmt.Errorf("audit spool %s: %w", s.replaying(), err)
	}
	data, err := os.ReadFile(s.replaying())
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("audit spool %s: %w", s.replaying(), err)
	}
	written := 0
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
		done, err := hasOutcome(ctx, w.store, r.TraceID)
		if err != nil {
			return written, err
		}
		if !done {
			r.Late = true
			if err := w.Write(ctx, &r); err != nil {
				return written, err
			}
			written++
			s.replayed.Add(1)
		}
	}
	if err := os.Remove(s.replaying()); err != nil {
		return written, fmt.Errorf("audit spool %s: %w", s.replaying(), err)
	}
	s.mu.Lock()
	n, err := countLines(s.path)
	if err == nil {
		s.pending.Store(int64(n))
	}
	s.mu.Unlock()
	if err != nil {
		return written, fmt.Errorf("audit spool %s: %w", s.path, err)
	}
	return written, syncDir(filepath.Dir(s.path))
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
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
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
