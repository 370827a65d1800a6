package projection

import (
	"container/list"
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// The projections' database connections. OpenSQLite and OpenPostgres give
// database/sql a connector that wraps every driver connection with what
// the runner's batches need and a projection's Apply does not see (Apply
// keeps writing plain SQL through its *sql.Tx):
//
//   - SQLite: prepared statements kept per connection. modernc.org/sqlite
//     parses and plans the text of every Exec and Query anew, and a
//     projection runs the same few statements for every event, so parsing
//     was the largest single cost of applying one. A connection keeps the
//     statements it ran prepared, keyed by their text (least recently used
//     out beyond stmtCacheSize), for every transaction and query on it.
//   - PostgreSQL: pipelined writes in the runner's write transactions.
//     pgx already keeps statements prepared; what costs is one round trip
//     per statement. Inside a batch's transaction an Exec is queued and
//     the queue goes to the server as one pgx batch (one round trip) when
//     the transaction next reads, prepares a statement or commits, when a
//     queued write's RowsAffected is asked for, or when maxPipelined writes
//     wait. Order is kept: every statement of the transaction reaches the
//     server in the order Apply issued it, and nothing commits unless every
//     queued write succeeded. Only an error's timing moves (it surfaces at
//     the flush, perhaps in a later event's Apply), so the runner retries a
//     batch whose pipelined write failed without pipelining, which names
//     the failing event exactly.

// stmtCacheSize bounds the prepared statements a SQLite connection keeps.
// Projections run a few dozen distinct statements per copy.
const stmtCacheSize = 256

// maxPipelined bounds the writes a PostgreSQL transaction queues before
// it sends them.
const maxPipelined = 1024

// ConnStats counts what the connections of a DB saved (see DB.ConnStats).
type ConnStats struct {
	// Prepared counts statements a SQLite connection prepared for its
	// cache; Reused the runs of a statement it had kept prepared.
	Prepared, Reused uint64
	// Pipelined counts writes a PostgreSQL runner transaction queued, and
	// Flushes the round trips that sent them.
	Pipelined, Flushes uint64
}

// connStats is ConnStats, updated by every connection of a DB.
type connStats struct {
	prepared, reused, pipelined, flushes atomic.Uint64
}

// ConnStats returns what the DB's connections saved since it was opened:
// statements kept prepared (SQLite) and writes pipelined (PostgreSQL).
func (db *DB) ConnStats() ConnStats {
	if db == nil || db.stats == nil {
		return ConnStats{}
	}
	s := db.stats
	return ConnStats{Prepared: s.prepared.Load(), Reused: s.reused.Load(), Pipelined: s.pipelined.Load(), Flushes: s.flushes.Load()}
}

// connector wraps a driver's connector (see above).
type connector struct {
	inner    driver.Connector
	postgres bool
	stats    *connStats
}

// Connect implements driver.Connector.
func (c connector) Connect(ctx context.Context) (driver.Conn, error) {
	dc, err := c.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	w := &conn{inner: dc, stats: c.stats}
	if c.postgres {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			_ = dc.Close()
			return nil, fmt.Errorf("projection: PostgreSQL driver connection is a %T, want *stdlib.Conn", dc)
		}
		w.pg = sc.Conn()
	} else {
		w.stmts = newStmtCache(c.stats)
	}
	return w, nil
}

// Driver implements driver.Connector.
func (c connector) Driver() driver.Driver { return c.inner.Driver() }

// conn is one wrapped driver connection. database/sql uses a connection
// from one goroutine at a time and holds its lock for every call into it
// (a Rows' Close, a Tx's Rollback on context cancellation included), so
// its fields need no lock of their own.
type conn struct {
	inner driver.Conn
	stats *connStats
	// stmts is the SQLite statement cache (nil on PostgreSQL).
	stmts *stmtCache
	// pg is the pgx connection under a PostgreSQL connection.
	pg *pgx.Conn
	// pipe queues the writes of the open runner transaction (PostgreSQL
	// only; nil outside one).
	pipe *pipeline
	// batch is set while a runner's batch transaction is open on a SQLite
	// connection: its statements run without watching their context.
	// modernc.org/sqlite starts a goroutine per statement to interrupt it
	// when its context ends, a tenth of a batch's time; a batch's
	// statements are short, take no locks (the transaction holds the
	// write lock from BEGIN), and its transaction still ends with its
	// context (database/sql rolls it back), so the runner stops as soon.
	batch bool
}

