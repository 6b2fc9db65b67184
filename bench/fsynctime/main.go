// Command fsynctime measures how long this disk takes to make a small write
// durable: the floor under any call that waits for a durable audit record
// (Warden's state store is SQLite in WAL mode with synchronous=FULL, so a
// commit appends to the WAL and fsyncs it). It writes 4 KiB at a time into
// a preallocated file in -dir, as a WAL reused after a checkpoint is
// written, fsyncs after each write, and prints the median and 90th
// percentile in milliseconds; then the same for writes that grow the file,
// as a WAL growing between checkpoints is written, which costs the file
// system a metadata update too; then the same as the first, in place, but
// each write after the process has slept for 0.5 ms, as a server's commit
// at one client follows a network round trip with its CPUs idle:
//
//	fsynctime -dir /var/lib/warden -n 300
//	fsync_p50_ms 0.412
//	fsync_p90_ms 0.655
//	fsync_samples 300
//	append_fsync_p50_ms 0.803
//	append_fsync_p90_ms 1.120
//	append_fsync_samples 300
//	idle_fsync_p50_ms 0.467
//	idle_fsync_p90_ms 0.702
//	idle_fsync_samples 300
//
// The last is what one client's call waits for. Back to back, each fsync
// finds the CPU, and in a virtual machine the host's I/O thread, still
// awake from the one before; after an idle gap they must be woken first.
// On the 2-core virtual machine of BENCHMARKS.md (2026-12-05, shared with
// other work) the medians were 0.14-0.18 ms back to back and 0.19-0.25 ms
// after 0.5 ms idle, in three runs of 500.
//
// It stops after -n fsyncs or -max time, whichever comes first, and removes
// its file.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"slices"
	"time"
)

const (
	block    = 4 << 10
	fileSize = 4 << 20
	// idleGap is the pause before each idle_fsync: about the round trip
	// between two calls of one client on loopback.
	idleGap = 500 * time.Microsecond
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("fsynctime: ")
	dir := flag.String("dir", ".", "`directory` on the disk to measure (the state store's)")
	n := flag.Int("n", 300, "fsyncs to time (1..100000)")
	maxTime := flag.Duration("max", 10*time.Second, "stop after this long even if fewer than -n were timed")
	flag.Parse()
	if flag.NArg() > 0 || *n < 1 || *n > 100000 || *maxTime <= 0 {
		flag.Usage()
		os.Exit(2)
	}
	for _, m := range []struct {
		prefix string
		grow   bool
		idle   time.Duration
	}{
		{"fsync", false, 0},
		{"append_fsync", true, 0},
		{"idle_fsync", false, idleGap},
	} {
		samples, err := measure(*dir, *n, *maxTime, m.grow, m.idle)
		if err != nil {
			log.Fatal(err)
		}
		slices.Sort(samples)
		fmt.Printf("%s_p50_ms %.3f\n", m.prefix, ms(samples[len(samples)/2]))
		fmt.Printf("%s_p90_ms %.3f\n", m.prefix, ms(samples[len(samples)*9/10]))
		fmt.Printf("%s_samples %d\n", m.prefix, len(samples))
	}
}

// measure times n fsyncs, each after a 4 KiB write: in place in a
// preallocated file, or (grow) at the end of a growing one; each after
// sleeping for idle, if not zero (the sleep is not timed).
func measure(dir string, n int, maxTime time.Duration, grow bool, idle time.Duration) ([]time.Duration, error) {
	f, err := os.CreateTemp(dir, "fsynctime-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	// Preallocate and make the file's size durable first, so that each
	// timed fsync covers a data write, not the file growing.
	buf := make([]byte, block)
	for off := int64(0); off < fileSize && !grow; off += block {
		if _, err := f.WriteAt(buf, off); err != nil {
			return nil, err
		}
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(maxTime)
	samples := make([]time.Duration, 0, n)
	for i := 0; i < n && (i == 0 || time.Now().Before(deadline)); i++ {
		buf[0] = byte(i)
		off := int64(i*block) % fileSize
		if grow {
			off = int64(i * block)
		}
		if idle > 0 {
			time.Sleep(idle)
		}
		t0 := time.Now()
		if _, err := f.WriteAt(buf, off); err != nil {
			return nil, err
		}
		if err := f.Sync(); err != nil {
			return nil, err
		}
		samples = append(samples, time.Since(t0))
	}
	return samples, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
