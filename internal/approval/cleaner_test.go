package approval

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// purgeRecorder is a Store whose Purge records its argument and returns
// err; its other methods are not called.
type purgeRecorder struct {
	Store
	mu     sync.Mutex
	before []time.Time
	err    error
}

func (p *purgeRecorder) Purge(_ context.Context, before time.Time) (int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.before = append(p.before, before)
	return 3, p.err
}

func (p *purgeRecorder) calls() []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Time(nil), p.before...)
}

// logBuffer is what a logger writes to, read by the test while the
// cleaner goes on writing.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestCleanerPurgesPeriodically(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs logBuffer
		log := slog.New(slog.NewTextHandler(&logs, nil))
		store := &purgeRecorder{}
		start := time.Now()
		stop := Cleaner(store, 24*time.Hour, time.Hour, log)

		synctest.Wait()
		if got := store.calls(); len(got) != 1 || !got[0].Equal(start.Add(-24*time.Hour)) {
			t.Fatalf("purges at start = %v; want one, of what is older than a day", got)
		}
		if !strings.Contains(logs.String(), "count=3") {
			t.Errorf("log = %q; want the count purged", logs.String())
		}

		time.Sleep(time.Hour)
		synctest.Wait()
		if got := store.calls(); len(got) != 2 || !got[1].Equal(start.Add(-23*time.Hour)) {
			t.Fatalf("purges after an hour = %v; want a second, an hour later", got)
		}

		stop()
		stop()
		time.Sleep(3 * time.Hour)
		synctest.Wait()
		if got := store.calls(); len(got) != 2 {
			t.Fatalf("%d purges after stop, want none", len(got)-2)
		}
	})
}

func TestCleanerLogsErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs logBuffer
		log := slog.New(slog.NewTextHandler(&logs, nil))
		store := &purgeRecorder{err: errors.New("disk full")}
		stop := Cleaner(store, time.Hour, time.Minute, log)
		defer stop()
		synctest.Wait()
		if s := logs.String(); !strings.Contains(s, "level=ERROR") || !strings.Contains(s, "disk full") {
			t.Fatalf("log = %q; want the error", s)
		}
		// It goes on trying.
		time.Sleep(time.Minute)
		synctest.Wait()
		if n := len(store.calls()); n != 2 {
			t.Fatalf("%d purges after a failure and a minute, want 2", n)
		}
	})
}
