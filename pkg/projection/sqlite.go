package projection

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" driver
)

// DB is the SQL handle shared by several projections and the queries that
// read them. Every read-write transaction on it takes SQLite's write lock
// at BEGIN; a query that wants a consistent snapshot of several tables
// should begin its transaction with sql.TxOptions{ReadOnly: true}, which
// runs beside the writers.
type DB struct{ *sql.DB }

// sqliteConns bounds the pool. WAL lets readers work beside the one
// writer, so queries need not queue behind a projection's batch; writers
// serialise on SQLite's write lock whatever the pool size, so a larger
// pool would only add idle page caches.
const sqliteConns = 8

// sqliteParams configure every pooled connection (modernc.org/sqlite runs
// them on each new connection):
//   - busy_timeout: writers from several runners queue for the write lock
//     instead of failing with SQLITE_BUSY;
//   - WAL: readers do not block the writer nor the writer the readers;
//   - synchronous NORMAL: a power loss may drop the last transactions, but
//     never corrupts, and each lost transaction took its checkpoint with it,
//     so the runner re-applies exactly those events from the stream;
//   - foreign_keys: read models may rely on them;
//   - _txlock=immediate: write transactions take the write lock at BEGIN,
//     so two writers never both read and then deadlock upgrading (which
//     SQLite reports as SQLITE_BUSY without waiting). Read-only
//     transactions (sql.TxOptions{ReadOnly: true}) still begin deferred.
const sqliteParams = "_pragma=busy_timeout(10000)" +
	"&_pragma=journal_mode(WAL)" +
	"&_pragma=synchronous(NORMAL)" +
	"&_pragma=foreign_keys(1)" +
	"&_txlock=immediate"

// OpenSQLite opens (creating if needed) the SQLite database file at path
// and its parent directory.
func OpenSQLite(path string) (*DB, error) {
	if path == "" || strings.ContainsAny(path, "?#") || strings.HasPrefix(path, "file:") || strings.HasPrefix(path, ":memory:") {
		// A query string or URI in path would be parsed as DSN parameters;
		// an in-memory database would be private to each pooled connection.
		return nil, fmt.Errorf("%w: sqlite path %q must be a plain file path", ErrInvalidConfig, path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	db, err := sql.Open("sqlite", path+"?"+sqliteParams)
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	db.SetMaxOpenConns(sqliteConns)
	// Keep idle connections: closing the last one checkpoints and removes
	// the WAL, and reopening re-runs every pragma.
	db.SetMaxIdleConns(sqliteConns)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("open sqlite %s: %w", path, err), db.Close())
	}
	return &DB{DB: db}, nil
}

// checkpointsDDL creates the table that holds every projection's
// checkpoint. updated_at is RFC 3339 UTC text, readable in the sqlite3 shell.
const checkpointsDDL = `CREATE TABLE IF NOT EXISTS projection_checkpoints (
	name       TEXT PRIMARY KEY,
	seq        INTEGER NOT NULL,
	updated_at TEXT NOT NULL
)`

// readCheckpoint returns the stored checkpoint of name: 0 and the zero
// time when the projection has applied nothing yet.
func readCheckpoint(ctx context.Context, tx *sql.Tx, name string) (uint64, time.Time, error) {
	var (
		seq int64
		at  string
	)
	err := tx.QueryRowContext(ctx,
		`SELECT seq, updated_at FROM projection_checkpoints WHERE name = ?`, name).Scan(&seq, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, time.Time{}, nil
	}
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("read checkpoint of %s: %w", name, err)
	}
	if seq < 0 {
		return 0, time.Time{}, fmt.Errorf("read checkpoint of %s: negative sequence %d", name, seq)
	}
	t, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("read checkpoint of %s: updated_at %q: %w", name, at, err)
	}
	return uint64(seq), t, nil
}

// writeCheckpoint stores seq as name's checkpoint.
func writeCheckpoint(ctx context.Context, tx *sql.Tx, name string, seq uint64, at time.Time) error {
	// SQLite integers are signed 64-bit; stream sequences never come near 2^63.
	_, err := tx.ExecContext(ctx, `INSERT INTO projection_checkpoints (name, seq, updated_at) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at`,
		name, int64(seq), at.UTC().Format(time.RFC3339Nano))
	if err != nil {
		return fmt.Errorf("write checkpoint of %s: %w", name, err)
	}
	return nil
}
