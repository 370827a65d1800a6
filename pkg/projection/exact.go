package projection

import (
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/furrow/furrow/pkg/money"
)

// Exact returns a sql.Scanner that stores an exact integer in dst, for
// money and weights read back from a read model, above all sums:
// PostgreSQL's SUM of BIGINT is NUMERIC (the driver hands it over as
// text), SQLite's SUM of INTEGER is an integer. A value that does not fit
// in an int64 is an error wrapping money.ErrOverflow, and so is a REAL
// (SQLite turns integer arithmetic that overflows into one): a total is
// never read through a float. NULL is an error; wrap the sum in COALESCE.
func Exact(dst *int64) sql.Scanner { return exact{dst} }

type exact struct{ dst *int64 }

func (e exact) Scan(src any) error {
	switch v := src.(type) {
	case int64:
		*e.dst = v
		return nil
	case []byte:
		return e.parse(string(v))
	case string:
		return e.parse(v)
	case float64:
		return fmt.Errorf("%w: read model holds %g, not an integer (an integer sum overflowed)", money.ErrOverflow, v)
	case nil:
		return errors.New("projection: exact integer is NULL")
	}
	return fmt.Errorf("projection: %T is not an exact integer", src)
}

func (e exact) parse(s string) error {
	n, err := strconv.ParseInt(s, 10, 64)
	if errors.Is(err, strconv.ErrRange) {
		return fmt.Errorf("%w: %s does not fit in an int64", money.ErrOverflow, s)
	}
	if err != nil {
		return fmt.Errorf("projection: %q is not an exact integer", s)
	}
	*e.dst = n
	return nil
}

// SumError turns the error SQLite's SUM raises when an integer sum
// overflows ("integer overflow") into one wrapping money.ErrOverflow, so
// callers tell it from a failed query; other errors come back as they are.
// (PostgreSQL sums BIGINT exactly as NUMERIC; Exact checks its range.)
func SumError(err error) error {
	if err != nil && !errors.Is(err, money.ErrOverflow) && strings.Contains(err.Error(), "integer overflow") {
		return fmt.Errorf("%w: %w", money.ErrOverflow, err)
	}
	return err
}
