package config

import (
	"strings"
	"testing"
)

// withTool is base with its tool renamed and, if verbs is not empty, a
// server.tool_verbs list.
func withTool(name, verbs string) string {
	y := strings.Replace(base, "  get_customer:", "  "+name+":", 1)
	if verbs != "" {
		y = strings.Replace(y, "  name: test\n", "  name: test\n  tool_verbs: "+verbs+"\n", 1)
	}
	return y
}

func TestToolNameVerbs(t *testing.T) {
	tests := []struct {
		name  string
		tool  string
		verbs string   // server.tool_verbs, as YAML
		want  []string // substrings of the error; none means the file loads
	}{
		{name: "echo", tool: "echo_message"},
		{name: "translate", tool: "translate_text"},
		{name: "convert", tool: "convert_units"},
		{name: "generate", tool: "generate_report"},
		{name: "upload", tool: "upload_file"},
		{name: "download", tool: "download_invoice"},
		{name: "query a named thing", tool: "query_inventory"},
		{name: "sync", tool: "sync_contacts"},
		{name: "run a named job", tool: "run_payroll"},
		{name: "one-word name", tool: "summarize"},
		{name: "added verb", tool: "reconcile_accounts", verbs: "[reconcile, triage]"},
		{
			name: "unknown verb names the setting",
			tool: "reconcile_accounts",
			want: []string{"warden.yaml:10: tools.reconcile_accounts", `"reconcile" is not one`, `add "reconcile" to server.tool_verbs`},
		},
		{
			name: "noun",
			tool: "customer_data",
			want: []string{"tools.customer_data", "start with a verb", `"customer" is not one`},
		},
		{name: "run_sql", tool: "run_sql", want: []string{`tools.run_sql: "run_sql" is a generic runner`, "declare narrow tools"}},
		{name: "run_query", tool: "run_query", want: []string{`"run_query" is a generic runner`}},
		{name: "execute_sql", tool: "execute_sql", want: []string{`"execute_sql" is a generic runner`}},
		{name: "execute_query, even with execute added", tool: "execute_query", verbs: "[execute]", want: []string{`"execute_query" is a generic runner`}},
		{name: "run_command", tool: "run_command", want: []string{"generic runner"}},
		{name: "run_shell", tool: "run_shell", want: []string{"generic runner"}},
		{name: "run_raw_sql", tool: "run_raw_sql", want: []string{"generic runner"}},
		{name: "query_database", tool: "query_database", want: []string{"generic runner"}},
		{name: "exec_command", tool: "exec_command", want: []string{"generic runner"}},
		{name: "exec_anything", tool: "exec_report", want: []string{"generic runner"}},
		{name: "eval_code", tool: "eval_code", want: []string{"generic runner"}},
		{name: "execute added for a narrow tool", tool: "execute_payment", verbs: "[execute]"},
		{
			name: "verb with an underscore",
			tool: "get_customer", verbs: "[look_up]",
			want: []string{"warden.yaml:4: server.tool_verbs.0", `"look_up" is not a verb: one lower-case word`},
		},
		{
			name: "capitalised verb",
			tool: "get_customer", verbs: "[ok, Reconcile]",
			want: []string{"server.tool_verbs.1", `"Reconcile" is not a verb`},
		},
		{
			name: "runner verb",
			tool: "get_customer", verbs: "[exec]",
			want: []string{"server.tool_verbs.0", `"exec" is the verb of generic runners`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(withTool(tt.tool, tt.verbs)), "warden.yaml", t.TempDir())
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("loaded; want an error containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
}
