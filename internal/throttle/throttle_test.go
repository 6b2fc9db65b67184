package throttle

import (
	"testing"
	"time"
)

func TestDoRunsOncePerIntervalAndCounts(t *testing.T) {
	now := time.Unix(1000, 0)
	th := &Throttle{Every: time.Minute, Now: func() time.Time { return now }}
	var runs []int
	record := func(n int) { runs = append(runs, n) }

	th.Do(record) // runs: first time
	for range 5 {
		now = now.Add(10 * time.Second)
		th.Do(record) // counted, not run
	}
	now = now.Add(20 * time.Second) // a minute after the first run
	th.Do(record)
	if len(runs) != 2 || runs[0] != 1 || runs[1] != 6 {
		t.Errorf("runs = %v, want [1 6]: once, then once more counting the 5 held back", runs)
	}
}
