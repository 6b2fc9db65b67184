package config

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Verbs are the words a tool name may start with, beside those a
// configuration adds in server.tool_verbs. Names such as get_customer or
// translate_text tell the model what a call does; a noun (customer_data)
// does not pass, and neither does a generic runner (see genericRunner),
// whatever its verb.
var Verbs = []string{
	"acknowledge", "add", "analyze", "annotate", "approve", "archive", "assign", "attach",
	"authorize", "backup", "block", "book", "build", "calculate", "cancel", "charge", "check",
	"classify", "clear", "close", "collect", "compare", "complete", "compute", "confirm",
	"connect", "convert", "copy", "count", "create", "deactivate", "decline", "delete",
	"deploy", "describe", "detect", "diff", "disable", "disconnect", "dismiss", "download",
	"draft", "duplicate", "echo", "edit", "enable", "enrich", "escalate", "estimate",
	"evaluate", "explain", "export", "extract", "fetch", "filter", "find", "flag", "follow",
	"forecast", "format", "generate", "geocode", "get", "grant", "hide", "import", "index",
	"invite", "join", "leave", "link", "list", "load", "lock", "log", "lookup", "mark",
	"match", "merge", "move", "mute", "normalize", "notify", "open", "order", "parse",
	"pause", "pay", "ping", "place", "plan", "post", "predict", "preview", "print",
	"process", "publish", "query", "rank", "rate", "read", "reassign", "recommend", "record",
	"redact", "refresh", "refund", "register", "reject", "release", "remind", "remove",
	"rename", "renew", "reopen", "reorder", "replace", "reply", "report", "request",
	"resend", "reserve", "reset", "resolve", "restore", "resume", "retry", "review",
	"revoke", "rotate", "run", "save", "scan", "schedule", "score", "search", "send", "set",
	"share", "show", "sign", "simulate", "snooze", "sort", "split", "start", "stop",
	"submit", "subscribe", "suggest", "summarize", "suspend", "sync", "tag", "test",
	"track", "transcribe", "transfer", "translate", "trigger", "unarchive", "unassign",
	"unblock", "unfollow", "unlink", "unlock", "unmute", "unpublish", "unsubscribe",
	"update", "upgrade", "upload", "upsert", "validate", "verify", "view", "vote",
	"withdraw", "write",
}

// verbWord is one lower-case word: a verb may not contain the _ that ends
// it in a tool name.
var verbWord = regexp.MustCompile(`^[a-z][a-z0-9]*$`)

// Generic runners run whatever the model writes — SQL, a shell command,
// code — and so say nothing about what a call does: everything Warden
// checks (scopes, schemas, risk tiers) would check nothing. A name is one
// when its verb is always a runner's (exec_*, eval_*), or when a runner's
// verb is followed by a word for arbitrary input (run_sql, execute_query,
// run_shell_command, query_database).
var (
	runnerOnlyVerbs = []string{"eval", "exec"}
	runnerVerbs     = []string{"execute", "invoke", "query", "run"}
	arbitraryInput  = []string{
		"any", "arbitrary", "bash", "cmd", "code", "command", "commands", "database", "db",
		"expr", "expression", "javascript", "js", "powershell", "program", "python", "query",
		"queries", "raw", "script", "scripts", "sh", "shell", "sql", "statement", "statements",
	}
)

// genericRunner reports whether the tool name names a generic runner.
func genericRunner(name string) bool {
	words := strings.Split(name, "_")
	if slices.Contains(runnerOnlyVerbs, words[0]) {
		return true
	}
	if !slices.Contains(runnerVerbs, words[0]) {
		return false
	}
	return slices.ContainsFunc(words[1:], func(w string) bool { return slices.Contains(arbitraryInput, w) })
}

// checkToolVerbs checks server.tool_verbs.
func (c *checker) checkToolVerbs(verbs []string) {
	for i, v := range verbs {
		p := []string{"server", "tool_verbs", strconv.Itoa(i)}
		switch {
		case !verbWord.MatchString(v):
			c.errorf(p, "%q is not a verb: one lower-case word (letters and digits, no _), such as reconcile", v)
		case slices.Contains(runnerOnlyVerbs, v):
			c.errorf(p, "%q is the verb of generic runners, which run whatever the model writes; Warden refuses %s_ tools whatever the configuration says", v, v)
		}
	}
}

// checkToolName checks that a snake_case tool name starts with a known
// verb and is not a generic runner.
func (c *checker) checkToolName(cfg *Config, p []string, name string) {
	verb, _, _ := strings.Cut(name, "_")
	switch {
	case genericRunner(name):
		c.errorf(p, "%q is a generic runner: it would run whatever SQL, command or code the model writes, past every check Warden makes; declare narrow tools that each do one thing, such as get_customer(customer_id)", name)
	case !slices.Contains(Verbs, verb) && !slices.Contains(cfg.Server.ToolVerbs, verb):
		c.errorf(p, "tool names start with a verb that says what the call does (get_, list_, search_, create_, …); %q is not one: rename the tool, or add %q to server.tool_verbs", verb, verb)
	}
}
