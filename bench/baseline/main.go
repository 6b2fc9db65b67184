// Command baseline is the bare go-sdk server that Warden's benchmarks are
// compared against: one tool, get_customer, served over the SDK's stateless
// Streamable HTTP handler and doing the same work as Warden's demo tool —
// one read-only SQLite query by primary key, returned as structured content
// plus its JSON text.
//
// It is written the way a typical SDK user would write it (mcp.AddTool with a
// typed input and output), with the few things a competent user does for
// speed done once at startup: the statement is prepared and the connection
// pool keeps as many idle connections as it may open, so that concurrent calls
// do not reopen SQLite connections.
//
// Usage:
//
//	baseline -http 127.0.0.1:8081 -db /path/to/demo.db
//	baseline -check -db /path/to/demo.db   # exits 0 if get_customer can run on it
//
// It lives in its own module so that the benchmark's dependencies stay out of
// Warden's go.mod; its go-sdk version must match Warden's for the comparison to
// be fair (bench/run.sh checks that).
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	_ "modernc.org/sqlite"
)

// query is the statement Warden's demo get_customer runs.
const query = `SELECT id, tenant_id, name, email, phone, tier, created_at FROM customers WHERE id = ?`

// Input is what a bare-SDK user declares; the SDK infers and enforces the
// schema (customer_id required, a string).
type Input struct {
	CustomerID string `json:"customer_id"`
}

// Customer is one row of the customers table. Nullable columns are pointers so
// that SQL NULL becomes JSON null, as Warden's SQL source returns it.
type Customer struct {
	ID        string  `json:"id"`
	TenantID  string  `json:"tenant_id"`
	Name      string  `json:"name"`
	Email     *string `json:"email"`
	Phone     *string `json:"phone"`
	Tier      *string `json:"tier"`
	CreatedAt *string `json:"created_at"`
}

// Output has the shape of Warden's SQL tool results.
type Output struct {
	Rows      []Customer `json:"rows"`
	RowCount  int        `json:"row_count"`
	Truncated bool       `json:"truncated"`
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("baseline: ")
	addr := flag.String("http", "127.0.0.1:8081", "listen `address` (loopback)")
	dbPath := flag.String("db", "", "SQLite database `file` with a customers table (opened read-only)")
	jsonResponse := flag.Bool("json-response", false, "answer with application/json instead of the SDK's default text/event-stream")
	check := flag.Bool("check", false, "only check that -db has the customers table get_customer needs, then exit")
	flag.Parse()
	if *dbPath == "" || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	if *check {
		db, _, err := openReadOnly(*dbPath)
		if err != nil {
			log.Fatal(err)
		}
		db.Close()
		return
	}
	if err := run(*addr, *dbPath, *jsonResponse); err != nil {
		log.Fatal(err)
	}
}

func run(addr, dbPath string, jsonResponse bool) error {
	db, stmt, err := openReadOnly(dbPath)
	if err != nil {
		return err
	}
	defer db.Close()

	mux := http.NewServeMux()
	mux.Handle("/mcp", newHandler(stmt, jsonResponse))

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	log.Printf("serving get_customer on http://%s/mcp (database %s, read-only)", ln.Addr(), dbPath)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// newHandler returns the SDK's stateless Streamable HTTP handler serving
// get_customer with stmt.
func newHandler(stmt *sql.Stmt, jsonResponse bool) http.Handler {
	server := mcp.NewServer(&mcp.Implementation{Name: "baseline", Version: "v0.0.1"}, nil)
	mcp.AddTool(server, &mcp.Tool{
		Name:        "get_customer",
		Description: "Look up one customer by id.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true},
	}, func(ctx context.Context, _ *mcp.CallToolRequest, in Input) (*mcp.CallToolResult, Output, error) {
		out, err := getCustomer(ctx, stmt, in.CustomerID)
		return nil, out, err
	})
	return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server },
		&mcp.StreamableHTTPOptions{Stateless: true, JSONResponse: jsonResponse})
}

// openReadOnly opens path so that no statement on any pooled connection can
// write: mode=ro at the SQLite level (and no file is created when path is
// missing), query_only as a second guard. Preparing the statement checks the
// schema up front, so a wrong file fails at startup rather than on every call.
func openReadOnly(path string) (*sql.DB, *sql.Stmt, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, nil, err
	}
	if _, err := os.Stat(abs); err != nil {
		return nil, nil, fmt.Errorf("opening database: %w", err)
	}
	dsn := (&url.URL{Scheme: "file", Path: abs, RawQuery: "mode=ro&_pragma=query_only(1)"}).String()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, nil, fmt.Errorf("opening database %s: %w", abs, err)
	}
	// database/sql keeps only 2 idle connections by default; with more
	// concurrent callers it would close and reopen SQLite connections (and
	// re-prepare the statement on each) all the time.
	conns := 4 * runtime.GOMAXPROCS(0)
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	stmt, err := db.Prepare(query)
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("preparing get_customer query on %s: %w", abs, err)
	}
	return db, stmt, nil
}

func getCustomer(ctx context.Context, stmt *sql.Stmt, id string) (Output, error) {
	rows, err := stmt.QueryContext(ctx, id)
	if err != nil {
		return Output{}, fmt.Errorf("querying customer: %w", err)
	}
	defer rows.Close()
	out := Output{Rows: []Customer{}}
	for rows.Next() {
		var c Customer
		if err := rows.Scan(&c.ID, &c.TenantID, &c.Name, &c.Email, &c.Phone, &c.Tier, &c.CreatedAt); err != nil {
			return Output{}, fmt.Errorf("reading customer: %w", err)
		}
		out.Rows = append(out.Rows, c)
	}
	if err := rows.Err(); err != nil {
		return Output{}, fmt.Errorf("reading customer: %w", err)
	}
	out.RowCount = len(out.Rows)
	return out, nil
}
