package projection

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/furrow/furrow/pkg/eventstore"
)

// The guard: a Versioned projection's logical table names are read-only
// views of the live copy, in both databases, so that an Apply (or a
// Migrate) that forgets Table(ctx, name) cannot write the live copy —
// above all not during a shadow rebuild, when it would corrupt the copy
// readers use while building the next one from nothing.
//
// Why read-only views rather than the alternatives:
//   - Passing the copy to Apply as an argument (a Tables handle) would not
//     make the mistake impossible either: SQL is text, and the logical
//     name stays spellable; it would change every projection's signature
//     for a guarantee the database can give for free.
//   - Checking after each shadow batch that the live copy did not change
//     catches the write only after it happened, and only where someone
//     thought to look; a view that refuses writes stops the first one,
//     in the live copy's transaction as well as the shadow's.
//   - SQLite's views are never writable without INSTEAD OF triggers, so
//     there the guard was always on; PostgreSQL makes a plain
//     "SELECT * FROM t__v1" view automatically updatable, which is the
//     hole. A view whose query has a WITH clause is not automatically
//     updatable, and the planner inlines a single-use CTE, so reads keep
//     their index scans. (INSTEAD OF triggers that raise would not do: an
//     INSERT … ON CONFLICT on such a view fails in the planner with a
//     message that names no table, before any trigger runs.)
//
// The write then fails in the database with its own words ("cannot modify
// t because it is a view", `cannot insert into view "t"`); liveWriteError
// turns that into ErrLiveWrite naming the table and the fix, so the batch
// fails, is retried, parked and the copy stops with a reason an operator
// and the projection's author can act on.

// ErrLiveWrite means a Versioned projection wrote a logical table name,
// the read-only view of the live copy, instead of Table(ctx, name).
var ErrLiveWrite = errors.New("projection: write to the live copy's read-only view")

// viewDDL is the statement that makes logical table t a read-only view of
// copy version.
func (r *Runner) viewDDL(t string, version int64) string {
	if _, ok := r.db.dialect.(postgresDialect); ok {
		return `CREATE VIEW ` + t + ` AS WITH live AS (SELECT * FROM ` + physical(t, version) + `) SELECT * FROM live`
	}
	return `CREATE VIEW ` + t + ` AS SELECT * FROM ` + physical(t, version)
}

// apply runs the projection's Apply and names a write to a logical table
// for what it is.
func (r *Runner) apply(ctx context.Context, tx *sql.Tx, ev eventstore.Recorded) error {
	return r.liveWriteError(r.p.Apply(ctx, tx, ev))
}

// liveWriteError wraps err in ErrLiveWrite when the database refused it
// because it wrote one of the projection's logical tables (a view).
func (r *Runner) liveWriteError(err error) error {
	if err == nil || !r.versioned {
		return err
	}
	msg := err.Error()
	for _, t := range r.tables {
		if strings.Contains(msg, "modify "+t+" because it is a view") || // SQLite
			strings.Contains(msg, ` view "`+t+`"`) { // PostgreSQL
			return fmt.Errorf("%w %s: %s's Migrate and Apply must name its tables projection.Table(ctx, %q): %w",
				ErrLiveWrite, t, r.name, t, err)
		}
	}
	return err
}
