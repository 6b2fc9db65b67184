package console_test

import (
	"context"
	"log"
	"net/http"

	"github.com/wardenmcp/warden/internal/approval"
	"github.com/wardenmcp/warden/internal/audit"
	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/console"
	"github.com/wardenmcp/warden/internal/keys"
)

// The server mounts the console at /console/, over the stores it already
// has open, and audits the console's actions on its own audit chain.
func ExampleNew() {
	ctx := context.Background()
	cfg, err := config.Load("warden.yaml")
	if err != nil {
		log.Fatal(err)
	}
	approvals, err := approval.OpenStore(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer approvals.Close()
	apiKeys, err := keys.Open(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer apiKeys.Close()
	auditLog, err := audit.Open(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer auditLog.Close()
	secret, err := audit.LoadSecret(cfg)
	if err != nil {
		log.Fatal(err)
	}
	w, err := audit.NewWriter(auditLog, secret, "", audit.WriterOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()

	c := console.New(console.Options{
		Approvals: approvals, Audit: auditLog, AuditSecret: secret, Keys: apiKeys,
		Tools:  []console.Tool{{Name: "request_refund", Scope: "billing.refund", Mode: "write", Risk: "high"}},
		Record: w.Write,
	})
	mux := http.NewServeMux()
	mux.Handle("/console/", c)
	mux.Handle("/console", c) // else the mux redirects it, without the console's headers
	log.Fatal(http.ListenAndServe("127.0.0.1:8080", mux))
}
