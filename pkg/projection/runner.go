package projection

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go/jetstream"
)

// Defaults for Options.
const (
	DefaultBatchSize = 256
	// DefaultCatchUpBatchSize is the batch size of a copy with a backlog
	// when BatchSize is left at its default.
	DefaultCatchUpBatchSize = 4096
	DefaultIdleWait         = 2 * time.Second
	DefaultMaxRetries       = 5
	DefaultStallAfter       = 30 * time.Second
)

// firstRetry is the first wait before a retry; waits double up to IdleWait.
const firstRetry = 25 * time.Millisecond

// batchFillWait bounds how long a batch waits for messages the server
// said were pending. They are normally already in flight; if they are
// not, the runner applies what it has rather than sit on it.
const batchFillWait = 200 * time.Millisecond

// heartbeatEvery is how often an idle copy's loop wakes to beat (more
// often when StallAfter is short, so an idle copy never looks stalled).
const heartbeatEvery = time.Second

// alignTimeout bounds how long Diff and Swap hold the live copy while the
// other copy catches up to the same position.
const alignTimeout = 15 * time.Second

// Options tune a Runner. The zero value is usable.
type Options struct {
	// BatchSize is the most events applied in one transaction
	// (default DefaultBatchSize). Larger batches amortise the commit;
	// a batch is never held back waiting to fill, so a lone event is
	// applied as soon as it arrives.
	BatchSize int
	// CatchUpBatchSize is the most events applied in one transaction while
	// the copy has a backlog of at least BatchSize events (a rebuild, a
	// start after downtime): larger transactions apply a backlog faster,
	// at the price of holding SQLite's write lock longer. Default:
	// DefaultCatchUpBatchSize when BatchSize is left at its default, else
	// BatchSize (an explicit BatchSize is kept).
	CatchUpBatchSize int
	// Logger receives the runner's logs (default slog.Default()).
	Logger *slog.Logger
	// IdleWait is the longest the runner waits before trying again when it
	// cannot make progress: the stream does not exist yet, the consumer
	// failed, or a batch failed to apply. Waits start at 25ms and double up
	// to IdleWait (default DefaultIdleWait). A caught-up runner does not
	// poll: it holds a pull request open and the server wakes it. It is
	// also how often a paused copy looks for a resume made by another
	// process.
	IdleWait time.Duration
	// MaxRetries is how many times a batch that fails on the same event is
	// retried before the event is parked in the dead-letter stream
	// (default DefaultMaxRetries; negative: park on the first failure).
	// Failures of the database itself (begin, commit) are retried forever:
	// they say nothing about the event.
	MaxRetries int
	// OnFailure is what a copy does once it parked an event.
	OnFailure FailurePolicy
	// StallAfter is how long a copy with events to apply may go without
	// progress, or its loop without a heartbeat, before its status says
	// stalled (default DefaultStallAfter).
	StallAfter time.Duration
	// DeadLetterSubject is where parked events go; default
	// "deadletter.projection.<name>".
	DeadLetterSubject string
}

// Runner feeds one Projection from its stream: its live copy and, during
// a rebuild, a shadow copy, each in its own goroutine (a worker).
type Runner struct {
	db        *DB
	js        jetstream.JetStream
	p         Projection
	versioned bool
	tables    []string // logical tables of a Versioned projection
	name      string
	stream    string
	filters   []string // nil: the whole stream
	opts      Options
	log       *slog.Logger
	// beatEvery is how often idle loops beat: well within StallAfter.
	beatEvery time.Duration

	// running stops a second concurrent Run of the same Runner.
	running atomic.Bool
	// ops serialises the operators' Rebuild, Diff, Swap and DropCopy: two
	// of them holding and releasing the same copies would undo each other.
	ops sync.Mutex

	// mu guards the fields below. Workers are created and started under it;
	// no one holds it across I/O.
	mu sync.Mutex
	// runCtx is Run's context while Run runs, nil otherwise.
	runCtx context.Context
	// workers are the copies this process feeds (live and shadows), by
	// version; live is one of them.
	workers map[int64]*worker
	live    *worker
	// advanced is closed and replaced whenever the live checkpoint moves
	// or another copy becomes live: a broadcast that, unlike sync.Cond,
	// WaitFor can select on together with ctx.Done.
	advanced chan struct{}
	// wg counts running workers; exits receives their terminal errors.
	wg    sync.WaitGroup
	exits chan workerExit

	// changes wakes Changed's callers (changes.go).
	changes broadcast
}

