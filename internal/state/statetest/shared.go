package statetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis returns a client on the Redis WARDEN_TEST_REDIS_URL names and a key
// prefix of the test's own; every key under it is deleted, and the client
// closed, when the test ends. Without the variable the test is skipped.
func Redis(t testing.TB) (*redis.Client, string) {
	t.Helper()
	u := os.Getenv("WARDEN_TEST_REDIS_URL")
	if u == "" {
		t.Skip("WARDEN_TEST_REDIS_URL is not set; set it (e.g. redis://127.0.0.1:6379/0) to test the Redis store")
	}
	opt, err := redis.ParseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 8)
	rand.Read(b)
	prefix := "warden-test:" + hex.EncodeToString(b) + ":"
	client := redis.NewClient(opt)
	t.Cleanup(func() {
		ctx := context.Background()
		iter := client.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			client.Del(ctx, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Errorf("cleaning up %s*: %v", prefix, err)
		}
		client.Close()
	})
	return client, prefix
}

// Clock is a settable clock for stores that take one.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a Clock set to t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
