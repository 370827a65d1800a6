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

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"modernc.org/sqlite"

	"github.com/furrow/furrow/pkg/dirlock"
)

// DB is the SQL handle shared by several projections and the queries that
// read them: a SQLite file (OpenSQLite, the embedded default) or a
// PostgreSQL database (OpenPostgres). Projections and readers use it the
// same way, through database/sql with portable SQL; the differences the
// runner must know about (row locks, catalog queries, snapshots) live in
// its dialect.
//
// A query that wants a consistent snapshot of several tables should begin
// its transaction with sql.TxOptions{ReadOnly: true}: on SQLite it runs
// beside the writers (WAL), on PostgreSQL it is an ordinary read-only
// transaction.
type DB struct {
	*sql.DB
	dialect dialect
	// writer, when not nil, admits one runner write transaction at a time
	// in this process (SQLite has one writer anyway): runners then never
	// hold several pooled connections waiting for the write lock, which
	// would starve the queries that read beside them.
	writer chan struct{}
	// lock, for a SQLite file, keeps other processes out (OpenSQLite).
	lock *dirlock.Lock
	// stats counts what the connections saved (conn.go).
	stats *connStats
}

// Close closes the database and gives up its SQLite file's lock.
func (db *DB) Close() error {
	err := db.DB.Close()
	if db.lock != nil {
		err = errors.Join(err, db.lock.Release())
		db.lock = nil
	}
	return err
}