var identifier = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// maxIdentifier is PostgreSQL's identifier length; a copy's table name
// adds "__v" and the version to the logical name.
const maxIdentifier = 63

// NewRunner prepares p to run over db: it creates the registry tables,
// runs p.Migrate for the live copy (and any shadow copy), points the
// logical tables of a Versioned projection at the live copy, and loads the
// stored checkpoints, all in one transaction.
func NewRunner(db *DB, js jetstream.JetStream, p Projection, opts Options) (*Runner, error) {
	switch {
	case db == nil || db.DB == nil:
		return nil, fmt.Errorf("%w: nil database", ErrInvalidConfig)
	case js == nil:
		return nil, fmt.Errorf("%w: nil JetStream", ErrInvalidConfig)
	case p == nil:
		return nil, fmt.Errorf("%w: nil projection", ErrInvalidConfig)
	case p.Name() == "" || p.Stream() == "":
		return nil, fmt.Errorf("%w: projection needs a name and a stream", ErrInvalidConfig)
	case strings.ContainsAny(p.Name(), ".*> \t\r\n"):
		// The name is a subject token of its dead letters.
		return nil, fmt.Errorf("%w: projection name %q: no '.', '*', '>' or spaces", ErrInvalidConfig, p.Name())
	case opts.BatchSize < 0 || opts.CatchUpBatchSize < 0 || opts.IdleWait < 0 || opts.StallAfter < 0:
		return nil, fmt.Errorf("%w: negative batch size, idle wait or stall time", ErrInvalidConfig)
	}
	if db.dialect == nil {
		db.dialect = sqliteDialect{} // a DB built by hand around a SQLite handle
	}
	if opts.CatchUpBatchSize == 0 {
		opts.CatchUpBatchSize = opts.BatchSize
		if opts.BatchSize == 0 {
			opts.CatchUpBatchSize = DefaultCatchUpBatchSize
		}
	}
	if opts.BatchSize == 0 {
		opts.BatchSize = DefaultBatchSize
	}
	opts.CatchUpBatchSize = max(opts.CatchUpBatchSize, opts.BatchSize)
	if opts.IdleWait == 0 {
		opts.IdleWait = DefaultIdleWait
	}
	switch {
	case opts.MaxRetries == 0:
		opts.MaxRetries = DefaultMaxRetries
	case opts.MaxRetries < 0:
		opts.MaxRetries = 0
	}
	if opts.StallAfter == 0 {
		opts.StallAfter = DefaultStallAfter
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.DeadLetterSubject == "" {
		opts.DeadLetterSubject = "deadletter.projection." + p.Name()
	}
	r := &Runner{
		db:       db,
		js:       js,
		p:        p,
		name:     p.Name(),
		stream:   p.Stream(),
		filters:  slices.Clone(p.Subjects()),
		opts:     opts,
		log:      opts.Logger.With("projection", p.Name(), "stream", p.Stream()),
		workers:  map[int64]*worker{},
		advanced: make(chan struct{}),
		exits:    make(chan workerExit, 8),
	}
	r.beatEvery = min(heartbeatEvery, opts.StallAfter/3)
	if v, ok := p.(Versioned); ok {
		r.versioned = true
		r.tables = slices.Clone(v.Tables())
		if !identifier.MatchString(r.name) {
			return nil, fmt.Errorf("%w: projection name %q: want lower-case letters, digits and '_'", ErrInvalidConfig, r.name)
		}
		if len(r.tables) == 0 {
			return nil, fmt.Errorf("%w: versioned projection %s lists no tables", ErrInvalidConfig, r.name)
		}
		for _, t := range r.tables {
			if !identifier.MatchString(t) || len(t)+len("__v9999") > maxIdentifier {
				return nil, fmt.Errorf("%w: projection %s: table name %q: want at most %d lower-case letters, digits and '_'",
					ErrInvalidConfig, r.name, t, maxIdentifier-len("__v9999"))
			}
		}
	}
	if len(r.filters) == 0 {
		r.filters = nil
	}
	if err := r.migrate(context.Background()); err != nil {
		return nil, err
	}
	return r, nil
}

// migrateAttempts bounds how often a start-up migration that PostgreSQL
// chose as a deadlock's victim is tried again.
const migrateAttempts = 6

// migrate runs at start: registry, the projection's migrations, views. A
// replica starting while another runs the same projection takes DDL locks
// (CREATE … IF NOT EXISTS, the views) that can deadlock with the other's
// batches; PostgreSQL then aborts one transaction, and when that is the
// migration it is simply tried again: nothing of it was committed.
func (r *Runner) migrate(ctx context.Context) error {
	wait := newBackoff(2 * time.Second)
	for attempt := 1; ; attempt++ {
		err := r.migrateOnce(ctx)
		if err == nil || !retryableTx(err) || attempt == migrateAttempts {
			return err
		}
		r.log.WarnContext(ctx, "projection migration lost a lock race; trying again", "attempt", attempt, "error", err)
		if !sleep(ctx, wait.NextBackOff()) {
			return ctx.Err()
		}
	}
}

// retryableTx reports whether err is PostgreSQL aborting a transaction
// for a deadlock (40P01) or a serialization failure (40001): the
// transaction did nothing, and running it again is the remedy.
func retryableTx(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}

func (r *Runner) migrateOnce(ctx context.Context) error {
	tx, release, err := r.db.beginWrite(ctx)
	if err != nil {
		return fmt.Errorf("migrate projection %s: %w", r.name, err)
	}
	defer release()
	defer tx.Rollback() // a no-op once committed
	if err := r.db.dialect.lockMigrations(ctx, tx); err != nil {
		return fmt.Errorf("migrate projection %s: %w", r.name, err)
	}
	for _, stmt := range registryDDL {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("migrate projection %s: registry: %w", r.name, err)
		}
	}
	live, err := r.ensureLive(ctx, tx)
	if err != nil {
		return err
	}
	copies, err := loadCopies(ctx, tx, r.name)
	if err != nil {
		return err
	}
	var run []copyRow
	for _, c := range copies {
		if c.Version != live && c.Role != roleShadow {
			continue
		}
		if err := r.p.Migrate(withCopy(ctx, c.Version), tx); err != nil {
			return fmt.Errorf("migrate projection %s copy %d: %w", r.name, c.Version, err)
		}
		if c.Role == roleShadow {
			if err := r.redropIndexes(ctx, tx, c.Version); err != nil {
				return fmt.Errorf("migrate projection %s copy %d: %w", r.name, c.Version, err)
			}
		}
		run = append(run, c)
	}
	if r.versioned {
		if err := r.pointViews(ctx, tx, live); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate projection %s: commit: %w", r.name, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range run {
		w := r.newWorker(c)
		r.workers[c.Version] = w
		if c.Version == live {
			r.live = w
		}
	}
	return nil
}

