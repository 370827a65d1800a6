package aggregate_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/furrow/furrow/pkg/aggregate"
	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/natstest"
)

// tally is the test aggregate: it adds up Int64Value events and keeps them
// in a slice and a map, so a shallow copy would share state.
type tally struct {
	id      string
	version uint64
	sum     int64
	values  []int64
	counts  map[int64]int
}

func newTally(id string) *tally { return &tally{id: id, counts: map[int64]int{}} }

func (t *tally) Apply(seq uint64, ev proto.Message) {
	t.version = seq
	if v, ok := ev.(*wrapperspb.Int64Value); ok {
		t.sum += v.GetValue()
		t.values = append(t.values, v.GetValue())
		t.counts[v.GetValue()]++
	}
}

func (t *tally) Version() uint64 { return t.version }

func (t *tally) Clone() *tally {
	c := *t
	c.values = slices.Clone(t.values)
	c.counts = maps.Clone(t.counts)
	return &c
}

// state is a tally's content, for comparisons.
type state struct {
	Version uint64
	Sum     int64
	Values  []int64
	Counts  map[int64]int
}

func (t *tally) state() state {
	return state{Version: t.version, Sum: t.sum, Values: slices.Clone(t.values), Counts: maps.Clone(t.counts)}
}

// recordingEvents remembers from which sequence each load read.
type recordingEvents struct {
	aggregate.Events
	mu     sync.Mutex
	afters []uint64
}

func (r *recordingEvents) Load(ctx context.Context, stream, filter string, after uint64) ([]eventstore.Recorded, error) {
	r.mu.Lock()
	r.afters = append(r.afters, after)
	r.mu.Unlock()
	return r.Events.Load(ctx, stream, filter, after)
}

func (r *recordingEvents) lastAfter() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.afters[len(r.afters)-1]
}

// env is one test's stream on an embedded JetStream server.
type env struct {
	srv    *natstest.Server
	store  *eventstore.Store
	stream string
	prefix string
	window time.Duration
}

var streams atomic.Int64

func newEnv(t *testing.T, window time.Duration) *env {
	t.Helper()
	n := streams.Add(1)
	e := &env{srv: natstest.Embedded(t), stream: fmt.Sprintf("TALLY%d", n), prefix: fmt.Sprintf("tally%d", n), window: window}
	e.store = eventstore.New(e.srv.JetStream(t))
	e.ensure(t)
	return e
}

func (e *env) ensure(t testing.TB) {
	t.Helper()
	spec := eventstore.StreamSpec{Name: e.stream, Subjects: []string{e.prefix + ".>"}, DuplicateWindow: e.window}
	if err := eventstore.EnsureStreams(context.Background(), e.store.JetStream(), spec); err != nil {
		t.Fatal(err)
	}
}

func (e *env) kind() aggregate.Kind[*tally] {
	return aggregate.Kind[*tally]{
		Name: "tally", Stream: e.stream, New: newTally,
		Filter: func(id string) string { return e.prefix + ".tally." + id + ".>" },
	}
}

// add appends values to tally id as one batch, expecting version.
func (e *env) add(ctx context.Context, id string, version uint64, key string, values ...int64) (eventstore.AppendResult, error) {
	evs := make([]eventstore.Event, len(values))
	for i, v := range values {
		ev, err := eventstore.NewEvent(e.prefix+".tally."+id+".added", wrapperspb.Int64(v), eventstore.Metadata{})
		if err != nil {
			return eventstore.AppendResult{}, err
		}
		evs[i] = ev
	}
	return e.store.Append(ctx, eventstore.AppendRequest{
		Stream: e.stream, Aggregate: e.prefix + ".tally." + id + ".>", Expect: eventstore.ExpectVersion(version),
		IdempotencyKey: key, Fingerprint: key, Events: evs,
	})
}

