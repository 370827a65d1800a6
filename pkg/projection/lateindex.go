package projection

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// LateIndexed is a Versioned projection some of whose indexes serve only
// its readers: its Apply never looks rows up by them. A rebuild loads the
// shadow copy without them and builds them once the copy has caught up,
// before it may be compared or swapped: indexing a loaded table once is
// cheaper than updating every index for every row, and the shadow has no
// readers meanwhile. (An index Apply needs, e.g. to find the row an event
// changes, must not be listed: without it each such look-up scans.)
type LateIndexed interface {
	Versioned
	// LateIndexes lists those indexes by the logical names Migrate gives
	// them through Table.
	LateIndexes() []string
}

// lateIndexesDDL registers, per copy, the late indexes a rebuild dropped
// and the statements that build them again.
const lateIndexesDDL = `CREATE TABLE IF NOT EXISTS projection_late_indexes (
		name       TEXT NOT NULL,
		version    BIGINT NOT NULL,
		index_name TEXT NOT NULL,
		ddl        TEXT NOT NULL,
		PRIMARY KEY (name, version, index_name)
	)`

// deferIndexes drops the late indexes Migrate just made in copy version,
// recording how to build each again, within tx.
func (r *Runner) deferIndexes(ctx context.Context, tx *sql.Tx, version int64) error {
	li, ok := r.p.(LateIndexed)
	if !ok {
		return nil
	}
	for _, name := range li.LateIndexes() {
		index := physical(name, version)
		ddl, err := r.db.dialect.indexDDL(ctx, tx, index)
		if err != nil {
			return err
		}
		if ddl == "" {
			return fmt.Errorf("%w: projection %s lists late index %s, which its Migrate does not create", ErrInvalidConfig, r.name, name)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO projection_late_indexes (name, version, index_name, ddl)
			VALUES ($1, $2, $3, $4) ON CONFLICT (name, version, index_name) DO NOTHING`, r.name, version, index, ddl); err != nil {
			return fmt.Errorf("defer index %s: %w", index, err)
		}
		if _, err := tx.ExecContext(ctx, `DROP INDEX IF EXISTS `+index); err != nil {
			return fmt.Errorf("defer index %s: %w", index, err)
		}
	}
	return nil
}

// lateIndexes returns the indexes of copy version still to be built, by
// name, with their statements.
func (r *Runner) lateIndexes(ctx context.Context, q querier, version int64) (names, ddls []string, err error) {
	rows, err := q.QueryContext(ctx, `SELECT index_name, ddl FROM projection_late_indexes
		WHERE name = $1 AND version = $2 ORDER BY index_name`, r.name, version)
	if err != nil {
		return nil, nil, fmt.Errorf("late indexes of %s copy %d: %w", r.name, version, err)
	}
	defer rows.Close()
	for rows.Next() {
		var n, d string
		if err := rows.Scan(&n, &d); err != nil {
			return nil, nil, err
		}
		names, ddls = append(names, n), append(ddls, d)
	}
	return names, ddls, rows.Err()
}

// redropIndexes drops again, within tx, the late indexes of a shadow copy
// whose Migrate just ran at start (IF NOT EXISTS made them again).
func (r *Runner) redropIndexes(ctx context.Context, tx *sql.Tx, version int64) error {
	names, _, err := r.lateIndexes(ctx, tx, version)
	if err != nil {
		return err
	}
	for _, index := range names {
		if _, err := tx.ExecContext(ctx, `DROP INDEX IF EXISTS `+index); err != nil {
			return fmt.Errorf("defer index %s: %w", index, err)
		}
	}
	return nil
}

// buildLateIndexes builds the copy's deferred indexes, if any, in one
// transaction with the removal of their records. Another process feeding
// the same copy waits on the migration lock, then finds nothing to build.
func (w *worker) buildLateIndexes(ctx context.Context) error {
	w.applyMu.Lock()
	defer w.applyMu.Unlock()
	r := w.r
	tx, release, err := r.db.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer release()
	defer tx.Rollback()
	if err := r.db.dialect.lockMigrations(ctx, tx); err != nil {
		return err
	}
	names, ddls, err := r.lateIndexes(ctx, tx, w.version)
	if err != nil || len(names) == 0 {
		return err
	}
	start := time.Now()
	for i, ddl := range ddls {
		if _, err := tx.ExecContext(ctx, ddl); err != nil {
			return fmt.Errorf("build late index %s: %w", names[i], err)
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM projection_late_indexes WHERE name = $1 AND version = $2`, r.name, w.version); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	w.log.InfoContext(ctx, "projection copy indexed after its rebuild", "indexes", len(names), "took", time.Since(start))
	return nil
}
