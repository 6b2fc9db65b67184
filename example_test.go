package warden_test

import (
	"context"
	"fmt"
	"log"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden"
	"github.com/wardenmcp/warden/pipeline"
)

// A native tool, served through Warden's pipeline and called by an SDK
// client over an in-memory connection. The handler runs only with
// arguments that passed the schema; anything else is refused with a
// structured error the model can act on.
func Example() {
	ctx := context.Background()
	// Every call needs a verified principal holding the tool's scope. Over
	// stdio or in memory, the embedding program says who the caller is.
	srv := warden.New(&mcp.Implementation{Name: "orders", Version: "1.0.0"}, &warden.Options{
		LocalPrincipal: func(context.Context) (*pipeline.Principal, error) {
			return &pipeline.Principal{ID: "local", Scopes: []string{"orders.read"}}, nil
		},
	})
	srv.AddTool(&warden.Tool{
		Scope:       "orders.read",
		Name:        "get_order_status",
		Description: "Look up the status of one order by its number.",
		InputSchema: &jsonschema.Schema{
			Type:     "object",
			Required: []string{"order_id"},
			Properties: map[string]*jsonschema.Schema{
				"order_id": {Type: "string", Pattern: `^O-[0-9]{4,}$`, Description: "Order number, e.g. O-1001."},
			},
		},
		Handler: func(ctx context.Context, c *pipeline.Call) (*pipeline.Result, error) {
			id := c.Args["order_id"].(string) // validated before the handler runs
			return warden.TextResult("order " + id + " has shipped"), nil
		},
	})

	clientT, serverT := mcp.NewInMemoryTransports()
	if _, err := srv.MCP().Connect(ctx, serverT, nil); err != nil {
		log.Fatal(err)
	}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "client", Version: "1.0.0"}, nil).Connect(ctx, clientT, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer cs.Close()

	for _, id := range []string{"O-1001", "1001' OR '1'='1"} {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "get_order_status", Arguments: map[string]any{"order_id": id}})
		if err != nil {
			log.Fatal(err)
		}
		if res.IsError {
			fmt.Println("refused:", res.StructuredContent.(map[string]any)["error_code"])
			continue
		}
		fmt.Println(res.Content[0].(*mcp.TextContent).Text)
	}
	// Output:
	// order O-1001 has shipped
	// refused: INVALID_ARGUMENT
}
