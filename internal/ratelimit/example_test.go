package ratelimit_test

import (
	"context"
	"fmt"

	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/ratelimit"
	"github.com/wardenmcp/warden/pipeline"
)

func ExampleNew() {
	ctx := context.Background()
	l, err := ratelimit.New(ctx, &config.RateLimits{
		PerPrincipalTool: &config.Limit{Rate: "60/m", Burst: 2},
	}, nil)
	if err != nil {
		panic(err)
	}
	defer l.Close()

	c := &pipeline.Call{
		Spec:      &pipeline.Spec{Method: pipeline.CallTool, Name: "search_orders"},
		Principal: &pipeline.Principal{ID: "alice"},
	}
	for range 3 {
		release, err := l.Admit(ctx, c)
		if err != nil {
			e := pipeline.AsError(err)
			fmt.Printf("%s %q retry_after=%d\n", e.Code, e.Message, e.RetryAfter)
			continue
		}
		fmt.Println("admitted")
		release() // when the call ends
	}
	// Output:
	// admitted
	// admitted
	// RATE_LIMITED "rate limit reached: 60 calls per minute to search_orders per caller" retry_after=1
}