func (e *env) mustAdd(t testing.TB, id string, values ...int64) eventstore.AppendResult {
	t.Helper()
	ctx := context.Background()
	v, err := e.store.Version(ctx, e.stream, e.prefix+".tally."+id+".>")
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.add(ctx, id, v, fmt.Sprintf("%s@%d", id, v), values...)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// rebuilt loads id from its first event, without a cache: the oracle.
func (e *env) rebuilt(t testing.TB, id string) state {
	t.Helper()
	agg, _, err := aggregate.NewLoader[*tally](e.store, e.kind(), aggregate.Options{MaxAggregates: -1}).Load(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return agg.state()
}

func mustLoad(t testing.TB, l *aggregate.Loader[*tally], id string) (*tally, *eventstore.Requests) {
	t.Helper()
	agg, seen, err := l.Load(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return agg, seen
}

func TestLoadMissThenHitThenCatchUp(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	rec := &recordingEvents{Events: e.store}
	l := aggregate.NewLoader(rec, e.kind(), aggregate.Options{})
	e.mustAdd(t, "A", 1, 2, 3)

	a, _ := mustLoad(t, l, "A")
	if diff := cmp.Diff(e.rebuilt(t, "A"), a.state()); diff != "" {
		t.Fatalf("first load (-want +got):\n%s", diff)
	}
	if got := rec.lastAfter(); got != 0 {
		t.Fatalf("a miss read after %d, want from the start", got)
	}
	v3 := a.Version()

	b, _ := mustLoad(t, l, "A")
	if diff := cmp.Diff(a.state(), b.state()); diff != "" {
		t.Fatalf("hit without new events (-want +got):\n%s", diff)
	}
	if got := rec.lastAfter(); got != v3 {
		t.Fatalf("a hit read after %d, want after the cached version %d", got, v3)
	}

	e.mustAdd(t, "A", 10, 20)
	c, _ := mustLoad(t, l, "A")
	if diff := cmp.Diff(e.rebuilt(t, "A"), c.state()); diff != "" {
		t.Fatalf("catch-up (-want +got):\n%s", diff)
	}
	if got := rec.lastAfter(); got != v3 {
		t.Fatalf("catch-up read after %d, want after %d", got, v3)
	}
	want := aggregate.Stats{Hits: 2, Misses: 1, EventsRead: 5, Aggregates: 1, Events: 5}
	if diff := cmp.Diff(want, l.Stats()); diff != "" {
		t.Fatalf("stats (-want +got):\n%s", diff)
	}

	// An aggregate without events is empty, and is not kept.
	empty, seen := mustLoad(t, l, "none")
	if empty.Version() != 0 || seen.Len() != 0 {
		t.Fatalf("unknown aggregate at version %d with %d keys, want empty", empty.Version(), seen.Len())
	}
	if got := l.Stats().Aggregates; got != 1 {
		t.Fatalf("%d aggregates kept, want 1 (not the empty one)", got)
	}
}

func TestLoadReturnsPrivateCopies(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	l := aggregate.NewLoader[*tally](e.store, e.kind(), aggregate.Options{})
	e.mustAdd(t, "A", 1, 2)
	want := e.rebuilt(t, "A")
	// The first load misses, the second hits; neither result is the cache's.
	for _, load := range []string{"miss", "hit"} {
		got, seen := mustLoad(t, l, "A")
		got.Apply(got.Version()+100, wrapperspb.Int64(1000))
		got.values[0] = -1
		got.counts[1] = 99
		seen.Record(eventstore.Recorded{Sequence: 999, ID: "x", IdempotencyKey: "bogus-" + load, Fingerprint: "f"})

		again, seen2 := mustLoad(t, l, "A")
		if diff := cmp.Diff(want, again.state()); diff != "" {
			t.Fatalf("changes to the result of a %s leaked into the cache (-want +got):\n%s", load, diff)
		}
		if _, found, _ := seen2.Check("bogus-"+load, "f"); found {
			t.Fatalf("a key recorded into the result of a %s leaked into the cache", load)
		}
	}
}

func TestEvictionKeepsWithinBounds(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	for _, id := range []string{"A", "B", "C"} {
		e.mustAdd(t, id, 1, 2)
	}
	t.Run("aggregates, least recently used first", func(t *testing.T) {
		l := aggregate.NewLoader[*tally](e.store, e.kind(), aggregate.Options{MaxAggregates: 2})
		mustLoad(t, l, "A")
		mustLoad(t, l, "B")
		mustLoad(t, l, "A") // A is now more recent than B
		mustLoad(t, l, "C") // evicts B
		s := l.Stats()
		if s.Evictions != 1 || s.Aggregates != 2 || s.Events != 4 {
			t.Fatalf("stats %+v, want 1 eviction, 2 aggregates of 4 events", s)
		}
		hits := s.Hits
		mustLoad(t, l, "A")
		mustLoad(t, l, "C")
		if got := l.Stats().Hits - hits; got != 2 {
			t.Fatalf("%d of A and C hit, want both", got)
		}
		misses := l.Stats().Misses
		mustLoad(t, l, "B")
		if got := l.Stats().Misses - misses; got != 1 {
			t.Fatal("B was not evicted")
		}
	})
	t.Run("events", func(t *testing.T) {
		l := aggregate.NewLoader[*tally](e.store, e.kind(), aggregate.Options{MaxEvents: 5})
		mustLoad(t, l, "A")
		mustLoad(t, l, "B") // 4 events held
		mustLoad(t, l, "C") // 6 > 5: evicts A
		if s := l.Stats(); s.Evictions != 1 || s.Aggregates != 2 || s.Events != 4 {
			t.Fatalf("stats %+v, want 1 eviction, 2 aggregates of 4 events", s)
		}
		e.mustAdd(t, "D", 1, 2, 3, 4, 5, 6)
		mustLoad(t, l, "D") // larger than the whole cache: not kept
		if s := l.Stats(); s.Aggregates != 2 || s.Events != 4 {
			t.Fatalf("stats %+v, want the oversized aggregate left out", s)
		}
		e.mustAdd(t, "C", 3, 4, 5, 6)
		mustLoad(t, l, "C") // grown too large: dropped
		if s := l.Stats(); s.Aggregates != 1 || s.Events != 2 {
			t.Fatalf("stats %+v, want the aggregate that outgrew the cache dropped", s)
		}
	})
	t.Run("none", func(t *testing.T) {
		l := aggregate.NewLoader[*tally](e.store, e.kind(), aggregate.Options{MaxAggregates: -1})
		mustLoad(t, l, "A")
		mustLoad(t, l, "A")
		if s := l.Stats(); s.Hits != 0 || s.Aggregates != 0 || s.EventsRead != 4 {
			t.Fatalf("stats %+v, want every load to read everything", s)
		}
	})
}

// TestRequestsSurviveTheDedupWindow: the idempotency keys come along with
// the cached state, so a retry long after the server's duplicate window
// (here 100ms) is still recognised from the cache — also when the events
// were read in several incremental loads, and for a multi-event batch.
func TestRequestsSurviveTheDedupWindow(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 100*time.Millisecond)
	ctx := context.Background()
	l := aggregate.NewLoader[*tally](e.store, e.kind(), aggregate.Options{})

	first, err := e.add(ctx, "A", 0, "req-1", 5)
	if err != nil {
		t.Fatal(err)
	}
	mustLoad(t, l, "A")
	batch, err := e.add(ctx, "A", first.Last, "req-2", 6, 7, 8)
	if err != nil {
		t.Fatal(err)
	}
	mustLoad(t, l, "A") // catches up with the batch
	time.Sleep(300 * time.Millisecond)
	third, err := e.add(ctx, "A", batch.Last, "req-3", 9)
	if err != nil {
		t.Fatal(err)
	}
	_, seen := mustLoad(t, l, "A")
	if l.Stats().Misses != 1 {
		t.Fatalf("stats %+v: want one miss, then incremental loads", l.Stats())
	}

	for _, want := range []struct {
		key string
		res eventstore.AppendResult
	}{{"req-1", first}, {"req-2", batch}, {"req-3", third}} {
		got, found, err := seen.Check(want.key, want.key)
		if err != nil || !found {
			t.Fatalf("Check(%s) = found %v, %v; want found", want.key, found, err)
		}
		w := want.res
		w.Duplicate = true
		if diff := cmp.Diff(w, got); diff != "" {
			t.Fatalf("Check(%s) (-want +got):\n%s", want.key, diff)
		}
	}
	if _, _, err := seen.Check("req-2", "other"); !errors.Is(err, eventstore.ErrIdempotencyMismatch) {
		t.Fatalf("Check(req-2, other content) = %v, want ErrIdempotencyMismatch", err)
	}
	// The server no longer remembers req-1: without the cached keys, a
	// retry would append again.
	if res, err := e.add(ctx, "A", third.Last, "req-1", 5); err != nil || res.Duplicate {
		t.Fatalf("retry after the window: %+v, %v; want the server to append it again", res, err)
	}
}

// TestStaleCacheConflictsThenRetrySucceeds: two processes, each with its
// own cache, over one stream. The state one decided on goes stale when
// the other appends; the append is refused, and a reload (reading only
// the winner's event) and a second decision succeed.
func TestStaleCacheConflictsThenRetrySucceeds(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	ctx := context.Background()
	p1 := aggregate.NewLoader[*tally](e.store, e.kind(), aggregate.Options{})
	p2 := aggregate.NewLoader[*tally](e.store, e.kind(), aggregate.Options{})
	e.mustAdd(t, "A", 1)

	mine, _ := mustLoad(t, p1, "A")
	theirs, _ := mustLoad(t, p2, "A")
	if _, err := e.add(ctx, "A", theirs.Version(), "p2", 2); err != nil {
		t.Fatal(err)
	}
	_, err := e.add(ctx, "A", mine.Version(), "p1", 3)
	if !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("append on stale state: %v, want ErrConflict", err)
	}
	p1.Conflicted("A", mine.Version())

	read := p1.Stats().EventsRead
	mine, _ = mustLoad(t, p1, "A")
	if got := p1.Stats().EventsRead - read; got != 1 {
		t.Fatalf("the reload read %d events, want only the winner's", got)
	}
	if _, err := e.add(ctx, "A", mine.Version(), "p1", 3); err != nil {
		t.Fatalf("retry: %v", err)
	}
	now, _ := mustLoad(t, p1, "A")
	if diff := cmp.Diff(e.rebuilt(t, "A"), now.state()); diff != "" {
		t.Fatalf("after the retry (-want +got):\n%s", diff)
	}
	if s := p1.Stats(); s.Conflicts != 1 || s.Rebuilds != 0 {
		t.Fatalf("stats %+v, want one conflict explained by the winner's event", s)
	}
}

// TestCacheNotInTheStreamIsRebuilt: the stream is recreated under a running
// process, so the cached state is no prefix of the stream's history. A
// load cannot tell (nothing follows the cached version), the append on it
// is refused, and the load after the conflict rebuilds from the first
// event, so the retry succeeds.
func TestCacheNotInTheStreamIsRebuilt(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	ctx := context.Background()
	l := aggregate.NewLoader[*tally](e.store, e.kind(), aggregate.Options{})
	e.mustAdd(t, "A", 1, 2, 3)
	mustLoad(t, l, "A")

	if err := e.store.JetStream().DeleteStream(ctx, e.stream); err != nil {
		t.Fatal(err)
	}
	e.ensure(t)
	e.mustAdd(t, "A", 40)

	stale, _ := mustLoad(t, l, "A")
	_, err := e.add(ctx, "A", stale.Version(), "retry-me", 2)
	if !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("append on state from another history: %v, want ErrConflict", err)
	}
	l.Conflicted("A", stale.Version())
	fresh, _ := mustLoad(t, l, "A")
	if diff := cmp.Diff(e.rebuilt(t, "A"), fresh.state()); diff != "" {
		t.Fatalf("after the conflict (-want +got):\n%s", diff)
	}
	if _, err := e.add(ctx, "A", fresh.Version(), "retry-me", 2); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if s := l.Stats(); s.Rebuilds != 1 {
		t.Fatalf("stats %+v, want one rebuild", s)
	}
}

