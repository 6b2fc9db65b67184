// Package relay carries messages between instances of one Warden server
// through Redis publish/subscribe: an instance listens on a key while it
// waits for something only another instance may receive, and that
// instance publishes it there.
//
//	r := relay.New(redisClient, "warden:")
//	stop, err := r.Listen("session-123", func(msg []byte) { ... })
//	defer stop()
//	// on another instance:
//	delivered, err := r.Publish(ctx, "session-123", msg)
//
// It is how a client's answer to a request one instance sent in the middle
// of a call (an elicitation on a 2025-11-25 session) reaches that instance
// when the load balancer delivers it to another (see warden.SessionRelay).
package relay

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a relay over one Redis connection for subscriptions and the
// client's pool for publishing.
type Redis struct {
	client *redis.Client
	prefix string

	mu        sync.Mutex
	pubsub    *redis.PubSub               // made on the first Listen
	listeners map[string]func(msg []byte) // by channel
}

// New returns a relay on client whose channels are named prefix + key.
func New(client *redis.Client, prefix string) *Redis {
	return &Redis{client: client, prefix: prefix, listeners: map[string]func([]byte){}}
}

// opTimeout bounds a subscription change or a publish.
const opTimeout = 2 * time.Second

// Listen calls deliver, on a goroutine of its own, with every message
// published for key, until stop is called. A key has one listener.
func (r *Redis) Listen(key string, deliver func(msg []byte)) (stop func(), err error) {
	ch := r.prefix + key
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pubsub == nil {
		ps := r.client.Subscribe(ctx)
		r.pubsub = ps
		go r.receive(ps)
	}
	if err := r.pubsub.Subscribe(ctx, ch); err != nil {
		return nil, err
	}
	r.listeners[ch] = deliver
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		r.mu.Lock()
		defer r.mu.Unlock()
		delete(r.listeners, ch)
		r.pubsub.Unsubscribe(ctx, ch)
	}, nil
}

func (r *Redis) receive(ps *redis.PubSub) {
	for m := range ps.Channel() {
		r.mu.Lock()
		deliver := r.listeners[m.Channel]
		r.mu.Unlock()
		if deliver != nil {
			go deliver([]byte(m.Payload))
		}
	}
}

// Publish sends msg to the listener of key, and reports whether an
// instance was listening.
func (r *Redis) Publish(ctx context.Context, key string, msg []byte) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	n, err := r.client.Publish(ctx, r.prefix+key, msg).Result()
	return n > 0, err
}

// Close ends the subscriptions.
func (r *Redis) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pubsub == nil {
		return nil
	}
	return r.pubsub.Close()
}
