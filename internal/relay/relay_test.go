package relay_test

import (
	"context"
	"crypto/rand"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wardenmcp/warden/internal/relay"
)

// TestRedis relays a message between two relays, as two instances hold
// them, and none once the listener has stopped.
func TestRedis(t *testing.T) {
	url := os.Getenv("WARDEN_TEST_REDIS_URL")
	if url == "" {
		t.Skip("WARDEN_TEST_REDIS_URL is not set")
	}
	o, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	prefix := "warden-test-relay-" + rand.Text() + ":"
	open := func() *relay.Redis {
		c := redis.NewClient(o)
		r := relay.New(c, prefix)
		t.Cleanup(func() { r.Close(); c.Close() })
		return r
	}
	waiting, other := open(), open()
	ctx := context.Background()

	got := make(chan string, 1)
	stop, err := waiting.Listen("k", func(msg []byte) { got <- string(msg) })
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := other.Publish(ctx, "k", []byte("answer")); err != nil || !ok {
		t.Fatalf("Publish to a listened key: %v, %v; want delivered", ok, err)
	}
	select {
	case m := <-got:
		if m != "answer" {
			t.Errorf("delivered %q, want %q", m, "answer")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the message was not delivered")
	}
	if ok, err := other.Publish(ctx, "another key", []byte("x")); err != nil || ok {
		t.Errorf("Publish to a key nobody listens on: %v, %v; want not delivered", ok, err)
	}
	stop()
	// The unsubscription travels on another connection than the publish:
	// it takes effect within moments, not necessarily before the next one.
	deadline := time.Now().Add(5 * time.Second)
	for {
		ok, err := other.Publish(ctx, "k", []byte("late"))
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Publish after the listener stopped is still delivered")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
