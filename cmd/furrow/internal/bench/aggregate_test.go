package bench

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"
	procurementevents "github.com/furrow/furrow/proto/furrow/procurement/events/v1"

	"github.com/furrow/furrow/pkg/aggregate"
	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/natstest"

	"github.com/furrow/furrow/services/farmer-ledger/adapters"
	"github.com/furrow/furrow/services/farmer-ledger/app"
	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

// longLivedEntries is how many entries the long-lived farmer starts with:
// a season of deliveries and premiums.
const longLivedEntries = 2_000

// caches are the two ways the ledger can load farmers.
var caches = []struct {
	name string
	opts aggregate.Options
}{
	{"cached", aggregate.Options{}},
	{"uncached", aggregate.Options{MaxAggregates: -1}},
}

// BenchmarkLongLivedFarmer measures what a farmer's history costs the
// ledger, with and without the aggregate cache, on an embedded JetStream
// with sync always:
//
//   - post: PostEntryOnDeliveryRecorded, the ledger handler's work for one
//     delivery (load the farmer, decide, append with its version), one at a
//     time, on a farmer with 2,000 entries;
//   - load: loading that farmer alone (a query, or a command's first step);
//   - clone: copying the farmer in memory, what a cached load adds.
func BenchmarkLongLivedFarmer(b *testing.B) {
	js := natstest.Embedded(b).JetStream(b)
	ctx := context.Background()
	if err := eventstore.EnsureStreams(ctx, js, eventstore.StreamSpec{Name: domain.Stream, Subjects: []string{domain.Subjects}}); err != nil {
		b.Fatal(err)
	}
	store := eventstore.New(js)

	for _, c := range caches {
		b.Run("post/"+c.name, func(b *testing.B) {
			farmerID := "F-post-" + c.name
			repo := adapters.NewFarmerRepositoryWith(store, c.opts)
			ledger := app.New(app.Deps{Farmers: repo, Keys: benchKeys(b, js), Log: slog.New(slog.DiscardHandler)})
			seedFarmer(b, ctx, store, ledger, farmerID, longLivedEntries)
			if _, _, err := repo.Load(ctx, farmerID); err != nil { // warm the cache, as a running ledger has it
				b.Fatal(err)
			}
			i := 0
			start := time.Now()
			for b.Loop() {
				i++
				src := eventstore.Recorded{Stream: "PROCUREMENT", Sequence: uint64(i), Type: "furrow.procurement.events.v1.DeliveryRecorded",
					ID: fmt.Sprintf("%s-delivery-%d", farmerID, i)}
				if err := ledger.PostEntryOnDeliveryRecorded(ctx, src, &procurementevents.DeliveryRecorded{
					DeliveryId: src.ID, FarmerId: farmerID, Product: "xunwu-navel-orange", Grade: "A",
					NetGrams: 12_345, PriceFenPerKg: 680, AmountFen: 8395,
				}); err != nil {
					b.Fatal(err)
				}
			}
			record(b, "long-lived-farmer/post/"+c.name, b.N, time.Since(start))
			b.ReportMetric(float64(longLivedEntries+b.N), "entries-at-end")
		})
	}
	for _, c := range caches {
		b.Run("load/"+c.name, func(b *testing.B) {
			farmerID := "F-load-" + c.name
			repo := adapters.NewFarmerRepositoryWith(store, c.opts)
			seedFarmer(b, ctx, store, app.New(app.Deps{Farmers: repo, Keys: benchKeys(b, js), Log: slog.New(slog.DiscardHandler)}), farmerID, longLivedEntries)
			if _, _, err := repo.Load(ctx, farmerID); err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			for b.Loop() {
				if _, _, err := repo.Load(ctx, farmerID); err != nil {
					b.Fatal(err)
				}
			}
			record(b, "long-lived-farmer/load/"+c.name, b.N, time.Since(start))
		})
	}
	b.Run("clone", func(b *testing.B) {
		f, _, err := adapters.NewFarmerRepositoryWith(store, caches[1].opts).Load(ctx, "F-load-uncached")
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for b.Loop() {
			f.Clone()
		}
		record(b, "long-lived-farmer/clone", b.N, time.Since(start))
	})
}

