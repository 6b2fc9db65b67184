package ratelimit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/pipeline"
)

// redisURL returns the Redis to test against, or skips the test.
func redisURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("WARDEN_TEST_REDIS_URL")
	if u == "" {
		t.Skip("WARDEN_TEST_REDIS_URL is not set; set it (e.g. redis://127.0.0.1:6379/0) to test the Redis store")
	}
	return u
}

// testPrefix returns a key prefix of the test's own, and deletes its keys
// when the test ends.
func testPrefix(t testing.TB, url string) string {
	t.Helper()
	b := make([]byte, 8)
	rand.Read(b)
	prefix := "warden-test:" + hex.EncodeToString(b) + ":"
	t.Cleanup(func() {
		opt, err := redis.ParseURL(url)
		if err != nil {
			t.Error(err)
			return
		}
		c := redis.NewClient(opt)
		defer c.Close()
		ctx := context.Background()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Errorf("cleaning up %s*: %v", prefix, err)
		}
	})
	return prefix
}

// newRedisLimiter returns a Limiter over the Redis at url, with keys under
// prefix.
func newRedisLimiter(t testing.TB, url, prefix string, cfg *config.RateLimits, log *slog.Logger) *Limiter {
	t.Helper()
	c := *cfg
	c.Store, c.RedisURL = "redis", url
	l, err := newLimiter(context.Background(), &c, log, time.Now, prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// redisMaker returns a maker of Limiters over the test Redis, each with
// keys of its own.
func redisMaker(t *testing.T) maker {
	return func(t *testing.T, cfg *config.RateLimits) (*Limiter, func(time.Duration)) {
		url := redisURL(t)
		return newRedisLimiter(t, url, testPrefix(t, url), cfg, nil), nil
	}
}

func TestRedisSharedByInstances(t *testing.T) {
	url := redisURL(t)
	prefix := testPrefix(t, url)
	cfg := limitsCfg(&config.Limit{Rate: "1/h", Burst: 5}, nil, nil)
	a := newRedisLimiter(t, url, prefix, cfg, nil)
	b := newRedisLimiter(t, url, prefix, cfg, nil)
	for i := range 5 {
		mustAdmit(t, []*Limiter{a, b}[i%2], call("alice", "search"))
	}
	mustRefuse(t, a, call("alice", "search"), 3600, "to search per caller")
	mustRefuse(t, b, call("alice", "search"), 3600, "to search per caller")
}

// The multi-process test: three copies of this test binary, each with its
// own Limiter and Redis client, hammer one limit at once.
const (
	helperEnv        = "WARDEN_RATELIMIT_HELPER"
	helperPrefixEnv  = "WARDEN_RATELIMIT_HELPER_PREFIX"
	helperProcesses  = 3
	helperWorkers    = 8
	helperAttempts   = 300 // per worker
	helperRate       = 20  // per second
	helperBurst      = 10
	helperPrincipal  = "hammer"
	helperTool       = "search_orders"
	helperResultLine = "admitted %d of %d"
)

var helperLimits = limitsCfg(&config.Limit{Rate: strconv.Itoa(helperRate) + "/s", Burst: helperBurst}, nil, nil)

// TestHelperProcess is not a test: it is one of the processes of
// TestRedisMultiProcess.
func TestHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("a helper for TestRedisMultiProcess")
	}
	l := newRedisLimiter(t, redisURL(t), os.Getenv(helperPrefixEnv), helperLimits, nil)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		admitted int
	)
	for range helperWorkers {
		wg.Go(func() {
			n := 0
			for range helperAttempts {
				release, err := l.Admit(context.Background(), call(helperPrincipal, helperTool))
				if err == nil {
					n++
					release()
					continue
				}
				if perr := pipeline.AsError(err); perr.Code != pipeline.RateLimited {
					t.Errorf("Admit: %v", err)
					return
				}
			}
			mu.Lock()
			admitted += n
			mu.Unlock()
		})
	}
	wg.Wait()
	fmt.Printf(helperResultLine+"\n", admitted, helperWorkers*helperAttempts)
}