var (
	_ driver.Conn               = (*conn)(nil)
	_ driver.ConnBeginTx        = (*conn)(nil)
	_ driver.ConnPrepareContext = (*conn)(nil)
	_ driver.ExecerContext      = (*conn)(nil)
	_ driver.QueryerContext     = (*conn)(nil)
	_ driver.Pinger             = (*conn)(nil)
	_ driver.SessionResetter    = (*conn)(nil)
	_ driver.Validator          = (*conn)(nil)
	_ driver.NamedValueChecker  = (*conn)(nil)
)

// Unwrap returns the driver's own connection (modernc.org/sqlite's
// helpers look through wrappers this way).
func (c *conn) Unwrap() driver.Conn { return c.inner }

func (c *conn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

func (c *conn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	if c.pipe != nil {
		// A prepared statement would run beside the queue: send the queue
		// and stop pipelining for the rest of the transaction.
		if err := c.flush(ctx); err != nil {
			return nil, err
		}
		c.pipe.off = true
	}
	if p, ok := c.inner.(driver.ConnPrepareContext); ok {
		return p.PrepareContext(ctx, query)
	}
	return c.inner.Prepare(query)
}

func (c *conn) Close() error {
	var err error
	if c.stmts != nil {
		err = c.stmts.closeAll()
	}
	return errors.Join(err, c.inner.Close())
}

func (c *conn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *conn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	var (
		tx  driver.Tx
		err error
	)
	if b, ok := c.inner.(driver.ConnBeginTx); ok {
		tx, err = b.BeginTx(ctx, opts)
	} else {
		tx, err = c.inner.Begin() //nolint:staticcheck // the driver has nothing better
	}
	if err != nil {
		return nil, err
	}
	tag, _ := ctx.Value(pipelineKey{}).(*pipelineTag)
	if tag == nil || opts.ReadOnly {
		return tx, nil
	}
	if c.pg == nil {
		c.batch = true
		return &batchTx{c: c, inner: tx}, nil
	}
	c.pipe = &pipeline{tag: tag, ctx: ctx}
	return &pipeTx{c: c, inner: tx}, nil
}

func (c *conn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if p := c.pipe; p != nil {
		if p.err != nil {
			return nil, p.err
		}
		if !p.off {
			return c.enqueue(ctx, query, args)
		}
	}
	if c.stmts != nil {
		if c.batch {
			ctx = context.WithoutCancel(ctx)
		}
		if s := c.stmts.get(ctx, c.inner, query); s != nil {
			defer c.stmts.done(s)
			return s.stmt.(driver.StmtExecContext).ExecContext(ctx, args)
		}
	}
	if e, ok := c.inner.(driver.ExecerContext); ok {
		return e.ExecContext(ctx, query, args)
	}
	return nil, driver.ErrSkip
}

func (c *conn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if c.pipe != nil {
		if err := c.flush(ctx); err != nil {
			return nil, err
		}
	}
	if c.stmts != nil {
		if c.batch {
			ctx = context.WithoutCancel(ctx)
		}
		if s := c.stmts.get(ctx, c.inner, query); s != nil {
			rows, err := s.stmt.(driver.StmtQueryContext).QueryContext(ctx, args)
			if err != nil {
				c.stmts.done(s)
				return nil, err
			}
			return wrapRows(rows, func() { c.stmts.done(s) }), nil
		}
	}
	if q, ok := c.inner.(driver.QueryerContext); ok {
		return q.QueryContext(ctx, query, args)
	}
	return nil, driver.ErrSkip
}

func (c *conn) Ping(ctx context.Context) error {
	if p, ok := c.inner.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

func (c *conn) ResetSession(ctx context.Context) error {
	if r, ok := c.inner.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c *conn) IsValid() bool {
	if v, ok := c.inner.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

func (c *conn) CheckNamedValue(nv *driver.NamedValue) error {
	if ch, ok := c.inner.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(nv)
	}
	return driver.ErrSkip // database/sql's default conversion
}

// pipelineKey is the context key under which the runner asks BeginTx to
// pipeline the transaction's writes.
type pipelineKey struct{}

// pipelineTag is how a runner transaction learns that a pipelined write
// failed, whatever Apply did with the error it was handed.
type pipelineTag struct {
	failed atomic.Bool
}

// withPipeline marks the transaction begun with ctx as a runner's batch:
// PostgreSQL pipelines its writes, SQLite runs its statements without
// watching their context (conn.batch). It returns how to tell whether a
// pipelined write failed.
func withPipeline(ctx context.Context) (context.Context, *pipelineTag) {
	tag := &pipelineTag{}
	return context.WithValue(ctx, pipelineKey{}, tag), tag
}

// ErrPipelinedWrite marks the failure of a write that was queued earlier
// in the transaction and sent later (PostgreSQL's pipelined writes).
var ErrPipelinedWrite = errors.New("projection: pipelined write failed")

// pipeline is the write queue of one transaction.
type pipeline struct {
	tag *pipelineTag
	// ctx is the transaction's: a flush that no statement asked for (a
	// commit, a RowsAffected) runs under it.
	ctx   context.Context
	queue []queued
	// rows holds the rows affected by every write sent so far, by its
	// index in the transaction; sent counts them.
	rows []int64
	sent int
	// err is the first failure: the transaction is lost, and every later
	// statement, and the commit, returns it.
	err error
	// off: a statement was prepared; run everything directly from here on.
	off bool
}

type queued struct {
	query string
	args  []any
}

// enqueue queues a write, sending the queue when it is full.
func (c *conn) enqueue(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	p := c.pipe
	vals := make([]any, len(args))
	for i, a := range args {
		if b, ok := a.Value.([]byte); ok {
			a.Value = slices.Clone(b) // the caller may reuse its buffer
		}
		vals[i] = a.Value
	}
	p.queue = append(p.queue, queued{query: query, args: vals})
	c.stats.pipelined.Add(1)
	res := &pipelinedResult{c: c, p: p, index: p.sent + len(p.queue) - 1}
	if len(p.queue) >= maxPipelined {
		if err := c.flush(ctx); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// flush sends the queued writes as one batch and reads their results.
func (c *conn) flush(ctx context.Context) error {
	p := c.pipe
	if p.err != nil {
		return p.err
	}
	if len(p.queue) == 0 {
		return nil
	}
	b := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, len(p.queue))}
	for _, q := range p.queue {
		b.Queue(q.query, q.args...)
	}
	n := len(p.queue)
	p.queue = p.queue[:0]
	c.stats.flushes.Add(1)
	br := c.pg.SendBatch(ctx, b)
	var err error
	for range n {
		tag, e := br.Exec()
		if e != nil {
			err = e
			break
		}
		p.rows = append(p.rows, tag.RowsAffected())
		p.sent++
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		p.err = fmt.Errorf("%w: %w", ErrPipelinedWrite, err)
		p.tag.failed.Store(true)
		return p.err
	}
	return nil
}

// pipelinedResult is the result of a queued write: asking for it sends
// the queue.
type pipelinedResult struct {
	c     *conn
	p     *pipeline
	index int
}

func (r *pipelinedResult) LastInsertId() (int64, error) {
	return 0, errors.New("projection: LastInsertId is not supported by PostgreSQL")
}

func (r *pipelinedResult) RowsAffected() (int64, error) {
	if r.index >= r.p.sent && r.c.pipe == r.p {
		if err := r.c.flush(r.p.ctx); err != nil {
			return 0, err
		}
	}
	if r.index < len(r.p.rows) {
		return r.p.rows[r.index], nil
	}
	if r.p.err != nil {
		return 0, r.p.err
	}
	return 0, errors.New("projection: result of a write its transaction never sent")
}

// pipeTx sends the queue before it commits.
type pipeTx struct {
	c     *conn
	inner driver.Tx
}

func (t *pipeTx) Commit() error {
	err := t.c.flush(t.c.pipe.ctx)
	t.c.pipe = nil
	if err != nil {
		return errors.Join(err, t.inner.Rollback())
	}
	return t.inner.Commit()
}

func (t *pipeTx) Rollback() error {
	t.c.pipe = nil
	return t.inner.Rollback()
}

// batchTx marks its SQLite connection's statements as a runner batch's
// until it ends (conn.batch).
type batchTx struct {
	c     *conn
	inner driver.Tx
}

func (t *batchTx) Commit() error {
	t.c.batch = false
	return t.inner.Commit()
}

func (t *batchTx) Rollback() error {
	t.c.batch = false
	return t.inner.Rollback()
}

// stmtCache keeps a connection's prepared statements by query text, least
// recently used first out. A statement whose rows are still being read
// is busy: the same text is then run unprepared (a query inside the loop
// over its own rows), and a busy statement is never closed.
type stmtCache struct {
	stats   *connStats
	byQuery map[string]*list.Element
	lru     list.List // of *cachedStmt, most recent at the front
}

type cachedStmt struct {
	query string
	stmt  driver.Stmt
	busy  bool
	// evicted: closed as soon as it is no longer busy.
	evicted bool
}

func newStmtCache(stats *connStats) *stmtCache {
	return &stmtCache{stats: stats, byQuery: map[string]*list.Element{}}
}

// get returns the prepared statement of query, marked busy, or nil when
// it is busy or cannot be prepared (the caller then runs query unprepared,
// which reports the error if there is one).
func (sc *stmtCache) get(ctx context.Context, inner driver.Conn, query string) *cachedStmt {
	if e, ok := sc.byQuery[query]; ok {
		s := e.Value.(*cachedStmt)
		if s.busy {
			return nil
		}
		sc.lru.MoveToFront(e)
		s.busy = true
		sc.stats.reused.Add(1)
		return s
	}
	p, ok := inner.(driver.ConnPrepareContext)
	if !ok {
		return nil
	}
	stmt, err := p.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	_, canExec := stmt.(driver.StmtExecContext)
	_, canQuery := stmt.(driver.StmtQueryContext)
	if !canExec || !canQuery {
		_ = stmt.Close()
		return nil
	}
	s := &cachedStmt{query: query, stmt: stmt, busy: true}
	sc.stats.prepared.Add(1)
	sc.byQuery[query] = sc.lru.PushFront(s)
	for sc.lru.Len() > stmtCacheSize {
		e := sc.lru.Back()
		old := e.Value.(*cachedStmt)
		sc.lru.Remove(e)
		delete(sc.byQuery, old.query)
		if old.busy {
			old.evicted = true
		} else {
			_ = old.stmt.Close()
		}
	}
	return s
}

// done marks s no longer busy.
func (sc *stmtCache) done(s *cachedStmt) {
	s.busy = false
	if s.evicted {
		_ = s.stmt.Close()
	}
}

func (sc *stmtCache) closeAll() error {
	var errs []error
	for e := sc.lru.Front(); e != nil; e = e.Next() {
		errs = append(errs, e.Value.(*cachedStmt).stmt.Close())
	}
	sc.lru.Init()
	clear(sc.byQuery)
	return errors.Join(errs...)
}

// rows calls release once its Close has run, and passes through the
// column type information database/sql asks drivers for.
type rows struct {
	driver.Rows
	release func()
	once    sync.Once
}

func wrapRows(r driver.Rows, release func()) driver.Rows {
	return &rows{Rows: r, release: release}
}

func (r *rows) Close() error {
	err := r.Rows.Close()
	r.once.Do(r.release)
	return err
}

func (r *rows) ColumnTypeDatabaseTypeName(i int) string {
	if t, ok := r.Rows.(driver.RowsColumnTypeDatabaseTypeName); ok {
		return t.ColumnTypeDatabaseTypeName(i)
	}
	return ""
}

func (r *rows) ColumnTypeLength(i int) (int64, bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypeLength); ok {
		return t.ColumnTypeLength(i)
	}
	return 0, false
}

func (r *rows) ColumnTypeNullable(i int) (bool, bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypeNullable); ok {
		return t.ColumnTypeNullable(i)
	}
	return false, false
}

func (r *rows) ColumnTypePrecisionScale(i int) (int64, int64, bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypePrecisionScale); ok {
		return t.ColumnTypePrecisionScale(i)
	}
	return 0, 0, false
}

func (r *rows) ColumnTypeScanType(i int) reflect.Type {
	if t, ok := r.Rows.(driver.RowsColumnTypeScanType); ok {
		return t.ColumnTypeScanType(i)
	}
	return reflect.TypeFor[any]()
}
