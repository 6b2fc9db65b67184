package sql

import (
	"context"
	"testing"

	"github.com/wardenmcp/warden/pipeline"
)

// BenchmarkSQLiteDryRun compares a write with its dry run, on a real
// SQLite file: the dry run adds the pre-update hook's row images and a
// rollback in place of the commit.
func BenchmarkSQLiteDryRun(b *testing.B) {
	db := newSQLite(b)
	st := mustPrepare(b, db.src, &Operation{
		Name: "set_score", Mode: pipeline.Write, MaxRows: 10, Params: []string{"id", "score"},
		Statement: "UPDATE customers SET score = :score WHERE id = :id",
	})
	dr := st.(DryRunner)
	ctx := context.Background()
	args := map[string]any{"id": "C-3", "score": 31}
	b.Run("run", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := st.Run(ctx, args); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("dry-run", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if eff, err := dr.DryRun(ctx, args); err != nil || eff.RowsAffected != 1 {
				b.Fatal(eff, err)
			}
		}
	})
}