func TestRedisMultiProcess(t *testing.T) {
	url := redisURL(t)
	prefix := testPrefix(t, url)
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewClient(opt)
	defer client.Close()
	ctx := t.Context()

	start, err := client.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	cmds := make([]*exec.Cmd, helperProcesses)
	outs := make([]*bytes.Buffer, helperProcesses)
	for i := range cmds {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperEnv+"=1", helperPrefixEnv+"="+prefix)
		outs[i] = new(bytes.Buffer)
		cmd.Stdout, cmd.Stderr = outs[i], outs[i]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[i] = cmd
	}
	sum, attempts := 0, 0
	line := regexp.MustCompile(`(?m)^admitted (\d+) of (\d+)$`)
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper process %d: %v\n%s", i, err, outs[i])
		}
		m := line.FindStringSubmatch(outs[i].String())
		if m == nil {
			t.Fatalf("helper process %d printed no result:\n%s", i, outs[i])
		}
		n, _ := strconv.Atoi(m[1])
		a, _ := strconv.Atoi(m[2])
		t.Logf("process %d: admitted %d of %d", i, n, a)
		sum += n
		attempts += a
	}
	end, err := client.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}

	// GCRA from an unused key admits at most burst + rate × elapsed calls,
	// elapsed measured on Redis's clock, which the script uses.
	elapsed := end.Sub(start)
	limit := helperBurst + int(elapsed*helperRate/time.Second)
	t.Logf("%d processes admitted %d of %d calls in %v (Redis time); the limit allows at most %d",
		helperProcesses, sum, attempts, elapsed.Round(time.Millisecond), limit)
	if sum > limit {
		t.Fatalf("admitted %d calls, more than burst %d + %d/s × %v = %d", sum, helperBurst, helperRate, elapsed, limit)
	}
	if sum < helperBurst {
		t.Fatalf("admitted %d calls, fewer than the burst %d", sum, helperBurst)
	}
	if sum == attempts {
		t.Fatalf("every one of %d calls was admitted; the test did not reach the limit", attempts)
	}
}

// privateRedis runs a redis-server of the test's own on a Unix socket and
// returns its URL and a function that kills it.
func privateRedis(t *testing.T) (url string, kill func()) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		bin = "/usr/bin/redis-server"
		if _, err := os.Stat(bin); err != nil {
			t.Skip("redis-server is not installed; it is needed to test a Redis that stops")
		}
	}
	sock := filepath.Join(t.TempDir(), "redis.sock")
	cmd := exec.Command(bin, "--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no", "--logfile", "")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	kill = func() {
		once.Do(func() {
			cmd.Process.Kill()
			cmd.Wait()
		})
	}
	t.Cleanup(kill)

	// Wait for the server to say it is ready, reading its log meanwhile.
	ready, done := make(chan struct{}), make(chan struct{})
	var log strings.Builder
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		waiting := true
		for sc.Scan() {
			if waiting {
				log.WriteString(sc.Text() + "\n")
				if strings.Contains(strings.ToLower(sc.Text()), "ready to accept connections") {
					close(ready)
					waiting = false
				}
			}
		}
	}()
	select {
	case <-ready:
	case <-done:
		kill()
		t.Fatalf("redis-server exited:\n%s", log.String())
	case <-time.After(10 * time.Second):
		kill()
		<-done
		t.Fatalf("redis-server did not start:\n%s", log.String())
	}
	return "unix://" + sock, kill
}

// logBuffer is a concurrency-safe log destination.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) count(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), s)
}

func TestRedisStopped(t *testing.T) {
	const burst = 3
	for _, mode := range []string{"refuse", "local"} {
		t.Run(mode, func(t *testing.T) {
			url, kill := privateRedis(t)
			var logs logBuffer
			cfg := limitsCfg(&config.Limit{Rate: "1/h", Burst: burst}, nil, nil)
			cfg.OnStoreError = mode
			l := newRedisLimiter(t, url, keyPrefix, cfg, slog.New(slog.NewTextHandler(&logs, nil)))

			// While Redis runs, it keeps the limit.
			mustAdmit(t, l, call("alice", "search"))
			kill()

			switch mode {
			case "refuse":
				for range 5 {
					_, err := l.Admit(t.Context(), call("alice", "list"))
					var perr *pipeline.Error
					if !errors.As(err, &perr) || perr.Code != pipeline.Unavailable || !strings.Contains(perr.Message, "Redis") {
						t.Fatalf("with Redis stopped, Admit = %v, want UNAVAILABLE naming Redis", err)
					}
				}
			case "local":
				// This instance's memory starts afresh, and still limits.
				for range burst {
					mustAdmit(t, l, call("alice", "search"))
				}
				mustRefuse(t, l, call("alice", "search"), 3600, "to search per caller")
				mustRefuse(t, l, call("alice", "search"), 3600, "to search per caller")
			}
			if n := logs.count("rate limits: Redis failed"); n != 1 {
				t.Fatalf("the outage was logged %d times, want once per %v:\n%s", n, storeLogEvery, logs.buf.String())
			}
			if l.inFlight["alice"] != 0 {
				t.Fatal("a refused call kept its in-flight slot")
			}
		})
	}
}

func TestRedisUnreachableAtStart(t *testing.T) {
	url, kill := privateRedis(t)
	kill()
	var logs logBuffer
	cfg := limitsCfg(nil, nil, nil)
	l := newRedisLimiter(t, url, keyPrefix, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if logs.count("Redis cannot be reached yet") != 1 {
		t.Fatalf("no warning that Redis is unreachable:\n%s", logs.buf.String())
	}
	_, err := l.Admit(t.Context(), call("alice", "search"))
	if perr := pipeline.AsError(err); perr.Code != pipeline.Unavailable {
		t.Fatalf("Admit = %v, want UNAVAILABLE", err)
	}
}
