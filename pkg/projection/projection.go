// Package projection keeps SQL read models up to date from JetStream streams.
//
// # Exactly once
//
// A projection folds one stream into tables. A Runner feeds it events in
// stream order, in batches, and stores the sequence of the last event
// applied (the checkpoint) in the same SQL transaction as the rows those
// events changed. The stream is the truth and the checkpoint says exactly
// how much of it the rows reflect, so a crash, a restart or a redelivered
// message can neither apply an event twice nor skip one. That is also why
// the runner needs no durable consumer and no acks: on start it reads the
// checkpoint and asks the stream for everything after it.
//
// Command handlers return the stream position they wrote; a query calls
// Runner.WaitFor with it before reading, to read its own writes.
//
// # Stores
//
// The same runner and the same projection code run on SQLite (OpenSQLite,
// the embedded default) and PostgreSQL (OpenPostgres, through pgx's
// database/sql driver). Projections write portable SQL ($1 placeholders,
// BIGINT, TEXT, INSERT … ON CONFLICT); the few things that differ (how a
// batch locks its checkpoint, catalog look-ups, snapshots) are the
// runner's business. One contract test suite runs against both.
//
// # Copies, shadow rebuilds and the swap
//
// A projection that implements Versioned keeps its tables in numbered
// copies: its logical table "ledger_balances" is stored as
// "ledger_balances__v1", "ledger_balances__v2", … The runner tells Migrate
// and Apply which copy they write through their context, and the
// projection names its tables (and indexes) with Table(ctx, name). Readers
// keep using the logical name: for the live copy the runner maintains a
// view per table ("CREATE VIEW ledger_balances AS SELECT * FROM
// ledger_balances__v1"), so queries need not change and always read the
// live copy. Those views are read-only in both databases (on PostgreSQL
// the view's query is a WITH, which is not automatically updatable): an
// Apply or Migrate that forgets Table and writes a logical name fails with
// ErrLiveWrite naming the table, in the live copy's batches and a shadow
// rebuild's alike, instead of writing the live copy from a rebuild. See
// guard.go for why this guard rather than a copy argument to Apply.
//
// Rebuild creates the next copy as a shadow and feeds it from the start of
// the stream (or from a sequence or a time) while the live copy keeps
// serving and keeps following the stream; both are fed by the same code.
// Diff compares shadow and live row by row at the same stream position;
// Swap makes the shadow live by re-pointing the views in one transaction,
// so a reader sees either the old copy or the new one, never a mix. The
// old copy is kept, frozen, until DropCopy. The registry tables
// projection_state (live copy, pause) and projection_copies (one row per
// copy: role, checkpoint) hold all of it, so every process sharing the
// database, not only the one that swapped, moves to the new copy.
//
// A projection that does not implement Versioned keeps working as before
// on fixed table names (copy 0); it cannot be rebuilt beside itself.
//
// # Failures
//
// A batch that fails is rolled back and retried with backoff. When the
// same event keeps failing MaxRetries times, the runner parks a copy of it
// in the dead-letter stream (package deadletter) with the reason and its
// source stream and sequence. Then, under StopOnFailure (the default), the
// copy stops at that event and its status says so until an operator
// redrives it (after a fix) or restarts it; under SkipOnFailure it records
// the event as skipped, moves on, and a later redrive applies it once.
//
// # Liveness
//
// Status reports per projection the checkpoint, the stream head, the lag
// in events and in time (age of the oldest event not yet applied) and a
// heartbeat the runner's loop beats even while idle, so a stalled
// projection (lag that does not shrink, a loop that no longer beats, a
// failing or stopped copy) is told from an idle one.
package projection

import (
	"context"
	"database/sql"
	"errors"
	"strconv"

	"github.com/furrow/furrow/pkg/eventstore"
)

// Projection is a read model fed by one stream.
//
// Apply runs inside the runner's transaction and must do all its work
// through tx: rows written any other way would not roll back with the
// checkpoint. Apply is never called concurrently for one copy, events
// arrive in stream order, and it may be called again for the same event
// after its batch rolled back, so it must not keep state outside the
// database.
type Projection interface {
	// Name identifies the projection's checkpoint, e.g. "ledger_balances";
	// unique per database; lower-case letters, digits and '_'.
	Name() string
	// Stream is the stream the projection reads, e.g. "LEDGER".
	Stream() string
	// Subjects filters the stream; nil means the whole stream. Filters must
	// not overlap (JetStream rejects overlapping consumer filters).
	Subjects() []string
	// Migrate creates or upgrades the projection's tables. It runs on every
	// start, so it must be idempotent.
	Migrate(ctx context.Context, tx *sql.Tx) error
	// Apply folds one event into the read model.
	Apply(ctx context.Context, tx *sql.Tx, ev eventstore.Recorded) error
}

