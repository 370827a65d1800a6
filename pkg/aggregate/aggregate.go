// Package aggregate loads event-sourced aggregates incrementally.
//
// Rebuilding an aggregate from all its events costs a read and a decode
// per event, so an aggregate that lives long — a farmer's account takes an
// entry for every delivery, premium and payout — costs more to load with
// every event it gains, and a stream of commands against it costs the
// square of its length. A Loader keeps recently used aggregates in memory
// at the stream sequence they were built to; a load reads only the events
// appended after that sequence, folds them into a copy, and hands the copy
// out.
//
// The cache is an optimisation, never the guarantee. A load always asks the
// stream for what follows the cached version, so it never returns older
// state than rebuilding from scratch would; every append still expects the
// version its decision was made on, so state gone stale between load and
// append (another replica appended) costs a lost race and a reload, as
// without the cache. An append refused at a version the stream shows
// nothing after means the cached state is not the stream's history at all
// (the stream was recreated under a running process): Conflicted marks the
// entry, and the next load rebuilds it from the first event.
package aggregate

import (
	"container/list"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/proto"

	"github.com/furrow/furrow/pkg/eventstore"
)

// Root is an aggregate a Loader can keep: rebuilt by folding its events in
// stream order, and copied so that each caller owns the state it decides on.
type Root[A any] interface {
	// Apply folds the event recorded at stream sequence seq.
	Apply(seq uint64, ev proto.Message)
	// Version is the sequence of the last event folded (0: none).
	Version() uint64
	// Clone returns a deep copy: applying events to either (or changing it
	// in any other way) never changes the other. Event messages the
	// aggregate keeps may be shared: events are facts, never modified.
	// A load clones once, or twice when it brings new events, so Clone
	// should cost far less than the events it saves reading: keep large
	// indexes in a cowmap.Map, whose copies cost O(√n).
	Clone() A
}

// Events reads an aggregate's events; *eventstore.Store implements it.
type Events interface {
	// Load returns the events on subjects matching filter with a sequence
	// greater than after, in stream order.
	Load(ctx context.Context, stream, filter string, after uint64) ([]eventstore.Recorded, error)
}

var _ Events = (*eventstore.Store)(nil)

// Kind describes one kind of aggregate: where its events are and how an
// empty one is made.
type Kind[A Root[A]] struct {
	// Name names the kind in errors, e.g. "farmer".
	Name string
	// Stream is the stream holding the events.
	Stream string
	// Filter is the subject filter covering all events of aggregate id.
	Filter func(id string) string
	// New returns the empty aggregate id, ready to fold events.
	New func(id string) A
	// Snapshot, when set, is how the kind is saved in snapshots (see
	// Options.Snapshots); nil: never.
	Snapshot *Schema[A]
}

// Default bounds of a Loader's cache.
const (
	// DefaultMaxAggregates bounds how many aggregates are kept.
	DefaultMaxAggregates = 10_000
	// DefaultMaxEvents bounds the number of events folded into the kept
	// aggregates, a proxy for their memory: a ledger farmer keeps about
	// 430 bytes per event (the source ids it has posted, the idempotency
	// keys it has seen; BenchmarkFarmerCacheMemory in cmd/furrow's bench
	// measures it), so this is some 40 MiB.
	DefaultMaxEvents = 100_000
)

// Options bound a Loader's cache. The zero value takes the defaults.
type Options struct {
	// MaxAggregates is the most aggregates kept (0: DefaultMaxAggregates;
	// negative: keep none, every load rebuilds from the first event).
	MaxAggregates int
	// MaxEvents is the most events folded into the aggregates kept, summed
	// over them (0 or less: DefaultMaxEvents). An aggregate larger than
	// this on its own is not kept.
	MaxEvents int
	// Snapshots, when set (and the Kind has a Schema), keeps a snapshot of
	// each aggregate that has gained SnapshotEvery events since its last
	// one, and starts loads that miss the cache from it (see snapshot.go).
	Snapshots SnapshotStore
	// SnapshotEvery is how many events an aggregate gains between
	// snapshots (0 or less: DefaultSnapshotEvery).
	SnapshotEvery int
	// Logger receives what goes wrong with snapshots (nil: slog.Default()).
	Logger *slog.Logger
}

// Stats counts what a Loader did since it was made.
type Stats struct {
	// Hits and Misses count loads that found, or did not find, the
	// aggregate in the cache.
	Hits, Misses uint64
	// EventsRead counts the events read from the stream (and folded).
	EventsRead uint64
	// Evictions counts aggregates dropped to stay within the bounds.
	Evictions uint64
	// Conflicts counts appends reported refused at a cached version;
	// Rebuilds counts the cached aggregates rebuilt from the first event
	// because such a refusal was not explained by newer events.
	Conflicts, Rebuilds uint64
	// Aggregates and Events are what the cache holds now.
	Aggregates, Events int
	// SnapshotsLoaded counts loads that started from a snapshot, and
	// SnapshotsRejected the snapshots found unusable (damaged, of another
	// schema version, not of the stream's history): those loads replayed
	// the aggregate whole. SnapshotsWritten and SnapshotErrors count the
	// background writes.
	SnapshotsLoaded, SnapshotsRejected, SnapshotsWritten, SnapshotErrors uint64
}

