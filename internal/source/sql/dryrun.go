package sql

// A dry run executes a write for real, inside a transaction that is always
// rolled back, so that what it reports is what the database itself did —
// defaults, generated keys, triggers, foreign-key actions and constraint
// checks included — rather than a guess from the statement's text. Each
// engine watches rows change its own way: SQLite through its pre-update
// hook (dryrun_sqlite.go), PostgreSQL through a temporary trigger
// (dryrun_postgres.go).

// maxChanges bounds the rows a dry run describes: enough for a person to
// judge, while a write that touches a million rows still reports its count
// without holding a million row images.
const maxChanges = 100