// TestConcurrentLoadsAndAppends: goroutines of two processes add to two
// aggregates at once, each through its own process's cache, reloading on
// a lost race. No value is lost or doubled, and the caches agree with a
// rebuild from the first event. Run with -race, it also shows that loads
// share no mutable state.
func TestConcurrentLoadsAndAppends(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	ctx := context.Background()
	procs := []*aggregate.Loader[*tally]{
		aggregate.NewLoader[*tally](e.store, e.kind(), aggregate.Options{}),
		aggregate.NewLoader[*tally](e.store, e.kind(), aggregate.Options{}),
	}
	const workers, perWorker = 8, 10
	var wg sync.WaitGroup
	for w := range workers {
		l := procs[w%len(procs)]
		id := []string{"A", "B"}[w/2%2]
		wg.Go(func() {
			for i := range perWorker {
				key := fmt.Sprintf("w%d-%d", w, i)
				for {
					agg, seen, err := l.Load(ctx, id)
					if err != nil {
						t.Error(err)
						return
					}
					if _, found, _ := seen.Check(key, key); found {
						break
					}
					// Scribble on the private copy: nobody else may see it.
					agg.Apply(agg.Version(), wrapperspb.Int64(0))
					_, err = e.add(ctx, id, agg.Version(), key, 1)
					if err == nil {
						break
					}
					if !errors.Is(err, eventstore.ErrConflict) {
						t.Error(err)
						return
					}
					l.Conflicted(id, agg.Version())
				}
			}
		})
	}
	wg.Wait()
	for _, id := range []string{"A", "B"} {
		want := e.rebuilt(t, id)
		if want.Sum != workers/2*perWorker {
			t.Fatalf("%s adds up to %d, want %d", id, want.Sum, workers/2*perWorker)
		}
		for i, l := range procs {
			got, _ := mustLoad(t, l, id)
			if diff := cmp.Diff(want, got.state()); diff != "" {
				t.Fatalf("process %d's %s (-want +got):\n%s", i, id, diff)
			}
		}
	}
	var conflicts uint64
	for _, l := range procs {
		conflicts += l.Stats().Conflicts
	}
	t.Logf("%d appends lost a race", conflicts)
}