// beginWrite begins a read-write transaction for a runner. Call release
// after the transaction ended (commit or rollback).
func (db *DB) beginWrite(ctx context.Context) (tx *sql.Tx, release func(), err error) {
	release = func() {}
	if db.writer != nil {
		select {
		case db.writer <- struct{}{}:
			release = func() { <-db.writer }
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
	tx, err = db.BeginTx(ctx, nil)
	if err != nil {
		release()
		return nil, nil, err
	}
	return tx, release, nil
}

// Dialect names the database behind db: "sqlite" or "postgres".
func (db *DB) Dialect() string {
	if db == nil || db.dialect == nil {
		return ""
	}
	return db.dialect.name()
}

// sqliteConns bounds the pool. WAL lets readers work beside the one
// writer, so queries need not queue behind a projection's batch; writers
// serialise on SQLite's write lock whatever the pool size (and runners on
// DB.writer before they take a connection), so the pool is sized for
// concurrent readers.
const sqliteConns = 16

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
//     SQLite reports as SQLITE_BUSY without waiting). It is also what makes
//     the checkpoint read at the start of a batch a locked read. Read-only
//     transactions (sql.TxOptions{ReadOnly: true}) still begin deferred.
const sqliteParams = "_pragma=busy_timeout(10000)" +
	"&_pragma=journal_mode(WAL)" +
	"&_pragma=synchronous(NORMAL)" +
	"&_pragma=foreign_keys(1)" +
	"&_txlock=immediate"

// SQLiteLockSuffix names the lock file beside a SQLite database (path +
// suffix) that OpenSQLite holds until Close.
const SQLiteLockSuffix = ".lock"

// OpenSQLite opens (creating if needed) the SQLite database file at path
// and its parent directory. The file belongs to this process until Close:
// OpenSQLite fails with dirlock.ErrLocked, naming the holder's pid, while
// another process has it open, since two processes each running the
// projections would both apply every event. Handles opened in one process
// share the file (and the lock), as SQLite allows.
func OpenSQLite(path string) (_ *DB, err error) {
	if path == "" || strings.ContainsAny(path, "?#") || strings.HasPrefix(path, "file:") || strings.HasPrefix(path, ":memory:") {
		// A query string or URI in path would be parsed as DSN parameters;
		// an in-memory database would be private to each pooled connection.
		return nil, fmt.Errorf("%w: sqlite path %q must be a plain file path", ErrInvalidConfig, path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	// A lock file beside the database, not the database itself: SQLite's
	// own POSIX locks would be dropped when any descriptor of the file
	// closes.
	lock, err := dirlock.Share(path + SQLiteLockSuffix)
	if errors.Is(err, dirlock.ErrLocked) {
		return nil, fmt.Errorf("open sqlite %s: in use: %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = lock.Release()
		}
	}()
	base, err := sqlite.NewConnector(path + "?" + sqliteParams)
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	stats := &connStats{}
	db := sql.OpenDB(connector{inner: base, stats: stats})
	db.SetMaxOpenConns(sqliteConns)
	// Keep idle connections: closing the last one checkpoints and removes
	// the WAL, and reopening re-runs every pragma.
	db.SetMaxIdleConns(sqliteConns)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("open sqlite %s: %w", path, err), db.Close())
	}
	return &DB{DB: db, dialect: sqliteDialect{}, writer: make(chan struct{}, 1), lock: lock, stats: stats}, nil
}

// postgresConns bounds the pool per process; each runner holds at most one
// connection at a time, the rest serve queries.
const postgresConns = 16

// OpenPostgres connects to PostgreSQL through pgx's database/sql driver.
// dsn is a URL or key=value string as libpq takes it, e.g.
// "postgres://furrow@db:5432/furrow?sslmode=verify-full"; a search_path
// parameter puts the projections in that schema.
func OpenPostgres(ctx context.Context, dsn string) (*DB, error) {
	if dsn == "" {
		return nil, fmt.Errorf("%w: empty PostgreSQL DSN", ErrInvalidConfig)
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx redacts the password from its parse errors.
		return nil, fmt.Errorf("%w: PostgreSQL DSN: %v", ErrInvalidConfig, err)
	}
	stats := &connStats{}
	db := sql.OpenDB(connector{inner: stdlib.GetConnector(*cfg), postgres: true, stats: stats})
	db.SetMaxOpenConns(postgresConns)
	db.SetMaxIdleConns(postgresConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	if err := db.PingContext(ctx); err != nil {
		// The DSN may hold a password: name only the failure.
		return nil, errors.Join(fmt.Errorf("open postgres: %w", err), db.Close())
	}
	return &DB{DB: db, dialect: postgresDialect{}, stats: stats}, nil
}

// dialect is what the runner needs to know about one kind of database
// beyond portable SQL.
type dialect interface {
	name() string
	// forUpdate is appended to the SELECT that reads a copy's checkpoint at
	// the start of a batch, so that two runners of one projection (replicas
	// sharing a database) cannot both apply the same events. alias names
	// the copies table in that query.
	forUpdate(alias string) string
	// lockMigrations serialises schema changes of concurrent processes
	// within tx (PostgreSQL's CREATE TABLE IF NOT EXISTS races otherwise).
	lockMigrations(ctx context.Context, tx *sql.Tx) error
	// relationKind says whether name is a "table", a "view" or "" (absent).
	relationKind(ctx context.Context, q querier, name string) (string, error)
	// primaryKey lists table's primary-key columns in key order.
	primaryKey(ctx context.Context, q querier, table string) ([]string, error)
	// snapshot is the transaction in which a diff reads both copies.
	snapshot() *sql.TxOptions
	// indexDDL returns the statement that creates index name ("" if
	// there is no such index).
	indexDDL(ctx context.Context, q querier, name string) (string, error)
}

// querier is a *sql.DB or a *sql.Tx.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

type sqliteDialect struct{}

var _ dialect = sqliteDialect{}

func (sqliteDialect) name() string { return "sqlite" }

// forUpdate is empty: write transactions hold SQLite's write lock from BEGIN.
func (sqliteDialect) forUpdate(string) string { return "" }

// lockMigrations does nothing: the migration transaction holds the write lock.
func (sqliteDialect) lockMigrations(context.Context, *sql.Tx) error { return nil }

func (sqliteDialect) relationKind(ctx context.Context, q querier, name string) (string, error) {
	var kind string
	err := q.QueryRowContext(ctx, `SELECT type FROM sqlite_master WHERE name = $1 AND type IN ('table', 'view')`, name).Scan(&kind)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("look up %s: %w", name, err)
	}
	return kind, nil
}

func (sqliteDialect) primaryKey(ctx context.Context, q querier, table string) ([]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT name FROM pragma_table_info($1) WHERE pk > 0 ORDER BY pk`, table)
	if err != nil {
		return nil, fmt.Errorf("primary key of %s: %w", table, err)
	}
	return scanStrings(rows)
}

// snapshot: a deferred read transaction sees one WAL snapshot from its
// first read on.
func (sqliteDialect) snapshot() *sql.TxOptions { return &sql.TxOptions{ReadOnly: true} }

func (sqliteDialect) indexDDL(ctx context.Context, q querier, name string) (string, error) {
	var ddl sql.NullString
	err := q.QueryRowContext(ctx, `SELECT sql FROM sqlite_master WHERE type = 'index' AND name = $1`, name).Scan(&ddl)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("look up index %s: %w", name, err)
	}
	return ddl.String, nil // NULL: an index SQLite made for a constraint
}

type postgresDialect struct{}

var _ dialect = postgresDialect{}

func (postgresDialect) name() string { return "postgres" }

func (postgresDialect) forUpdate(alias string) string { return " FOR UPDATE OF " + alias }

// migrationLock is the advisory lock key under which projections migrate.
const migrationLock = 0x66757272 // "furr"

func (postgresDialect) lockMigrations(ctx context.Context, tx *sql.Tx) error {
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrationLock)); err != nil {
		return fmt.Errorf("lock migrations: %w", err)
	}
	return nil
}

func (postgresDialect) relationKind(ctx context.Context, q querier, name string) (string, error) {
	var kind string
	err := q.QueryRowContext(ctx, `SELECT CASE c.relkind WHEN 'v' THEN 'view' ELSE 'table' END
		FROM pg_class c WHERE c.oid = to_regclass($1) AND c.relkind IN ('r', 'p', 'v')`, name).Scan(&kind)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("look up %s: %w", name, err)
	}
	return kind, nil
}

func (postgresDialect) primaryKey(ctx context.Context, q querier, table string) ([]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT a.attname
		FROM pg_index i
		CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		WHERE i.indrelid = to_regclass($1) AND i.indisprimary
		ORDER BY k.ord`, table)
	if err != nil {
		return nil, fmt.Errorf("primary key of %s: %w", table, err)
	}
	return scanStrings(rows)
}

// snapshot: REPEATABLE READ gives one snapshot for the whole transaction.
func (postgresDialect) snapshot() *sql.TxOptions {
	return &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead}
}

