package audit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"os"
	"strings"

	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/pipeline"
)

func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "warden-audit")
	defer os.RemoveAll(dir)
	cfg := &config.Config{Dir: dir} // SQLite beside the configuration

	store, err := audit.Open(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	secret := []byte(strings.Repeat("s", 32)) // in production: 32 random bytes, kept out of the database
	var stream strings.Builder                // os.Stdout, or a file, for the SIEM
	w, err := audit.NewWriter(store, secret, "node-a", audit.WriterOptions{Sinks: []io.Writer{&stream}})
	if err != nil {
		log.Fatal(err)
	}

	// A call of a write tool arrives: record the intent before the tool
	// runs. (A read is recorded once, by its outcome.)
	c := &pipeline.Call{
		Spec:      &pipeline.Spec{Method: pipeline.CallTool, Name: "update_customer", Version: "v1", Mode: pipeline.Write, Source: "postgres"},
		Target:    "update_customer",
		Raw:       json.RawMessage(`{"customer_id": "c-42", "api_token": "hunter2"}`),
		Principal: &pipeline.Principal{ID: "ci-bot", Tenant: "acme", AuthMethod: "api_key"},
		TraceID:   "4bf92f3577b34da6",
	}
	intent := audit.FromCall(c, audit.Intent)
	intent.Decision = audit.Allow
	intent.Args = json.RawMessage(`{"api_token":"[REDACTED]","customer_id":"c-42"}`)
	intent.ArgsHash = audit.ArgsHash(audit.ArgsKey(secret), c.Raw)
	if err := w.Write(ctx, intent); err != nil {
		fmt.Println(audit.Unavailable(err)) // refuse the call: the tool never runs
		return
	}

	// ... the tool runs; then record the outcome.
	outcome := audit.FromCall(c, audit.Outcome)
	outcome.Decision, outcome.Status, outcome.ResultBytes, outcome.Rows = audit.Allow, audit.StatusOK, 512, 1
	outcome.ResultTokens = audit.EstimateTokens(outcome.ResultBytes)
	if err := w.Write(ctx, outcome); err != nil {
		fmt.Println(audit.Unavailable(err))
		return
	}
	w.Close()

	fmt.Println(intent.Seq, outcome.Seq, outcome.PrevHash == intent.Hash)
	fmt.Println(strings.Count(stream.String(), "\n"), "lines streamed, token shown:", strings.Contains(stream.String(), "hunter2"))

	report, err := audit.Verify(ctx, store, secret)
	if err != nil {
		log.Fatal(err)
	}
	for _, ch := range report.Chains {
		fmt.Printf("%s: %d records verified, ok=%v\n", ch.Instance, ch.Verified, report.OK)
	}
	// Output:
	// 1 2 true
	// 2 lines streamed, token shown: false
	// node-a: 2 records verified, ok=true
}
