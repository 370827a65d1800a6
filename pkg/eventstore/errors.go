package eventstore

import "errors"

var (
	// ErrConflict means the aggregate changed since the expected version:
	// another command won the race. The caller may reload and retry.
	ErrConflict = errors.New("eventstore: concurrency conflict")
	// ErrIdempotencyMismatch means the idempotency key was already used for
	// a command with different content.
	ErrIdempotencyMismatch = errors.New("eventstore: idempotency key reused with different content")
	// ErrNotAnEvent means a stored message lacks Furrow's envelope.
	ErrNotAnEvent = errors.New("eventstore: message is not a Furrow event")
	// ErrInvalidAppend means the append request itself is malformed.
	ErrInvalidAppend = errors.New("eventstore: invalid append")
	// ErrTooManySubjects means a Lasts request matched more subjects than
	// one answer carries.
	ErrTooManySubjects = errors.New("eventstore: filters match too many subjects")
)

// ErrReplicaLag means the replicas that answered a load did not yet hold
// events this process knows were written (see Reflecting). The caller may
// retry: a lagging replica catches up within moments.
var ErrReplicaLag = errors.New("eventstore: the replicas answering reads have not caught up with a known write")
