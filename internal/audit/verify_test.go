package audit

import (
	"context"
	"reflect"
	"strings"
	"testing"
)

func TestVerify(t *testing.T) {
	tests := []struct {
		name string
		// tamper edits the database: node-a holds seq 1 to 10, node-b 1 to 5.
		tamper func(t *testing.T, s testStore)
		secret []byte
		want   []Problem // Message holds a phrase the message must contain
		heads  map[string]int64
	}{
		{
			name:   "untouched",
			tamper: func(*testing.T, testStore) {},
			heads:  map[string]int64{"node-a": 10, "node-b": 5},
		},
		{
			name: "a field modified",
			tamper: func(t *testing.T, s testStore) {
				s.exec(t, `UPDATE warden_audit SET principal = 'mallory' WHERE instance = 'node-a' AND seq = 4`)
			},
			want:  []Problem{{"node-a", 4, Modified, "seq 4 was modified"}},
			heads: map[string]int64{"node-a": 3, "node-b": 5},
		},
		{
			name: "arguments modified",
			tamper: func(t *testing.T, s testStore) {
				s.exec(t, `UPDATE warden_audit SET args = '{"customer_id":"c-999"}' WHERE instance = 'node-b' AND seq = 2`)
			},
			want:  []Problem{{"node-b", 2, Modified, "seq 2 was modified"}},
			heads: map[string]int64{"node-a": 10, "node-b": 1},
		},
		{
			name: "a hash replaced",
			tamper: func(t *testing.T, s testStore) {
				s.exec(t, `UPDATE warden_audit SET hash = prev_hash WHERE instance = 'node-a' AND seq = 7`)
			},
			want:  []Problem{{"node-a", 7, Modified, "seq 7 was modified"}},
			heads: map[string]int64{"node-a": 6, "node-b": 5},
		},
		{
			name: "a record deleted",
			tamper: func(t *testing.T, s testStore) {
				s.exec(t, `DELETE FROM warden_audit WHERE instance = 'node-a' AND seq = 6`)
			},
			want:  []Problem{{"node-a", 6, Deleted, "seq 6 is missing"}},
			heads: map[string]int64{"node-a": 5, "node-b": 5},
		},
		{
			name: "several records deleted",
			tamper: func(t *testing.T, s testStore) {
				s.exec(t, `DELETE FROM warden_audit WHERE instance = 'node-a' AND seq BETWEEN 3 AND 5`)
			},
			want:  []Problem{{"node-a", 3, Deleted, "seq 3 to 5 are missing"}},
			heads: map[string]int64{"node-a": 2, "node-b": 5},
		},
		{
			name: "the first record deleted",
			tamper: func(t *testing.T, s testStore) {
				s.exec(t, `DELETE FROM warden_audit WHERE instance = 'node-b' AND seq = 1`)
			},
			want:  []Problem{{"node-b", 1, Deleted, "seq 1 is missing"}},
			heads: map[string]int64{"node-a": 10, "node-b": 0},
		},
		{
			name: "two records swapped",
			tamper: func(t *testing.T, s testStore) {
				s.exec(t, `UPDATE warden_audit SET seq = -1 WHERE instance = 'node-a' AND seq = 3`)
				s.exec(t, `UPDATE warden_audit SET seq = 3 WHERE instance = 'node-a' AND seq = 4`)
				s.exec(t, `UPDATE warden_audit SET seq = 4 WHERE instance = 'node-a' AND seq = -1`)
			},
			want:  []Problem{{"node-a", 3, Reordered, "the record written after seq 2 is stored as seq 4"}},
			heads: map[string]int64{"node-a": 2, "node-b": 5},
		},
		{
			name: "two distant records swapped",
			tamper: func(t *testing.T, s testStore) {
				s.exec(t, `UPDATE warden_audit SET seq = -1 WHERE instance = 'node-a' AND seq = 2`)
				s.exec(t, `UPDATE warden_audit SET seq = 2 WHERE instance = 'node-a' AND seq = 9`)
				s.exec(t, `UPDATE warden_audit SET seq = 9 WHERE instance = 'node-a' AND seq = -1`)
			},
			want:  []Problem{{"node-a", 2, Reordered, "stored as seq 9"}},
			heads: map[string]int64{"node-a": 1, "node-b": 5},
		},
		{
			name: "a record deleted and the rest renumbered",
			tamper: func(t *testing.T, s testStore) {
				s.exec(t, `DELETE FROM warden_audit WHERE instance = 'node-a' AND seq = 6`)
				for seq := 7; seq <= 10; seq++ {
					s.exec(t, `UPDATE warden_audit SET seq = ? WHERE instance = 'node-a' AND seq = ?`, seq-1, seq)
				}
			},
			want:  []Problem{{"node-a", 6, Modified, "seq 6 was modified or replaced"}},
			heads: map[string]int64{"node-a": 5, "node-b": 5},
		},
		{
			// The newest records leave no gap behind them: Verify passes
			// and reports the head, for comparison with a copy elsewhere.
			name: "the newest record moved to another chain",
			tamper: func(t *testing.T, s testStore) {
				s.exec(t, `UPDATE warden_audit SET instance = 'node-b', seq = 6 WHERE instance = 'node-a' AND seq = 10`)
			},
			want:  []Problem{{"node-b", 6, Modified, "seq 6 was modified or replaced"}},
			heads: map[string]int64{"node-a": 9, "node-b": 5},
		},
		{
			name:   "the wrong secret",
			tamper: func(*testing.T, testStore) {},
			secret: []byte("another secret, another secret!!"),
			want: []Problem{
				{"node-a", 1, Modified, "or the secret is not the one the log was written with"},
				{"node-b", 1, Modified, "or the secret is not the one the log was written with"},
			},
			heads: map[string]int64{"node-a": 0, "node-b": 0},
		},
	}
	for _, st := range stores {
		if st.name == "memory" { // no SQL to tamper with
			continue
		}
		t.Run(st.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					s := st.open(t)
					ctx := context.Background()
					for inst, n := range map[string]int{"node-a": 10, "node-b": 5} {
						w := newWriter(t, s, inst, WriterOptions{})
						for i := range n {
							if err := w.Write(ctx, call(i)); err != nil {
								t.Fatal(err)
							}
						}
						w.Close()
					}
					tt.tamper(t, s)
					sec := secret
					if tt.secret != nil {
						sec = tt.secret
					}
					rep, err := Verify(ctx, s, sec)
					if err != nil {
						t.Fatalf("Verify: %v", err)
					}
					if rep.OK != (len(tt.want) == 0) {
						t.Errorf("Report.OK = %v with problems %+v", rep.OK, rep.Problems)
					}
					if len(rep.Problems) != len(tt.want) {
						t.Fatalf("problems = %+v\nwant %+v", rep.Problems, tt.want)
					}
					for i, p := range rep.Problems {
						w := tt.want[i]
						if p.Instance != w.Instance || p.Seq != w.Seq || p.Kind != w.Kind || !strings.Contains(p.Message, w.Message) {
							t.Errorf("problem = %+v\nwant %+v (a message containing %q)", p, w, w.Message)
						}
					}
					heads := map[string]int64{}
					for _, c := range rep.Chains {
						heads[c.Instance] = c.Head
						if c.Verified != c.Head {
							t.Errorf("chain %s: %d verified, head %d; want them equal", c.Instance, c.Verified, c.Head)
						}
					}
					if !reflect.DeepEqual(heads, tt.heads) {
						t.Errorf("heads = %v, want %v", heads, tt.heads)
					}
				})
			}
		})
	}
}

func TestVerifyEmptyStore(t *testing.T) {
	forEachStore(t, false, func(t *testing.T, s testStore) {
		rep, err := Verify(context.Background(), s, secret)
		if err != nil || !rep.OK || len(rep.Chains) != 0 {
			t.Errorf("Verify of an empty store = %+v, %v; want OK with no chains", rep, err)
		}
	})
}
