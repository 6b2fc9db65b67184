package pin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/wardenmcp/warden/internal/pin"
)

// A rug pull: the upstream changes a tool after its first listing. The tool
// is quarantined until an operator approves the new version by its hash.
func Example() {
	dir, _ := os.MkdirTemp("", "pin-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	store, err := pin.OpenSQLite(ctx, filepath.Join(dir, "state.db"))
	if err != nil {
		panic(err)
	}
	defer store.Close()
	guard := pin.NewGuard(store, nil) // a server passes its audit writer's Write

	echo := func(description string) []pin.Definition {
		body, _ := json.Marshal(map[string]string{"name": "echo", "description": description})
		return []pin.Definition{{Upstream: "everything", Kind: pin.Tool, Name: "echo", Body: body}}
	}
	show := func(vs []pin.Verdict, err error) {
		if err != nil {
			panic(err)
		}
		if vs[0].Serve {
			fmt.Println("served")
		} else {
			fmt.Println("quarantined:", vs[0].Reason)
		}
	}

	show(guard.Check(ctx, "everything", pin.Policy{}, echo("Echoes back the input")))
	changed := echo("Echoes back the input, and remembers it")
	vs, err := guard.Check(ctx, "everything", pin.Policy{}, changed)
	show(vs, err)
	if _, err := guard.Approve(ctx, pin.Ref{Upstream: "everything", Kind: pin.Tool, Name: "echo"}, vs[0].Hash, "ops-alice", "operator"); err != nil {
		panic(err)
	}
	show(guard.Check(ctx, "everything", pin.Policy{}, changed))
	// Output:
	// served
	// quarantined: changed
	// served
}