// Loader loads aggregates of one kind, keeping recently used ones.
//
// Concurrency: a Loader is safe for concurrent use. mu guards the index,
// the recency list, the totals and the counters, and is never held during
// I/O or while copying. A cached snapshot (aggregate and requests) is never
// modified once it is in the cache: loads copy it outside the lock, fold
// new events into their copy, and replace the entry with a fresh copy of
// the result. So each caller owns the aggregate and Requests it gets back
// and may do anything with them, and concurrent loads of one aggregate
// share nothing mutable. Two loads racing to store return their own,
// equally valid, copies; the entry keeps the newer version. Concurrent
// loads of an aggregate that is not cached yet each read it whole (there
// is no single flight): that happens only to an aggregate's first loads in
// a process, and costs no more than loading without a cache.
type Loader[A Root[A]] struct {
	events        Events
	kind          Kind[A]
	maxAggregates int
	maxEvents     int
	snaps         SnapshotStore // nil: no snapshots
	snapshotEvery int
	log           *slog.Logger
	// writing is set while a snapshot is being written.
	writing atomic.Bool

	mu      sync.Mutex
	entries map[string]*list.Element // values are *entry[A]
	lru     *list.List               // front: most recently used
	held    int                      // Σ entry.events
	stats   Stats
}

// entry is one cached aggregate.
type entry[A any] struct {
	id string
	// agg and seen are the snapshot; immutable once stored.
	agg  A
	seen *eventstore.Requests
	// version is the sequence of the last event folded into agg; last
	// says which event that is (see anchor).
	version uint64
	last    anchor
	// events is how many events were folded: the entry's weight.
	events int
	// snapped is how many of them the last snapshot written or read
	// holds (the one field changed in place, under Loader.mu).
	snapped int
	// suspect is set when an append expecting version was refused: the
	// next load must find newer events, or it rebuilds from scratch.
	suspect bool
}

