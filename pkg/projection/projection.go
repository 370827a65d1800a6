// Package projection keeps SQL read models up to date from JetStream streams.
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
package projection

import (
	"context"
	"database/sql"
	"errors"

	"github.com/furrow/furrow/pkg/eventstore"
)

// Projection is a read model fed by one stream.
//
// Apply runs inside the runner's transaction and must do all its work
// through tx: rows written any other way would not roll back with the
// checkpoint. Apply is called from a single goroutine, in stream order,
// and may be called again for the same event after its batch rolled back,
// so it must not keep state outside the database.
type Projection interface {
	// Name identifies the projection's checkpoint, e.g. "ledger_balances";
	// unique per database.
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

var (
	// ErrInvalidConfig means NewRunner was given something it cannot run.
	ErrInvalidConfig = errors.New("projection: invalid configuration")
	// ErrRunning means Run was called while the same Runner was running:
	// two loops over one checkpoint would only fight over it.
	ErrRunning = errors.New("projection: runner already running")
	// ErrCheckpointRewound means the stored checkpoint went backwards under
	// a running runner, e.g. someone reset it by hand. Carrying on could
	// skip events, so Run stops; a new Runner starts from the stored value.
	ErrCheckpointRewound = errors.New("projection: stored checkpoint moved backwards")
)