// ensureLive returns the live copy's version, registering the projection
// on its first start.
func (r *Runner) ensureLive(ctx context.Context, tx *sql.Tx) (int64, error) {
	var live int64
	err := tx.QueryRowContext(ctx, `SELECT live_version FROM projection_state WHERE name = $1`, r.name).Scan(&live)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		live = 0
		var seq uint64
		at := time.Time{}
		if r.versioned {
			live = 1
		} else if seq, at, err = r.legacyCheckpoint(ctx, tx); err != nil {
			return 0, err
		}
		now := formatTime(time.Now())
		if _, err := tx.ExecContext(ctx, `INSERT INTO projection_state (name, live_version, changed_at) VALUES ($1, $2, $3)`,
			r.name, live, now); err != nil {
			return 0, fmt.Errorf("register projection %s: %w", r.name, err)
		}
		updated := "" // never applied
		if !at.IsZero() {
			updated = formatTime(at)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO projection_copies (name, version, role, seq, applied, from_seq, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, 1, $6, $7)`, r.name, live, roleLive, int64(seq), int64(seq), now, updated); err != nil {
			return 0, fmt.Errorf("register projection %s: %w", r.name, err)
		}
		return live, nil
	case err != nil:
		return 0, fmt.Errorf("load projection %s: %w", r.name, err)
	case r.versioned && live == 0:
		return r.upgradeLegacy(ctx, tx)
	case !r.versioned && live != 0:
		return 0, fmt.Errorf("%w: projection %s has versioned copies but no longer implements Versioned", ErrInvalidConfig, r.name)
	}
	return live, nil
}

// upgradeLegacy moves a projection that was registered with fixed table
// names (copy 0) to copy 1, once its old tables are gone: copy 1 starts
// empty and is filled from the stream. While an old table is in the way it
// refuses, rather than drop data on its own.
func (r *Runner) upgradeLegacy(ctx context.Context, tx *sql.Tx) (int64, error) {
	// Name every table in the way at once, so the operator drops them in
	// one go rather than one restart per table.
	var inTheWay []string
	for _, t := range r.tables {
		kind, err := r.db.dialect.relationKind(ctx, tx, t)
		if err != nil {
			return 0, err
		}
		if kind == "table" {
			inTheWay = append(inTheWay, t)
		}
	}
	if len(inTheWay) > 0 {
		return 0, fmt.Errorf("%w: projection %s became versioned; drop its fixed-name tables %s (or the database file) and it rebuilds from the stream",
			ErrLegacyTables, r.name, strings.Join(inTheWay, ", "))
	}
	now := formatTime(time.Now())
	for _, stmt := range []struct {
		q    string
		args []any
	}{
		{`DELETE FROM projection_copies WHERE name = $1`, []any{r.name}},
		{`DELETE FROM projection_skipped WHERE name = $1`, []any{r.name}},
		{`UPDATE projection_state SET live_version = 1, changed_at = $1 WHERE name = $2`, []any{now, r.name}},
		{`INSERT INTO projection_copies (name, version, role, seq, applied, from_seq, created_at, updated_at)
			VALUES ($1, 1, $2, 0, 0, 1, $3, '')`, []any{r.name, roleLive, now}},
	} {
		if _, err := tx.ExecContext(ctx, stmt.q, stmt.args...); err != nil {
			return 0, fmt.Errorf("upgrade projection %s to versioned copies: %w", r.name, err)
		}
	}
	r.log.InfoContext(ctx, "projection now keeps versioned copies; rebuilding copy 1 from the stream")
	return 1, nil
}

// legacyCheckpoint reads the checkpoint a runner before the registry
// stored in projection_checkpoints, so such a projection resumes instead
// of applying its history a second time.
func (r *Runner) legacyCheckpoint(ctx context.Context, tx *sql.Tx) (uint64, time.Time, error) {
	kind, err := r.db.dialect.relationKind(ctx, tx, "projection_checkpoints")
	if err != nil || kind != "table" {
		return 0, time.Time{}, err
	}
	var (
		seq int64
		at  string
	)
	err = tx.QueryRowContext(ctx, `SELECT seq, updated_at FROM projection_checkpoints WHERE name = $1`, r.name).Scan(&seq, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, time.Time{}, nil
	}
	if err != nil || seq < 0 {
		return 0, time.Time{}, fmt.Errorf("read legacy checkpoint of %s: %v", r.name, err)
	}
	return uint64(seq), parseTime(at), nil
}

// pointViews makes each logical table a view of copy version.
func (r *Runner) pointViews(ctx context.Context, tx *sql.Tx, version int64) error {
	for _, t := range r.tables {
		kind, err := r.db.dialect.relationKind(ctx, tx, t)
		if err != nil {
			return err
		}
		if kind == "table" {
			return fmt.Errorf("%w: %s (projection %s): drop it, or the database file, and the projection rebuilds from the stream",
				ErrLegacyTables, t, r.name)
		}
		if _, err := tx.ExecContext(ctx, `DROP VIEW IF EXISTS `+t); err != nil {
			return fmt.Errorf("point %s at copy %d: %w", t, version, err)
		}
		if _, err := tx.ExecContext(ctx, r.viewDDL(t, version)); err != nil {
			return fmt.Errorf("point %s at copy %d: %w", t, version, err)
		}
	}
	return nil
}

// Name is the projection's name.
func (r *Runner) Name() string { return r.name }

// Stream returns the stream the projection consumes.
func (r *Runner) Stream() string { return r.stream }

// Subjects returns the projection's subject filters (nil: whole stream).
func (r *Runner) Subjects() []string { return slices.Clone(r.filters) }

// Running reports whether Run is running.
func (r *Runner) Running() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.runCtx != nil
}

// Versioned reports whether the projection can be rebuilt into a shadow copy.
func (r *Runner) Versioned() bool { return r.versioned }

// Policy is what the runner does with an event it parked.
func (r *Runner) Policy() FailurePolicy { return r.opts.OnFailure }

// liveWorker returns the live copy's worker.
func (r *Runner) liveWorker() *worker {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.live
}

// shadowWorker returns the shadow copy's worker, or nil.
func (r *Runner) shadowWorker() *worker {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, w := range r.workers {
		if w != r.live && w.getRole() == roleShadow {
			return w
		}
	}
	return nil
}

// Checkpoint is the sequence of the last event applied and committed to
// the live copy; an in-memory mirror of the stored checkpoint.
func (r *Runner) Checkpoint() uint64 {
	cp, _ := r.position()
	return cp
}

// position returns the live checkpoint and the channel closed when it
// next moves (or another copy becomes live).
func (r *Runner) position() (uint64, <-chan struct{}) {
	r.mu.Lock()
	live, ch := r.live, r.advanced
	r.mu.Unlock()
	cp, _ := live.position()
	return cp, ch
}

// liveAdvanced wakes WaitFor; workers call it when the live copy moves.
func (r *Runner) liveAdvanced() {
	r.mu.Lock()
	defer r.mu.Unlock()
	close(r.advanced)
	r.advanced = make(chan struct{})
}

// workerExit is how a worker's goroutine ends.
type workerExit struct {
	w   *worker
	err error
}

// Run feeds the live copy (and a shadow copy during a rebuild) until ctx
// is done, then returns nil. Consumer and database failures and failing
// batches are logged and retried, so it returns an error only for
// ErrRunning and ErrCheckpointRewound.
func (r *Runner) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return fmt.Errorf("run projection %s: %w", r.name, ErrRunning)
	}
	defer r.running.Store(false)

	r.mu.Lock()
	r.runCtx = ctx
	for _, w := range r.workers {
		r.startLocked(w)
	}
	r.mu.Unlock()
	r.log.InfoContext(ctx, "projection started", "checkpoint", r.Checkpoint(), "copy", r.liveWorker().version)

	var fatal error
	for fatal == nil {
		select {
		case <-ctx.Done():
		case ex := <-r.exits:
			switch {
			case errors.Is(ex.err, ErrCheckpointRewound):
				r.log.ErrorContext(ctx, "projection checkpoint moved backwards; stopping", "copy", ex.w.version, "error", ex.err)
				fatal = fmt.Errorf("run projection %s: %w", r.name, ex.err)
			case errors.Is(ex.err, errRetired):
				// Another process swapped or dropped this copy.
				if err := r.refresh(ctx); err != nil && ctx.Err() == nil {
					r.log.WarnContext(ctx, "projection registry not reloaded", "error", err)
				}
			}
			continue
		}
		break
	}
	r.mu.Lock()
	r.runCtx = nil
	for _, w := range r.workers {
		w.stopRunning()
	}
	r.mu.Unlock()
	r.wg.Wait()
	r.log.InfoContext(context.WithoutCancel(ctx), "projection stopped", "checkpoint", r.Checkpoint())
	return fatal
}

// startLocked starts w's goroutine under Run's context; r.mu must be held.
func (r *Runner) startLocked(w *worker) {
	if r.runCtx == nil || w.isRunning() {
		return
	}
	runCtx := r.runCtx
	ctx, cancel := context.WithCancel(runCtx)
	done := w.startRunning(cancel)
	r.wg.Go(func() {
		defer close(done)
		defer cancel()
		err := w.run(ctx)
		w.markStopped()
		if err != nil {
			select {
			case r.exits <- workerExit{w: w, err: err}:
			case <-runCtx.Done():
			}
		}
	})
}

// refresh re-reads the registry after another process swapped or dropped
// a copy: it feeds the live copy the registry names and drops workers of
// copies that are gone or retired.
func (r *Runner) refresh(ctx context.Context) error {
	tx, err := r.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var live int64
	if err := tx.QueryRowContext(ctx, `SELECT live_version FROM projection_state WHERE name = $1`, r.name).Scan(&live); err != nil {
		return fmt.Errorf("reload projection %s: %w", r.name, err)
	}
	copies, err := loadCopies(ctx, tx, r.name)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	keep := map[int64]copyRow{}
	for _, c := range copies {
		if c.Version == live || c.Role == roleShadow {
			keep[c.Version] = c
		}
	}
	for v, w := range r.workers {
		if _, ok := keep[v]; !ok {
			w.stopRunning()
			delete(r.workers, v)
		}
	}
	for v, c := range keep {
		w, ok := r.workers[v]
		if !ok {
			w = r.newWorker(c)
			r.workers[v] = w
		}
		w.setRole(c.Role)
		if v == live && r.live != w {
			r.live = w
			close(r.advanced)
			r.advanced = make(chan struct{})
			r.log.InfoContext(ctx, "projection now reads another live copy", "copy", v)
		}
		r.startLocked(w)
	}
	return nil
}

// WaitFor returns nil once the live copy reflects the stream up to seq,
// or ctx's error (wrapped) when ctx ends first. Pass the position a
// command returned to read its own writes.
//
// For a projection over the whole stream that means Checkpoint() >= seq.
// A filtered projection's checkpoint only moves on events it consumes, so
// it may never reach a position written on another subject; WaitFor then
// also returns once no event the projection consumes lies between its
// checkpoint and seq (asking the stream, which must allow direct gets).
func (r *Runner) WaitFor(ctx context.Context, seq uint64) error {
	return r.waitPosition(ctx, "", r.position, seq)
}

// waitPosition is WaitFor over any copy's position.
func (r *Runner) waitPosition(ctx context.Context, what string, position func() (uint64, <-chan struct{}), seq uint64) error {
	// recheckAt is the checkpoint at which a filtered projection asks the
	// stream again: the next event it must apply on the way to seq.
	var recheckAt uint64
	for {
		cur, advanced := position()
		if cur >= seq {
			return nil
		}
		if r.filters != nil && cur >= recheckAt {
			next, err := r.nextPending(ctx, cur, seq)
			switch {
			case err == nil && next == 0:
				return nil
			case err == nil:
				recheckAt = next
			case ctx.Err() != nil:
				return fmt.Errorf("projection %s%s: wait for %s:%d (at %d): %w", r.name, what, r.stream, seq, cur, ctx.Err())
			default:
				// Fall back to waiting for the checkpoint itself.
				r.log.DebugContext(ctx, "projection cannot look ahead in stream", "error", err)
				recheckAt = seq
			}
		}
		select {
		case <-advanced:
		case <-ctx.Done():
			cur, _ = position()
			return fmt.Errorf("projection %s%s: wait for %s:%d (at %d): %w", r.name, what, r.stream, seq, cur, ctx.Err())
		}
	}
}

// Pause stops every copy of the projection from applying events, in this
// process and, through the registry, in every process sharing the
// database, until Resume; it survives restarts. Queries keep reading the
// live copy as it was. A batch in flight finishes first.
func (r *Runner) Pause(ctx context.Context, reason string) error {
	if err := r.setPaused(ctx, true, reason); err != nil {
		return err
	}
	r.log.InfoContext(ctx, "projection paused", "reason", reason)
	return nil
}

// Resume undoes Pause.
func (r *Runner) Resume(ctx context.Context) error {
	if err := r.setPaused(ctx, false, ""); err != nil {
		return err
	}
	r.mu.Lock()
	for _, w := range r.workers {
		w.nudge()
	}
	r.mu.Unlock()
	r.log.InfoContext(ctx, "projection resumed")
	return nil
}

func (r *Runner) setPaused(ctx context.Context, paused bool, reason string) error {
	p := 0
	if paused {
		p = 1
	}
	// Taking every worker's apply lock makes Pause return only once no
	// batch is in flight in this process.
	r.mu.Lock()
	ws := make([]*worker, 0, len(r.workers))
	for _, w := range r.workers {
		ws = append(ws, w)
	}
	r.mu.Unlock()
	// A fixed order, so that two concurrent pauses cannot deadlock.
	slices.SortFunc(ws, func(a, b *worker) int { return int(a.version - b.version) })
	for _, w := range ws {
		w.applyMu.Lock()
		defer w.applyMu.Unlock()
	}
	_, err := r.db.ExecContext(ctx, `UPDATE projection_state SET paused = $1, paused_reason = $2, changed_at = $3 WHERE name = $4`,
		p, reason, formatTime(time.Now()), r.name)
	if err != nil {
		return fmt.Errorf("pause projection %s: %w", r.name, err)
	}
	r.changes.notify()
	return nil
}

// newBackoff yields doubling waits from firstRetry up to max, without
// jitter: one runner per projection copy retries, so there is no herd to
// spread, and the failure tests count on the waits being predictable.
// The loops that use it are not a plain "retry this call" (they restart
// consumers, park events, answer redrives), so they take only the policy
// from the library and keep their own ctx-aware sleep.
func newBackoff(max time.Duration) *backoff.ExponentialBackOff {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     min(firstRetry, max),
		RandomizationFactor: 0,
		Multiplier:          2,
		MaxInterval:         max,
	}
	b.Reset()
	return b
}

// sleep waits d or until ctx is done, reporting whether it slept the full d.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
