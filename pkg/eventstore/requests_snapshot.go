package eventstore

import (
	"github.com/furrow/furrow/pkg/cowmap"
	"github.com/furrow/furrow/pkg/snapshot"
)

// EncodeSnapshot writes the set to w, for an aggregate snapshot (package
// aggregate): a snapshot must carry the idempotency keys of the events it
// covers, or a retry of a request applied before it would not be
// recognised once the server's de-duplication window has passed.
func (r *Requests) EncodeSnapshot(w *snapshot.Writer) {
	w.String(r.stream)
	w.Uint(uint64(r.byKey.Len()))
	for key, q := range r.byKey.All() {
		w.String(key)
		w.Uint(q.first)
		w.Uint(q.last)
		w.String(q.fingerprint)
		w.Uint(uint64(len(q.ids)))
		for _, id := range q.ids {
			w.String(id)
		}
	}
}

// DecodeRequests reads a set EncodeSnapshot wrote; rd reports a failure.
func DecodeRequests(rd *snapshot.Reader) *Requests {
	stream := rd.Text()
	n := rd.Count(5)
	byKey := make(map[string]request, n)
	// Most requests wrote one event: their ids share one array.
	shared := make([]string, 0, n)
	for range n {
		key := rd.Text()
		q := request{first: rd.Uint(), last: rd.Uint(), fingerprint: rd.Text()}
		ids := rd.Count(1)
		if ids <= cap(shared)-len(shared) {
			q.ids = shared[len(shared) : len(shared)+ids : len(shared)+ids]
			shared = shared[:len(shared)+ids]
		} else {
			q.ids = make([]string, ids)
		}
		for i := range q.ids {
			q.ids[i] = rd.Text()
		}
		if rd.Err() != nil {
			return NewRequests(stream)
		}
		if _, dup := byKey[key]; dup || q.first > q.last || len(q.ids) == 0 {
			rd.Fail("idempotency key repeated or empty")
			return NewRequests(stream)
		}
		byKey[key] = q
	}
	return &Requests{stream: stream, byKey: cowmap.Of(byKey)}
}
