package anomaly_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"

	"github.com/wardenmcp/warden/internal/anomaly"
	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/pipeline"
)

func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "warden-anomaly")
	defer os.RemoveAll(dir)
	store, err := anomaly.OpenStore(ctx, &config.Config{Dir: dir}) // SQLite beside the configuration
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	rules := anomaly.Rules{MaxRefusalsPerMinute: 2, Suspend: true}
	d, err := anomaly.New(ctx, rules, store, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		log.Fatal(err)
	}

	tool := func(context.Context, *pipeline.Call) (*pipeline.Result, error) { return &pipeline.Result{}, nil }
	h := pipeline.Chain(tool, d.Stage)
	call := &pipeline.Call{Target: "delete_customer", Principal: &pipeline.Principal{ID: "ci-bot"}}

	// The audit log records three refusals of ci-bot within a minute.
	for range 3 {
		d.Observe(&audit.Record{Phase: audit.Refusal, Principal: "ci-bot", Target: "delete_customer", ErrorCode: "PERMISSION_DENIED"})
	}
	_, err = h(ctx, call)
	fmt.Println(err)

	d.Close() // records the suspension in the store, if it is not there yet
	list, _ := store.List(ctx)
	fmt.Println(list[0].Principal, "suspended for", list[0].Reason)

	// `warden suspensions lift ci-bot`:
	store.Lift(ctx, "ci-bot")
	_, err = h(ctx, call)
	fmt.Println(err)
	// Output:
	// PERMISSION_DENIED: your access is suspended: unusual activity (rule max_refusals_per_minute); an operator can lift it with `warden suspensions lift`
	// ci-bot suspended for unusual activity (rule max_refusals_per_minute)
	// <nil>
}