// BenchmarkFarmerCacheMemory measures what the ledger's cache holds for a
// farmer, per event: the growth of the live heap when a loader folds 2,000
// entries as the handler writes them (each with its own idempotency key),
// served from memory — no server runs, whose own allocations would blur
// the figure.
func BenchmarkFarmerCacheMemory(b *testing.B) {
	const farmerID = "F-memory"
	evs := make(synthetic, longLivedEntries)
	for i := range evs {
		data, err := proto.Marshal(&ledgerevents.EntryPosted{
			EntryId: fmt.Sprintf("E-%s-src-%d", farmerID, i), FarmerId: farmerID, Description: "delivery D: 12345 g xunwu-navel-orange at 680 fen/kg",
			Source: &ledgerevents.SourceRef{Stream: "PROCUREMENT", Sequence: uint64(i + 1), EventId: fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i),
				EventType: "furrow.procurement.events.v1.DeliveryRecorded"},
			Lines: []*ledgerevents.EntryLine{
				{Account: domain.AccountProcurementExpense, DebitFen: 8395},
				{Account: domain.FarmerAccount(farmerID, domain.FarmerPayable), CreditFen: 8395},
			},
		})
		if err != nil {
			b.Fatal(err)
		}
		evs[i] = data
	}
	kind := aggregate.Kind[*domain.Farmer]{Name: "farmer", Stream: domain.Stream, Filter: domain.FarmerAggregate, New: domain.NewFarmer}
	var held int64
	for b.Loop() {
		before := heapBytes()
		l := aggregate.NewLoader(evs, kind, aggregate.Options{})
		if _, _, err := l.Load(context.Background(), farmerID); err != nil {
			b.Fatal(err)
		}
		held = heapBytes() - before
		runtime.KeepAlive(l)
	}
	b.ReportMetric(float64(held)/longLivedEntries, "cache-bytes/event")
}

// synthetic serves EntryPosted payloads as recorded events whose envelope
// strings are made afresh on every load, as reading the stream makes them.
type synthetic [][]byte

func (s synthetic) Load(_ context.Context, stream, _ string, after uint64) ([]eventstore.Recorded, error) {
	var out []eventstore.Recorded
	for i, data := range s {
		seq := uint64(i + 1)
		if seq <= after {
			continue
		}
		src := fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)
		out = append(out, eventstore.Recorded{
			Stream: stream, Sequence: seq, Type: "furrow.ledger.events.v1.EntryPosted", ID: fmt.Sprintf("%08x-1111-5111-9111-%012x", i, i),
			IdempotencyKey: "ledger.post:" + src, Fingerprint: src, Data: data,
		})
	}
	return out, nil
}

