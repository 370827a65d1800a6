package app_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"
	procurementevents "github.com/furrow/furrow/proto/furrow/procurement/events/v1"

	"github.com/furrow/furrow/pkg/aggregate"
	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/natstest"

	"github.com/furrow/furrow/services/farmer-ledger/adapters"
	"github.com/furrow/furrow/services/farmer-ledger/app"
	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

// countingFarmers counts the appends that lost an optimistic-concurrency
// race, to show the test really made replicas race.
type countingFarmers struct {
	*adapters.FarmerRepository
	conflicts *atomic.Int64
}

func (c countingFarmers) Append(ctx context.Context, f *domain.Farmer, key, fp string, md eventstore.Metadata, changes ...domain.Change) (eventstore.AppendResult, error) {
	res, err := c.FarmerRepository.Append(ctx, f, key, fp, md, changes...)
	if errors.Is(err, eventstore.ErrConflict) {
		c.conflicts.Add(1)
	}
	return res, err
}

// TestPayoutsFromTwoReplicasNeverOverdraw: two ledger replicas (two
// application services, each with its own in-process lock, over one
// stream) take 32 concurrent payout requests each for the same farmer.
// Only the appends' expected versions keep them apart: exactly 33 payouts
// of 300 fen fit in 10,000 fen, and the aggregate's own balance agrees.
// It runs with each replica keeping its own cache of farmers (each one's
// cache goes stale whenever the other appends) and without caches.
func TestPayoutsFromTwoReplicasNeverOverdraw(t *testing.T) {
	t.Parallel()
	for name, cache := range map[string]aggregate.Options{"cached": {}, "uncached": {MaxAggregates: -1}} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testPayoutsFromTwoReplicas(t, cache)
		})
	}
}

func testPayoutsFromTwoReplicas(t *testing.T, cache aggregate.Options) {
	js := natstest.Embedded(t).JetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	spec := eventstore.StreamSpec{Name: domain.Stream, Subjects: []string{domain.Subjects}}
	if err := eventstore.EnsureStreams(ctx, js, spec); err != nil {
		t.Fatal(err)
	}
	var conflicts atomic.Int64
	var repos []*adapters.FarmerRepository
	replica := func() *app.Ledger {
		repo := countingFarmers{adapters.NewFarmerRepositoryWith(eventstore.New(js), cache), &conflicts}
		repos = append(repos, repo.FarmerRepository)
		return app.New(app.Deps{Farmers: repo, Keys: testKeys(t, js), Log: slog.New(slog.DiscardHandler)})
	}
	replicas := []*app.Ledger{replica(), replica()}

	if _, err := replicas[0].RegisterFarmer(ctx, app.RegisterFarmer{RequestID: "reg", Fingerprint: "reg",
		Farmer: &ledgerevents.FarmerRegistered{FarmerId: "F1", Name: "Wang Fang", County: "Xunwu", PayoutAccount: "6222"}}); err != nil {
		t.Fatal(err)
	}
	src := eventstore.Recorded{Stream: "PROCUREMENT", Sequence: 1, ID: "delivery-1", Type: "furrow.procurement.events.v1.DeliveryRecorded"}
	if err := replicas[1].PostEntryOnDeliveryRecorded(ctx, src, &procurementevents.DeliveryRecorded{
		DeliveryId: "D1", FarmerId: "F1", NetGrams: 25_000, PriceFenPerKg: 400, AmountFen: 10_000}); err != nil {
		t.Fatal(err)
	}

	const perReplica, amount = 32, 300
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		outcomes = map[failure.Kind]int{}
		held     int64
	)
	for r, l := range replicas {
		for i := range perReplica {
			wg.Go(func() {
				for {
					p, _, err := l.RequestPayout(ctx, app.RequestPayout{
						RequestID: fmt.Sprintf("r%d-%d", r, i), Fingerprint: fmt.Sprintf("r%d-%d", r, i),
						FarmerID: "F1", AmountFen: amount,
					})
					if failure.KindOf(err) == failure.KindConflict {
						continue // a client retries Aborted
					}
					mu.Lock()
					outcomes[failure.KindOf(err)]++
					if err == nil {
						held += p.AmountFen
					} else if failure.KindOf(err) == 0 {
						t.Errorf("request r%d-%d: %v", r, i, err)
					}
					mu.Unlock()
					return
				}
			})
		}
	}
	wg.Wait()
	if outcomes[0] != 33 || outcomes[failure.KindFailedPrecondition] != 31 || held != 9_900 {
		t.Fatalf("outcomes %v, %d fen held; want 33 payouts (9,900 fen) and 31 refusals", outcomes, held)
	}
	if conflicts.Load() == 0 {
		t.Fatal("the replicas never raced: the test proves nothing")
	}
	f, _, err := adapters.NewFarmerRepository(eventstore.New(js)).Load(ctx, "F1")
	if err != nil {
		t.Fatal(err)
	}
	b := f.Balance()
	if avail, err := b.Available(); err != nil || b.HeldFen != 9_900 || avail != 100 {
		t.Fatalf("farmer's balance %+v (available %d, %v), want 9,900 held and 100 available", b, avail, err)
	}
	t.Logf("%d appends lost a race and were decided again", conflicts.Load())
	for i, r := range repos {
		stats := r.CacheStats()
		t.Logf("replica %d's farmer cache: %+v", i, stats)
		if cache.MaxAggregates >= 0 && stats.Hits == 0 {
			t.Errorf("replica %d never found the farmer in its cache", i)
		}
	}
}
