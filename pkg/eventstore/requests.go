package eventstore

import "fmt"

// Requests remembers the idempotency keys found in an aggregate's events,
// so a command handler can recognise a retry of a request that was applied
// long ago, after the server's de-duplication window.
type Requests struct {
	stream string
	byKey  map[string]*AppendResult
	prints map[string]string
}

// NewRequests returns an empty set for an aggregate in stream.
func NewRequests(stream string) *Requests {
	return &Requests{stream: stream, byKey: map[string]*AppendResult{}, prints: map[string]string{}}
}

// Record notes a loaded event's idempotency key.
func (r *Requests) Record(rec Recorded) {
	if rec.IdempotencyKey == "" {
		return
	}
	res, ok := r.byKey[rec.IdempotencyKey]
	if !ok {
		res = &AppendResult{Stream: r.stream, First: rec.Sequence, Duplicate: true}
		r.byKey[rec.IdempotencyKey] = res
		r.prints[rec.IdempotencyKey] = rec.Fingerprint
	}
	res.Last = rec.Sequence
	res.EventIDs = append(res.EventIDs, rec.ID)
}

// Check reports whether key was applied before. When it was, it returns the
// earlier result, or ErrIdempotencyMismatch if the content differed.
func (r *Requests) Check(key, fingerprint string) (AppendResult, bool, error) {
	res, ok := r.byKey[key]
	if !ok {
		return AppendResult{}, false, nil
	}
	if r.prints[key] != fingerprint {
		return AppendResult{}, true, fmt.Errorf("%w: key %q", ErrIdempotencyMismatch, key)
	}
	return *res, true, nil
}
