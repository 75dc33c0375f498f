package pgtest

import (
	"context"
	"strconv"
	"testing"
	"time"
)

// TestDropStale: a schema named as one a test made more than a day ago is
// dropped when the next test starts; a recent one is kept.
func TestDropStale(t *testing.T) {
	ctx := t.Context()
	db := NewEmpty(t)
	old := "t_" + "1000000000_deadbeef"
	recent := "t_" + strconv.FormatInt(time.Now().Unix(), 10) + "_cafe"
	for _, s := range []string{old, recent} {
		if _, err := db.Pool.Exec(ctx, "CREATE SCHEMA "+s); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _, _ = db.Pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+recent+" CASCADE") })
	NewEmpty(t)
	exists := func(s string) bool {
		var n int
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname = $1`, s).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	if exists(old) {
		t.Errorf("schema %s of 2001 is still there", old)
	}
	if !exists(recent) {
		t.Errorf("schema %s made now was dropped", recent)
	}
}
