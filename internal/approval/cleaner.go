package approval

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Cleaner purges, from a goroutine of its own, the requests of store that
// have been over for longer than retention (see Store.Purge): straight
// away, then at each interval every. It logs how many it deleted, and any
// error, to log (nil for slog.Default()). stop ends the goroutine and
// waits for it; it may be called more than once. Cleaner panics if
// retention or every is not positive.
func Cleaner(store Store, retention, every time.Duration, log *slog.Logger) (stop func()) {
	if retention <= 0 || every <= 0 {
		panic(fmt.Sprintf("approval: Cleaner needs a positive retention and interval, not %v and %v", retention, every))
	}
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			before := time.Now().Add(-retention)
			n, err := store.Purge(ctx, before)
			switch {
			case err != nil && ctx.Err() == nil:
				log.Error("approval: cannot purge old approval requests", "err", err)
			case n > 0:
				log.Info("approval: purged old approval requests", "count", n, "before", before)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(cancel)
		<-done
	}
}