func (postgresDialect) indexDDL(ctx context.Context, q querier, name string) (string, error) {
	var ddl sql.NullString
	err := q.QueryRowContext(ctx, `SELECT pg_get_indexdef(c.oid) FROM pg_class c
		WHERE c.oid = to_regclass($1) AND c.relkind = 'i'`, name).Scan(&ddl)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("look up index %s: %w", name, err)
	}
	return ddl.String, nil
}

func scanStrings(rows *sql.Rows) ([]string, error) {
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// The registry: which copies of each projection exist, which one is live,
// how far each got, and what was skipped. Times are RFC 3339 UTC text,
// readable in either database's shell.
var registryDDL = []string{
	// One row per projection: the live copy and the operator's pause.
	`CREATE TABLE IF NOT EXISTS projection_state (
		name          TEXT PRIMARY KEY,
		live_version  BIGINT NOT NULL,
		paused        INTEGER NOT NULL DEFAULT 0,
		paused_reason TEXT NOT NULL DEFAULT '',
		changed_at    TEXT NOT NULL
	)`,
	// One row per copy. seq is the copy's checkpoint: the last stream
	// sequence its tables reflect, written in the same transaction as them.
	`CREATE TABLE IF NOT EXISTS projection_copies (
		name       TEXT NOT NULL,
		version    BIGINT NOT NULL,
		role       TEXT NOT NULL,
		seq        BIGINT NOT NULL,
		applied    BIGINT NOT NULL DEFAULT 0,
		from_seq   BIGINT NOT NULL DEFAULT 1,
		created_at TEXT NOT NULL,
		updated_at TEXT NOT NULL,
		PRIMARY KEY (name, version)
	)`,
	lateIndexesDDL,
	// Events a copy moved past under SkipOnFailure, until redriven.
	`CREATE TABLE IF NOT EXISTS projection_skipped (
		name       TEXT NOT NULL,
		version    BIGINT NOT NULL,
		seq        BIGINT NOT NULL,
		reason     TEXT NOT NULL,
		skipped_at TEXT NOT NULL,
		PRIMARY KEY (name, version, seq)
	)`,
}

// Roles of a copy.
const (
	roleLive    = "live"
	roleShadow  = "shadow"
	roleRetired = "retired"
)

// copyRow is one row of projection_copies.
type copyRow struct {
	Version   int64
	Role      string
	Seq       uint64
	Applied   uint64
	FromSeq   uint64
	CreatedAt time.Time
	UpdatedAt time.Time
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

// loadCopies returns name's copies, oldest first.
func loadCopies(ctx context.Context, q querier, name string) ([]copyRow, error) {
	rows, err := q.QueryContext(ctx, `SELECT version, role, seq, applied, from_seq, created_at, updated_at
		FROM projection_copies WHERE name = $1 ORDER BY version`, name)
	if err != nil {
		return nil, fmt.Errorf("load copies of %s: %w", name, err)
	}
	defer rows.Close()
	var out []copyRow
	for rows.Next() {
		var (
			c                 copyRow
			seq, app, from    int64
			created, modified string
		)
		if err := rows.Scan(&c.Version, &c.Role, &seq, &app, &from, &created, &modified); err != nil {
			return nil, fmt.Errorf("load copies of %s: %w", name, err)
		}
		if seq < 0 || app < 0 || from < 0 {
			return nil, fmt.Errorf("load copies of %s: negative sequence in copy %d", name, c.Version)
		}
		c.Seq, c.Applied, c.FromSeq = uint64(seq), uint64(app), uint64(from)
		c.CreatedAt, c.UpdatedAt = parseTime(created), parseTime(modified)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load copies of %s: %w", name, err)
	}
	return out, nil
}

// pauseState is the operator's pause of a projection.
type pauseState struct {
	Paused bool
	Reason string
	At     time.Time
}

func loadPause(ctx context.Context, q querier, name string) (pauseState, error) {
	var (
		p      int
		reason string
		at     string
	)
	err := q.QueryRowContext(ctx, `SELECT paused, paused_reason, changed_at FROM projection_state WHERE name = $1`, name).Scan(&p, &reason, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return pauseState{}, nil
	}
	if err != nil {
		return pauseState{}, fmt.Errorf("load pause of %s: %w", name, err)
	}
	return pauseState{Paused: p != 0, Reason: reason, At: parseTime(at)}, nil
}

func countSkipped(ctx context.Context, q querier, name string, version int64) (int, error) {
	var n int
	err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM projection_skipped WHERE name = $1 AND version = $2`, name, version).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count skipped of %s: %w", name, err)
	}
	return n, nil
}
