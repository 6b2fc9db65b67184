//go:build race

package guard

// raceEnabled: the race detector makes sync.Pool drop items, so the
// regexp package allocates where it otherwise would not.
const raceEnabled = true
