package server

import (
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wardenmcp/warden/internal/config"
)

// declBase is a valid configuration that each case below breaks in one
// way, in the keys that belong to a source's kind: the kind finds what is
// wrong when the server is built (as warden check does), and says where,
// as the configuration's own checks do.
const declBase = `
server:
  name: test
sources:
  crm:
    kind: sqlite
    path: crm.db
tools:
  get_customer:
    description: Look up one customer.
    scope: crm.read
    source: crm
    statement: SELECT id FROM customers WHERE id = :customer_id
    parameters:
      customer_id:
        type: string
        description: Customer id.
        pattern: ^C-[0-9]{4}$
        required: true
`

func TestKindSettingsErrors(t *testing.T) {
	base := declBase
	tests := []struct {
		name string
		yaml string
		want []string // substrings of the error, all required
	}{
		{
			name: "unknown key",
			yaml: strings.Replace(base, "    source: crm\n", "    source: crm\n    sorce: crm\n", 1),
			want: []string{"warden.yaml:13:", `unknown field "sorce"`},
		},
		{
			name: "wrong type",
			yaml: strings.Replace(base, "required: true", "required: [yes]", 1),
			want: []string{"warden.yaml:19: tools.get_customer.parameters.customer_id.required: expected true or false"},
		},
		{
			name: "bad pattern",
			yaml: strings.Replace(base, "pattern: ^C-[0-9]{4}$", "pattern: ^C-[0-9", 1),
			want: []string{"warden.yaml:18:", "tools.get_customer.parameters.customer_id.pattern", "invalid regular expression"},
		},
		{
			name: "missing parameter description",
			yaml: strings.Replace(base, "        description: Customer id.\n", "", 1),
			want: []string{"tools.get_customer.parameters.customer_id.description", "required"},
		},
		{
			name: "unknown format",
			yaml: strings.Replace(base, "pattern: ^C-[0-9]{4}$", "format: credit-card", 1),
			want: []string{"tools.get_customer.parameters.customer_id.format", "unsupported format"},
		},
		{
			name: "default of the wrong type",
			yaml: strings.Replace(base, "        required: true\n", "        default: 7\n", 1),
			want: []string{"tools.get_customer.parameters.customer_id.default"},
		},
		{
			name: "enum of the wrong type",
			yaml: strings.Replace(base, "pattern: ^C-[0-9]{4}$", "enum: [1, 2]", 1),
			want: []string{"tools.get_customer.parameters.customer_id.enum", "is not a string"},
		},
		{
			name: "bounds on a string",
			yaml: strings.Replace(base, "pattern: ^C-[0-9]{4}$", "minimum: 3", 1),
			want: []string{"tools.get_customer.parameters.customer_id.type", "min_length"},
		},
		{
			name: "max_rows out of range",
			yaml: strings.Replace(base, "    source: crm\n", "    source: crm\n    max_rows: 1000000\n", 1),
			want: []string{"tools.get_customer.max_rows"},
		},
		{
			name: "bound parameter with a default",
			yaml: strings.Replace(base, "        required: true\n", "        bind: tenant\n        default: acme\n", 1),
			want: []string{"tools.get_customer.parameters.customer_id.bind", "identity only"},
		},
		{
			name: "unknown binding",
			yaml: strings.Replace(base, "        required: true\n", "        bind: email\n", 1),
			want: []string{"tools.get_customer.parameters.customer_id.bind", "tenant, user"},
		},
		{
			name: "file resource path",
			yaml: strings.Replace(base, "  name: test\n", "  name: test\n  resources_dir: res\n", 1) + "resources:\n  secrets:\n    description: x\n    scope: docs.read\n    uri: crm://secrets\n    file: ../../etc/passwd\n",
			want: []string{"resources.secrets.file", "relative path inside"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			db, err := sql.Open("sqlite", filepath.Join(dir, "crm.db"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec(`CREATE TABLE customers (id TEXT PRIMARY KEY)`); err != nil {
				t.Fatal(err)
			}
			db.Close()
			os.Mkdir(filepath.Join(dir, "res"), 0o755)
			cfg, err := config.Parse([]byte(tt.yaml), "warden.yaml", dir)
			if err != nil {
				t.Fatalf("Parse: %v (the error belongs to the kind, found when the server is built)", err)
			}
			cfg.Server.State.SQLite = filepath.Join(dir, "state.db")
			srv, err := Build(t.Context(), cfg, nil)
			if err == nil {
				srv.Close()
				t.Fatal("Build succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}