// NewLoader returns a loader of kind over events.
func NewLoader[A Root[A]](events Events, kind Kind[A], opts Options) *Loader[A] {
	if opts.MaxAggregates == 0 {
		opts.MaxAggregates = DefaultMaxAggregates
	}
	if opts.MaxEvents <= 0 {
		opts.MaxEvents = DefaultMaxEvents
	}
	if opts.SnapshotEvery <= 0 {
		opts.SnapshotEvery = DefaultSnapshotEvery
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	l := &Loader[A]{
		events: events, kind: kind, maxAggregates: opts.MaxAggregates, maxEvents: opts.MaxEvents,
		snapshotEvery: opts.SnapshotEvery, log: opts.Logger,
		entries: map[string]*list.Element{}, lru: list.New(),
	}
	if kind.Snapshot != nil {
		l.snaps = opts.Snapshots
	}
	return l
}

// Load returns aggregate id as of its last event in the stream, with the
// idempotency keys its events were written under. An aggregate without
// events comes back empty (version 0). The caller owns both results.
func (l *Loader[A]) Load(ctx context.Context, id string) (A, *eventstore.Requests, error) {
	base, hit := l.lookup(id)
	var (
		agg     A
		seen    *eventstore.Requests
		after   uint64
		last    anchor
		events  int
		snapped int
		// fromSnapshot: agg is a snapshot's, to be checked against the
		// stream before it is used.
		fromSnapshot bool
	)
	if hit {
		agg, seen, after, last, events, snapped = base.agg.Clone(), base.seen.Clone(), base.version, base.last, base.events, base.snapped
	} else if s, ok := l.snapshotOf(ctx, id); ok {
		agg, seen, after, last, events, snapped = s.agg, s.seen, s.version, s.last, s.events, s.events
		fromSnapshot = true
	} else {
		agg, seen = l.kind.New(id), eventstore.NewRequests(l.kind.Stream)
	}
	filter := l.kind.Filter(id)
	from := after
	if fromSnapshot {
		from-- // read the snapshot's last event too: it anchors it in the stream
	}
	evs, err := l.events.Load(ctx, l.kind.Stream, filter, from)
	if err != nil {
		var zero A
		return zero, nil, fmt.Errorf("load %s %s: %w", l.kind.Name, id, err)
	}
	if fromSnapshot {
		if len(evs) > 0 && evs[0].Sequence == after && anchorOf(evs[0]) == last {
			evs = evs[1:]
			l.snapshotLoaded()
		} else {
			// The stream does not hold the snapshot's last event where the
			// snapshot says: it is not this stream's history (the stream
			// was recreated, or restored from an older backup). Replay the
			// aggregate whole.
			l.rejectSnapshot(ctx, id, fmt.Errorf("its last event %s (stored %d) is not at %s:%d", last.id, last.at, l.kind.Stream, after))
			agg, seen, after, last, events, snapped = l.kind.New(id), eventstore.NewRequests(l.kind.Stream), 0, anchor{}, 0, 0
			fromSnapshot = false
			if evs, err = l.events.Load(ctx, l.kind.Stream, filter, 0); err != nil {
				var zero A
				return zero, nil, fmt.Errorf("load %s %s: %w", l.kind.Name, id, err)
			}
		}
	}
	if hit && base.suspect && len(evs) == 0 {
		// An append at this version was refused, yet the stream holds
		// nothing after it: the cached state is not the stream's history.
		l.rebuilt(id)
		agg, seen, after, last, events, snapped = l.kind.New(id), eventstore.NewRequests(l.kind.Stream), 0, anchor{}, 0, 0
		if evs, err = l.events.Load(ctx, l.kind.Stream, filter, 0); err != nil {
			var zero A
			return zero, nil, fmt.Errorf("load %s %s: %w", l.kind.Name, id, err)
		}
	}
	version := after
	for _, ev := range evs {
		msg, err := eventstore.Decode(ev)
		if err != nil {
			var zero A
			return zero, nil, fmt.Errorf("load %s %s: %w", l.kind.Name, id, err)
		}
		agg.Apply(ev.Sequence, msg)
		seen.Record(ev)
		version, last = ev.Sequence, anchorOf(ev)
	}
	events += len(evs)
	l.count(len(evs))
	due := l.snapshotDue(events, snapped, last)
	if due {
		snapped = events
	}
	switch {
	case (len(evs) == 0 && !fromSnapshot && !due) || l.maxAggregates < 0:
	case events > l.maxEvents:
		l.Forget(id) // too large to keep: loads rebuild it, as without a cache
	default:
		l.store(&entry[A]{id: id, agg: agg.Clone(), seen: seen.Clone(), version: version, last: last, events: events, snapped: snapped})
	}
	if due {
		l.writeSnapshot(id, snap[A]{agg: agg.Clone(), seen: seen.Clone(), version: version, last: last, events: events})
	}
	return agg, seen, nil
}

// snapshotOf returns aggregate id's snapshot, if snapshots are on and it
// has a usable one.
func (l *Loader[A]) snapshotOf(ctx context.Context, id string) (snap[A], bool) {
	if l.snaps == nil {
		return snap[A]{}, false
	}
	return l.readSnapshot(ctx, id)
}

func (l *Loader[A]) snapshotLoaded() {
	l.mu.Lock()
	l.stats.SnapshotsLoaded++
	l.mu.Unlock()
}

// Conflicted reports that an append to aggregate id expecting version was
// refused because the aggregate had changed (eventstore.ErrConflict). The
// next load then reads what the winner appended; should the stream hold
// nothing after the cached version, that load rebuilds from the first event.
func (l *Loader[A]) Conflicted(id string, version uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if el, ok := l.entries[id]; ok {
		if e := el.Value.(*entry[A]); e.version <= version {
			e.suspect = true
			l.stats.Conflicts++
		}
	}
}

// Forget drops aggregate id from the cache.
func (l *Loader[A]) Forget(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if el, ok := l.entries[id]; ok {
		l.remove(el)
	}
}

// Stats returns the loader's counters.
func (l *Loader[A]) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.stats
	s.Aggregates, s.Events = l.lru.Len(), l.held
	return s
}

// lookup returns a copy of id's entry (whose snapshot the caller may read,
// never modify) and marks it most recently used.
func (l *Loader[A]) lookup(id string) (entry[A], bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	el, ok := l.entries[id]
	if !ok {
		l.stats.Misses++
		return entry[A]{}, false
	}
	l.stats.Hits++
	l.lru.MoveToFront(el)
	return *el.Value.(*entry[A]), true
}

func (l *Loader[A]) count(events int) {
	l.mu.Lock()
	l.stats.EventsRead += uint64(events)
	l.mu.Unlock()
}

// rebuilt drops id's entry before a rebuild from the first event.
func (l *Loader[A]) rebuilt(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stats.Rebuilds++
	if el, ok := l.entries[id]; ok {
		l.remove(el)
	}
}

// store puts e in the cache unless it already holds a newer version, then
// evicts the least recently used entries until the bounds hold.
func (l *Loader[A]) store(e *entry[A]) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if el, ok := l.entries[e.id]; ok {
		old := el.Value.(*entry[A])
		if old.version >= e.version && !old.suspect {
			if old.version == e.version {
				old.snapped = max(old.snapped, e.snapped)
			}
			return
		}
		l.held += e.events - old.events
		el.Value = e
		l.lru.MoveToFront(el)
	} else {
		l.entries[e.id] = l.lru.PushFront(e)
		l.held += e.events
	}
	for l.lru.Len() > l.maxAggregates || l.held > l.maxEvents {
		l.remove(l.lru.Back())
		l.stats.Evictions++
	}
}

func (l *Loader[A]) remove(el *list.Element) {
	e := l.lru.Remove(el).(*entry[A])
	delete(l.entries, e.id)
	l.held -= e.events
}
