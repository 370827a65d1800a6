// Package cowmap provides Map, a map whose copies are cheap.
//
// An aggregate kept in a cache is copied on every load, so that concurrent
// commands never share state, and its largest parts are indexes that only
// grow: the source events a farmer's ledger has posted, the idempotency
// keys an aggregate has seen. Copying a Go map costs time in proportion to
// its size, which would make every load cost the aggregate's whole
// history again. A Map instead keeps a frozen base, shared by all its
// copies and never written, and a small delta of its own later changes; a
// copy copies only the delta. When the delta grows past about the square
// root of the base, the two are merged into a new base. Copying then costs
// O(√n), and so does a write, amortised over the writes between merges.
package cowmap

import (
	"iter"
	"maps"
	"math"
)

// minDelta is the delta size below which a Map never merges: small maps
// are cheap to copy whole.
const minDelta = 32

// Map is a map from K to V whose Clone is cheap. The zero value is an empty
// map ready to use.
//
// Concurrency: a Map is not safe for concurrent modification. Copies may be
// used, and modified, by different goroutines at once: they share only the
// base, which nobody writes. Values are copied by assignment, so a V that
// holds pointers, slices or maps shares what they point to between copies:
// replace such a value with Set, never change it in place.
type Map[K comparable, V any] struct {
	// base is shared by copies and never written after it is made.
	base map[K]V
	// delta holds this copy's changes since base was made; it wins over base.
	delta map[K]V
	// n is the number of keys.
	n int
}

// Of returns a Map holding m, which it takes over: the caller must not
// use m afterwards. It costs nothing, where setting the keys one by one
// would merge about √n times (rebuilding an index from a snapshot).
func Of[K comparable, V any](m map[K]V) Map[K, V] {
	return Map[K, V]{base: m, n: len(m)}
}

// Get returns the value of k, and whether k is present.
func (m *Map[K, V]) Get(k K) (V, bool) {
	if v, ok := m.delta[k]; ok {
		return v, true
	}
	v, ok := m.base[k]
	return v, ok
}

// Has reports whether k is present.
func (m *Map[K, V]) Has(k K) bool {
	_, ok := m.Get(k)
	return ok
}

// Set sets k to v.
func (m *Map[K, V]) Set(k K, v V) {
	if _, ok := m.Get(k); !ok {
		m.n++
	}
	if m.delta == nil {
		m.delta = make(map[K]V)
	}
	m.delta[k] = v
	if len(m.delta) > minDelta+int(math.Sqrt(float64(len(m.base)))) {
		m.merge()
	}
}

// Len is the number of keys.
func (m *Map[K, V]) Len() int { return m.n }

// Clone returns a copy of m: setting keys in either never changes the
// other. It costs the changes since the last merge, not the whole map.
func (m *Map[K, V]) Clone() Map[K, V] {
	return Map[K, V]{base: m.base, delta: maps.Clone(m.delta), n: m.n}
}

// All yields every key and value, in no particular order.
func (m *Map[K, V]) All() iter.Seq2[K, V] {
	return func(yield func(K, V) bool) {
		for k, v := range m.delta {
			if !yield(k, v) {
				return
			}
		}
		for k, v := range m.base {
			if _, shadowed := m.delta[k]; shadowed {
				continue
			}
			if !yield(k, v) {
				return
			}
		}
	}
}

// merge makes base and delta into a new base of m's own; the old base may
// still be shared by copies, so it is left untouched.
func (m *Map[K, V]) merge() {
	base := maps.Clone(m.base) // copies whole groups: faster than inserting
	if base == nil {
		base = make(map[K]V, len(m.delta))
	}
	maps.Copy(base, m.delta)
	m.base, m.delta = base, nil
}
