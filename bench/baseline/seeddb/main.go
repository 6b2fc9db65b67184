// Command seeddb writes a small SQLite database with the customers table of
// Warden's demo, so that the baseline server and the load generator can be
// exercised without Warden.
//
// Usage:
//
//	seeddb -db /tmp/customers.db
//
// It refuses to touch an existing file.
package main

import (
	"database/sql"
	"flag"
	"fmt"
	"log"
	"os"

	_ "modernc.org/sqlite"
)

const schema = `CREATE TABLE customers (
	id TEXT PRIMARY KEY,
	tenant_id TEXT NOT NULL,
	name TEXT NOT NULL,
	email TEXT,
	phone TEXT,
	tier TEXT,
	created_at TEXT
)`

func main() {
	log.SetFlags(0)
	log.SetPrefix("seeddb: ")
	path := flag.String("db", "", "SQLite database `file` to create")
	rows := flag.Int("rows", 100, "number of customers (ids C-1001, C-1002, …)")
	flag.Parse()
	if *path == "" || *rows < 1 || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := seed(*path, *rows); err != nil {
		log.Fatal(err)
	}
}

func seed(path string, n int) error {
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("%s already exists; not overwriting it", path)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		return err
	}
	defer db.Close()
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.Exec(schema); err != nil {
		return fmt.Errorf("creating customers table: %w", err)
	}
	tiers := []string{"free", "pro", "enterprise"}
	for i := range n {
		id := fmt.Sprintf("C-%d", 1001+i)
		var phone any // every third customer has no phone: NULLs must round-trip
		if i%3 != 2 {
			phone = fmt.Sprintf("+1-555-01%02d", i%100)
		}
		_, err := tx.Exec(`INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?, ?)`,
			id, fmt.Sprintf("tenant-%d", 1+i%2), fmt.Sprintf("Customer %d", 1001+i),
			fmt.Sprintf("customer%d@example.com", 1001+i), phone, tiers[i%len(tiers)],
			fmt.Sprintf("2025-%02d-%02dT09:00:00Z", 1+i%12, 1+i%28))
		if err != nil {
			return fmt.Errorf("inserting %s: %w", id, err)
		}
	}
	return tx.Commit()
}
