package eventstore

import (
	"fmt"
	"slices"

	"github.com/furrow/furrow/pkg/cowmap"
)

// Requests remembers the idempotency keys found in an aggregate's events,
// so a command handler can recognise a retry of a request that was applied
// long ago, after the server's de-duplication window.
//
// The keys only grow with the aggregate, and a cached aggregate's keys are
// copied on every load, so they live in a cowmap: Clone costs about the
// square root of their number. A Requests is not safe for concurrent
// modification; copies may be used by different goroutines at once.
type Requests struct {
	stream string
	byKey  cowmap.Map[string, request]
}

// request is what one idempotency key wrote to the aggregate. It is a
// value shared between copies: replaced, never changed in place.
type request struct {
	first, last uint64
	fingerprint string
	ids         []string
}

// NewRequests returns an empty set for an aggregate in stream.
func NewRequests(stream string) *Requests {
	return &Requests{stream: stream}
}

// Record notes a loaded event's idempotency key.
func (r *Requests) Record(rec Recorded) {
	if rec.IdempotencyKey == "" {
		return
	}
	q, ok := r.byKey.Get(rec.IdempotencyKey)
	if !ok {
		r.byKey.Set(rec.IdempotencyKey, request{first: rec.Sequence, last: rec.Sequence,
			fingerprint: rec.Fingerprint, ids: []string{rec.ID}})
		return
	}
	// A further event of one append (an atomic batch). The ids slice may be
	// shared with a copy, so it is copied rather than appended to in place:
	// quadratic in the events of one append, at most MaxBatch.
	q.last = rec.Sequence
	q.ids = append(slices.Clip(q.ids), rec.ID)
	r.byKey.Set(rec.IdempotencyKey, q)
}

// Check reports whether key was applied before. When it was, it returns the
// earlier result, or ErrIdempotencyMismatch if the content differed.
func (r *Requests) Check(key, fingerprint string) (AppendResult, bool, error) {
	q, ok := r.byKey.Get(key)
	if !ok {
		return AppendResult{}, false, nil
	}
	if q.fingerprint != fingerprint {
		return AppendResult{}, true, fmt.Errorf("%w: key %q", ErrIdempotencyMismatch, key)
	}
	return AppendResult{Stream: r.stream, First: q.first, Last: q.last, Duplicate: true,
		EventIDs: slices.Clone(q.ids)}, true, nil
}

// Len is how many idempotency keys the set holds.
func (r *Requests) Len() int { return r.byKey.Len() }

// Clone returns an independent copy: recording into either never changes
// what the other holds.
func (r *Requests) Clone() *Requests {
	return &Requests{stream: r.stream, byKey: r.byKey.Clone()}
}
