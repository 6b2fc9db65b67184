package ratelimit

import (
	"context"
	"testing"

	"github.com/wardenmcp/warden/internal/config"
)

// benchLimits are limits no benchmark reaches, so every call is admitted
// and the benchmark measures the full check-and-commit.
var benchLimits = func() *config.RateLimits {
	l := &config.Limit{Rate: "1000000000/s", Burst: 1000000000}
	return limitsCfg(l, l, l)
}()

func benchmarkAdmit(b *testing.B, l *Limiter) {
	ctx := context.Background()
	c := call("alice", "search_orders")
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			release, err := l.Admit(ctx, c)
			if err != nil {
				b.Fatal(err)
			}
			release()
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				release, err := l.Admit(ctx, c)
				if err != nil {
					b.Error(err)
					return
				}
				release()
			}
		})
	})
}

func BenchmarkAdmitMemory(b *testing.B) {
	l, err := New(context.Background(), benchLimits, nil)
	if err != nil {
		b.Fatal(err)
	}
	benchmarkAdmit(b, l)
}

func BenchmarkAdmitRedis(b *testing.B) {
	url := redisURL(b)
	benchmarkAdmit(b, newRedisLimiter(b, url, testPrefix(b, url), benchLimits, nil))
}