// heapBytes is the live heap after a collection.
func heapBytes() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// seedFarmer registers farmerID and posts entries payables to it, each
// as the ledger's handler writes it (its own append, idempotency key and
// fingerprint), from several goroutines to save time.
func seedFarmer(b *testing.B, ctx context.Context, store *eventstore.Store, ledger *app.Ledger, farmerID string, entries int) {
	b.Helper()
	if _, err := ledger.RegisterFarmer(ctx, app.RegisterFarmer{RequestID: "reg-" + farmerID, Fingerprint: "reg",
		Farmer: &ledgerevents.FarmerRegistered{FarmerId: farmerID, Name: "Wang Fang", County: "Xunwu", PayoutAccount: "6222"}}); err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for i := int(next.Add(1)); i <= entries; i = int(next.Add(1)) {
				srcID := fmt.Sprintf("%s-seed-%d", farmerID, i)
				ev, err := eventstore.NewEvent(domain.FarmerSubject(farmerID, domain.KindEntryPosted), &ledgerevents.EntryPosted{
					EntryId: "E-" + srcID, FarmerId: farmerID, Description: "seed",
					Source: &ledgerevents.SourceRef{Stream: "PROCUREMENT", Sequence: uint64(i), EventId: srcID,
						EventType: "furrow.procurement.events.v1.DeliveryRecorded"},
					Lines: []*ledgerevents.EntryLine{
						{Account: domain.AccountProcurementExpense, DebitFen: 8395},
						{Account: domain.FarmerAccount(farmerID, domain.FarmerPayable), CreditFen: 8395},
					},
				}, eventstore.Metadata{CausationID: srcID, Actor: "farmer-ledger/post-entry-on-delivery-recorded"})
				if err == nil {
					_, err = store.Append(ctx, eventstore.AppendRequest{
						Stream: domain.Stream, Aggregate: domain.FarmerAggregate(farmerID), Expect: eventstore.ExpectAny,
						IdempotencyKey: "ledger.post:" + srcID, Fingerprint: srcID, Events: []eventstore.Event{ev},
					})
				}
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
}

// benchKeys returns a key store over js's key bucket (made if missing).
func benchKeys(b *testing.B, js jetstream.JetStream) *adapters.KVKeys {
	b.Helper()
	ctx := context.Background()
	if _, err := adapters.EnsureKeyBucket(ctx, js, 1); err != nil {
		b.Fatal(err)
	}
	kek, err := adapters.DevKEK(ctx, js)
	if err != nil {
		b.Fatal(err)
	}
	keys, err := adapters.OpenKVKeys(ctx, js, kek, 0)
	if err != nil {
		b.Fatal(err)
	}
	return keys
}

// BenchmarkFarmerLoad measures what snapshots save an uncached load of a
// long-lived farmer (a replica's first load of it, or one evicted from the
// cache): 2,000 entries, then a tail of half the snapshot interval (the
// tail a load finds on average), loaded
//
//   - full: replaying every event;
//   - snapshot: from the farmer's snapshot in the LEDGER_SNAPSHOTS bucket
//     plus the events after it.
func BenchmarkFarmerLoad(b *testing.B) {
	js := natstest.Embedded(b).JetStream(b)
	ctx := context.Background()
	if err := eventstore.EnsureStreams(ctx, js, eventstore.StreamSpec{Name: domain.Stream, Subjects: []string{domain.Subjects}}); err != nil {
		b.Fatal(err)
	}
	if err := aggregate.EnsureSnapshotBucket(ctx, js, aggregate.SnapshotBucket("LEDGER_SNAPSHOTS", 1)); err != nil {
		b.Fatal(err)
	}
	snaps, err := aggregate.OpenSnapshots(ctx, js, "LEDGER_SNAPSHOTS")
	if err != nil {
		b.Fatal(err)
	}
	store := eventstore.New(js)
	const farmerID = "F-snapshot"
	quiet := slog.New(slog.DiscardHandler)
	withSnapshots := aggregate.Options{MaxAggregates: -1, Snapshots: snaps, Logger: quiet}
	writer := adapters.NewFarmerRepositoryWith(store, withSnapshots)
	seedFarmer(b, ctx, store, app.New(app.Deps{Farmers: writer, Log: quiet}), farmerID, longLivedEntries)
	if _, _, err := writer.Load(ctx, farmerID); err != nil { // writes the snapshot
		b.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); writer.CacheStats().SnapshotsWritten == 0; time.Sleep(10 * time.Millisecond) {
		if s := writer.CacheStats(); s.SnapshotErrors > 0 || time.Now().After(deadline) {
			b.Fatalf("snapshot not written: %+v", s)
		}
	}
	tail := aggregate.DefaultSnapshotEvery / 2
	seedMore(b, ctx, store, farmerID, longLivedEntries, tail)
	kv, err := js.KeyValue(ctx, "LEDGER_SNAPSHOTS")
	if err != nil {
		b.Fatal(err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("snapshot bucket: %d bytes for a farmer of %d entries", st.Bytes(), longLivedEntries+1)

	for _, c := range []struct {
		name string
		opts aggregate.Options
	}{
		{"full", aggregate.Options{MaxAggregates: -1}},
		// A snapshot interval beyond the tail: the loads only read.
		{"snapshot", aggregate.Options{MaxAggregates: -1, Snapshots: snaps, SnapshotEvery: 10 * longLivedEntries, Logger: quiet}},
	} {
		b.Run(c.name, func(b *testing.B) {
			repo := adapters.NewFarmerRepositoryWith(store, c.opts)
			start := time.Now()
			for b.Loop() {
				f, _, err := repo.Load(ctx, farmerID)
				if err != nil {
					b.Fatal(err)
				}
				if got := f.Balance().PurchasesFen; got != int64(longLivedEntries+tail)*8395 {
					b.Fatalf("payable %d, want %d", got, int64(longLivedEntries+tail)*8395)
				}
			}
			record(b, "farmer-load/"+c.name, b.N, time.Since(start))
			if s := repo.CacheStats(); c.opts.Snapshots != nil && (s.SnapshotsLoaded == 0 || s.SnapshotsRejected > 0) {
				b.Fatalf("snapshot loads: %+v", s)
			}
		})
	}
}

// seedMore posts entries from+1 … from+n to farmerID, as seedFarmer does.
func seedMore(b *testing.B, ctx context.Context, store *eventstore.Store, farmerID string, from, n int) {
	b.Helper()
	for i := from + 1; i <= from+n; i++ {
		srcID := fmt.Sprintf("%s-seed-%d", farmerID, i)
		ev, err := eventstore.NewEvent(domain.FarmerSubject(farmerID, domain.KindEntryPosted), &ledgerevents.EntryPosted{
			EntryId: "E-" + srcID, FarmerId: farmerID, Description: "seed",
			Source: &ledgerevents.SourceRef{Stream: "PROCUREMENT", Sequence: uint64(i), EventId: srcID,
				EventType: "furrow.procurement.events.v1.DeliveryRecorded"},
			Lines: []*ledgerevents.EntryLine{
				{Account: domain.AccountProcurementExpense, DebitFen: 8395},
				{Account: domain.FarmerAccount(farmerID, domain.FarmerPayable), CreditFen: 8395},
			},
		}, eventstore.Metadata{CausationID: srcID, Actor: "farmer-ledger/post-entry-on-delivery-recorded"})
		if err == nil {
			_, err = store.Append(ctx, eventstore.AppendRequest{
				Stream: domain.Stream, Aggregate: domain.FarmerAggregate(farmerID), Expect: eventstore.ExpectAny,
				IdempotencyKey: "ledger.post:" + srcID, Fingerprint: srcID, Events: []eventstore.Event{ev},
			})
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}