// Versioned is a Projection that can be rebuilt into a shadow copy beside
// its live one. Its Migrate and Apply name every table and index with
// Table(ctx, name), so the runner can point them at any copy.
type Versioned interface {
	Projection
	// Tables lists the logical names of the projection's tables (not its
	// indexes). Readers query these names; they are views of the live copy.
	Tables() []string
}

// copyKey is the context key of the copy Migrate and Apply write.
type copyKey struct{}

// withCopy tells Table which copy the projection is writing.
func withCopy(ctx context.Context, version int64) context.Context {
	return context.WithValue(ctx, copyKey{}, version)
}

// Table returns the physical name of a Versioned projection's table or
// index name in the copy the runner is writing (name + "__v<copy>"). Outside
// Migrate and Apply, and for copy 0, it returns name itself, which for a
// table is the view of the live copy: readers may call it too.
func Table(ctx context.Context, name string) string {
	if v, ok := ctx.Value(copyKey{}).(int64); ok && v > 0 {
		return physical(name, v)
	}
	return name
}

func physical(name string, version int64) string {
	if version == 0 {
		return name
	}
	return name + "__v" + strconv.FormatInt(version, 10)
}

// FailurePolicy says what a copy does with an event that keeps failing
// after it has been parked in the dead-letter stream.
type FailurePolicy int

const (
	// StopOnFailure stops the copy at the event until an operator redrives
	// it: the read model stays behind, but never silently wrong. Default.
	StopOnFailure FailurePolicy = iota
	// SkipOnFailure records the event as skipped and moves on: for read
	// models where being current matters more than being complete. A
	// redrive applies the skipped event later, out of order.
	SkipOnFailure
)

func (p FailurePolicy) String() string {
	if p == SkipOnFailure {
		return "skip"
	}
	return "stop"
}

var (
	// ErrInvalidConfig means NewRunner was given something it cannot run.
	ErrInvalidConfig = errors.New("projection: invalid configuration")
	// ErrRunning means Run was called while the same Runner was running:
	// two loops over one checkpoint would only fight over it.
	ErrRunning = errors.New("projection: runner already running")
	// ErrNotRunning means the operation needs a running Runner.
	ErrNotRunning = errors.New("projection: runner is not running")
	// ErrCheckpointRewound means the stored checkpoint went backwards under
	// a running runner, e.g. someone reset it by hand. Carrying on could
	// skip events, so Run stops; a new Runner starts from the stored value.
	ErrCheckpointRewound = errors.New("projection: stored checkpoint moved backwards")
	// ErrNotVersioned means the projection writes fixed table names and so
	// cannot be rebuilt into a shadow copy (see Versioned).
	ErrNotVersioned = errors.New("projection: writes fixed table names, so it cannot be rebuilt beside itself (it must implement projection.Versioned)")
	// ErrNoShadow means the operation needs a shadow copy and there is none.
	ErrNoShadow = errors.New("projection: no shadow copy")
	// ErrShadowExists means a rebuild is already under way or waiting to be
	// swapped or dropped.
	ErrShadowExists = errors.New("projection: a shadow copy already exists")
	// ErrNotCaughtUp means the shadow copy is still rebuilding.
	ErrNotCaughtUp = errors.New("projection: shadow copy has not caught up")
	// ErrNoCopy means there is no such copy.
	ErrNoCopy = errors.New("projection: no such copy")
	// ErrLiveCopy means the operation may not touch the live copy.
	ErrLiveCopy = errors.New("projection: copy is live")
	// ErrNotParked means a redrive named an event the projection holds no
	// failure for.
	ErrNotParked = errors.New("projection: event is not parked")
	// ErrStillFailing means a redriven event failed again.
	ErrStillFailing = errors.New("projection: event still fails")
	// ErrPaused means the projection is paused.
	ErrPaused = errors.New("projection: paused")
	// ErrLegacyTables means a Versioned projection found one of its logical
	// table names taken by a plain table, left by a version of it that wrote
	// fixed names. The data is derived: drop the table (or the database
	// file) and the runner rebuilds it from the stream.
	ErrLegacyTables = errors.New("projection: logical table name is taken by a plain table")
)
