package cli

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/wardenmcp/warden/examples/demo"
	"github.com/wardenmcp/warden/internal/config"
	"github.com/wardenmcp/warden/internal/server"
)

// auditedDemo serves a few calls through the demo configuration so that
// its audit log holds a chain, and returns the configuration path and the
// state database.
func auditedDemo(t *testing.T) (cfgPath, stateDB string) {
	t.Helper()
	cfgPath = demoConfig(t)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	srv, err := server.Build(ctx, cfg, &server.Options{Stdio: true})
	if err != nil {
		t.Fatal(err)
	}
	st, ct := mcp.NewInMemoryTransports()
	if _, err := srv.MCP().Connect(ctx, st, nil); err != nil {
		t.Fatal(err)
	}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "t", Version: "1"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"C-1001", "C-1002", "C-1003", "bad"} {
		if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "get_customer", Arguments: map[string]any{"customer_id": id}}); err != nil {
			t.Fatal(err)
		}
	}
	cs.Close()
	srv.Close()
	return cfgPath, filepath.Join(os.Getenv(demo.DirEnv), "state.db")
}

func TestAuditVerifyPointsAtTampering(t *testing.T) {
	tests := []struct {
		name   string
		tamper string // SQL run against the state database
		want   string
	}{
		{"untouched", "", "OK: 1 chain(s) verified"},
		{"modified", `UPDATE warden_audit SET principal = 'someone-else' WHERE seq = 3`, "BROKEN at seq 3"},
		{"deleted", `DELETE FROM warden_audit WHERE seq = 2`, "BROKEN at seq"},
		{"reordered", `UPDATE warden_audit SET seq = -2 WHERE seq = 2; UPDATE warden_audit SET seq = 2 WHERE seq = 4;
			UPDATE warden_audit SET seq = 4 WHERE seq = -2`, "BROKEN at seq 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfgPath, stateDB := auditedDemo(t)
			if tt.tamper != "" {
				db, err := sql.Open("sqlite", stateDB)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := db.Exec(tt.tamper); err != nil {
					t.Fatal(err)
				}
				db.Close()
			}
			code, out, errOut := runCLI(t, nil, "audit", "verify", "--config", cfgPath)
			if !strings.Contains(out, tt.want) {
				t.Errorf("verify says:\n%s%s\nwant %q", out, errOut, tt.want)
			}
			if wantCode := map[bool]int{true: exitOK, false: exitFailure}[tt.tamper == ""]; code != wantCode {
				t.Errorf("exit code %d, want %d", code, wantCode)
			}
		})
	}
}

func TestAuditQueryAndTail(t *testing.T) {
	cfgPath, _ := auditedDemo(t)
	code, out, errOut := runCLI(t, nil, "audit", "query", "--config", cfgPath, "--error-code", "INVALID_ARGUMENT")
	if code != exitOK || strings.Count(out, "INVALID_ARGUMENT") != 1 || !strings.Contains(out, "refusal") {
		t.Errorf("query by error code (exit %d):\n%s%s", code, out, errOut)
	}
	code, out, _ = runCLI(t, nil, "audit", "tail", "--config", cfgPath, "-n", "2", "--json")
	if code != exitOK || strings.Count(out, "\n") != 2 || !strings.Contains(out, `"phase":"refusal"`) {
		t.Errorf("tail -n 2 (exit %d):\n%s", code, out)
	}
}

// The demo's planted note reaches the model flagged, with its instructions
// marked as data.
func TestDemoFlagsThePlantedNote(t *testing.T) {
	ctx := context.Background()
	_, cs := demoAgent(t, "", nil)
	res, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: "crm://customers/C-1002"})
	if err != nil {
		t.Fatal(err)
	}
	meta, _ := res.Meta["io.wardenmcp/guard"].(map[string]any)
	if meta == nil || meta["injection_flags"] == nil {
		t.Fatalf("the planted note is not flagged: %+v", res.Meta)
	}
	clean, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: "crm://customers/C-1001"})
	if err != nil {
		t.Fatal(err)
	}
	if clean.Meta["io.wardenmcp/guard"] != nil {
		t.Errorf("an ordinary record is flagged: %+v", clean.Meta)
	}
}
