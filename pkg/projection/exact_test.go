package projection_test

import (
	"context"
	"errors"
	"math"
	"testing"

	"github.com/furrow/furrow/pkg/money"
	"github.com/furrow/furrow/pkg/projection"
)

// Sums read back with Exact and SumError are exact integers or an error
// wrapping money.ErrOverflow, on both stores; never a float, never wrapped.
func TestExactSums(t *testing.T) {
	forEachStore(t, func(t *testing.T, s store) {
		db := openDB(t, s)
		ctx := context.Background()
		if _, err := db.ExecContext(ctx, `CREATE TABLE amounts (k TEXT NOT NULL, v BIGINT NOT NULL)`); err != nil {
			t.Fatal(err)
		}
		for _, row := range []struct {
			k string
			v int64
		}{{"fits", math.MaxInt64 - 5}, {"fits", 5}, {"over", math.MaxInt64}, {"over", 1}, {"under", math.MinInt64}, {"under", -1},
			{"back", math.MaxInt64}, {"back", -1}, {"back", 1}} {
			if _, err := db.ExecContext(ctx, `INSERT INTO amounts (k, v) VALUES ($1, $2)`, row.k, row.v); err != nil {
				t.Fatal(err)
			}
		}
		sum := func(k string) (int64, error) {
			var n int64
			err := db.QueryRowContext(ctx, `SELECT COALESCE(SUM(v), 0) FROM amounts WHERE k = $1`, k).Scan(projection.Exact(&n))
			return n, projection.SumError(err)
		}
		if got, err := sum("fits"); err != nil || got != math.MaxInt64 {
			t.Errorf("sum to MaxInt64 = %d, %v", got, err)
		}
		if got, err := sum("none"); err != nil || got != 0 {
			t.Errorf("sum of no rows = %d, %v", got, err)
		}
		for _, k := range []string{"over", "under"} {
			if got, err := sum(k); !errors.Is(err, money.ErrOverflow) {
				t.Errorf("sum %s = %d, %v; want ErrOverflow", k, got, err)
			}
		}
		// Whatever order the store adds in, the answer is exact or refused.
		if got, err := sum("back"); err == nil && got != math.MaxInt64 || err != nil && !errors.Is(err, money.ErrOverflow) {
			t.Errorf("sum that leaves the range and comes back = %d, %v", got, err)
		}
		var n int64
		if err := db.QueryRowContext(ctx, `SELECT 1.5e19`).Scan(projection.Exact(&n)); !errors.Is(err, money.ErrOverflow) {
			t.Errorf("a float read as an exact integer: %d, %v", n, err)
		}
	})
}
