package app_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"

	"github.com/furrow/furrow/pkg/aggregate"
	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/natstest"

	"github.com/furrow/furrow/services/procurement/adapters"
	"github.com/furrow/furrow/services/procurement/app"
	"github.com/furrow/furrow/services/procurement/domain"
)

// TestOrdersFromTwoReplicasNeverOverspend: two procurement replicas (two
// application services over one stream) take 16 concurrent orders each
// against one programme whose budget holds exactly 10. Only the appends'
// expected versions of the programme keep them apart: exactly 10 orders are
// placed, 22 refused for the budget, and the programme has reserved
// exactly its orders' value. It runs with each replica keeping its own
// cache of programmes and orders (each cache goes stale whenever the other
// replica reserves) and without caches.
func TestOrdersFromTwoReplicasNeverOverspend(t *testing.T) {
	t.Parallel()
	for name, cache := range map[string]aggregate.Options{"cached": {}, "uncached": {MaxAggregates: -1}} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testOrdersFromTwoReplicas(t, cache)
		})
	}
}

func testOrdersFromTwoReplicas(t *testing.T, cache aggregate.Options) {
	js := natstest.Embedded(t).JetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	if err := eventstore.EnsureStreams(ctx, js,
		eventstore.StreamSpec{Name: domain.Stream, Subjects: []string{domain.Subjects}},
		eventstore.StreamSpec{Name: adapters.LedgerStream, Subjects: []string{"ledger.>"}},
	); err != nil {
		t.Fatal(err)
	}
	store := eventstore.New(js)
	reg, err := eventstore.NewEvent("ledger.farmer.F1.farmer_registered",
		&ledgerevents.FarmerRegistered{FarmerId: "F1", Name: "Li Wei", County: "Qinglong"}, eventstore.Metadata{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Append(ctx, eventstore.AppendRequest{Stream: adapters.LedgerStream, Aggregate: "ledger.farmer.F1.>",
		Expect: eventstore.ExpectNew(), Events: []eventstore.Event{reg}}); err != nil {
		t.Fatal(err)
	}

	var events []*adapters.EventStore
	replica := func() *app.Procurement {
		ev := adapters.NewEventStoreWith(eventstore.New(js), cache)
		events = append(events, ev)
		return app.New(ev, adapters.NewLedgerFarmers(eventstore.New(js)), nil, nil, slog.New(slog.DiscardHandler))
	}
	replicas := []*app.Procurement{replica(), replica()}

	start, end := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// An order of 100 kg at 1,000 fen/kg reserves 100,000 fen: 10 fit.
	const perReplica, orderFen, budget = 16, 100_000, 10*100_000 + 50_000
	if _, err := replicas[0].OpenProgram(ctx, app.OpenProgram{RequestID: "open", Fingerprint: "open", ProgramID: "P1",
		Terms: domain.ProgramTerms{Name: "Qinglong chestnuts", BudgetFen: budget, PeriodStart: start, PeriodEnd: end,
			Products: []string{"chestnut"}, Counties: []string{"Qinglong"}}}); err != nil {
		t.Fatal(err)
	}

	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		outcomes = map[failure.Kind]int{}
		reserved int64
	)
	for r, p := range replicas {
		for i := range perReplica {
			wg.Go(func() {
				id := fmt.Sprintf("r%d-%d", r, i)
				for {
					out, err := p.PlaceOrder(ctx, app.PlaceOrder{RequestID: id, Fingerprint: id, Terms: domain.OrderTerms{
						ProgramID: "P1", FarmerID: "F1", Product: "chestnut",
						Prices:       []domain.GradePrice{{Grade: "A", PriceFenPerKg: 1_000}},
						OrderedGrams: 100_000, WindowStart: start, WindowEnd: end, OriginWarehouse: "WH-1",
					}})
					if failure.KindOf(err) == failure.KindConflict {
						continue // a client retries Aborted
					}
					mu.Lock()
					defer mu.Unlock()
					outcomes[failure.KindOf(err)]++
					if err == nil {
						reserved += out.Order.GetReservedFen()
					} else if failure.KindOf(err) == 0 {
						t.Errorf("order %s: %v", id, err)
					}
					return
				}
			})
		}
	}
	wg.Wait()
	if outcomes[0] != 10 || outcomes[failure.KindFailedPrecondition] != 2*perReplica-10 || reserved != 10*orderFen {
		t.Fatalf("outcomes %v, %d fen reserved; want 10 orders (%d fen) and %d refusals", outcomes, reserved, 10*orderFen, 2*perReplica-10)
	}
	prog, _, err := adapters.NewEventStoreWith(store, aggregate.Options{MaxAggregates: -1}).LoadProgram(ctx, "P1")
	if err != nil {
		t.Fatal(err)
	}
	if prog.ReservedFen() != 10*orderFen || prog.Orders() != 10 {
		t.Fatalf("programme reserved %d fen for %d orders, want %d for 10", prog.ReservedFen(), prog.Orders(), 10*orderFen)
	}
	for i, ev := range events {
		programs, orders := ev.CacheStats()
		t.Logf("replica %d's caches: programmes %+v; orders %+v", i, programs, orders)
		if cache.MaxAggregates >= 0 && programs.Hits == 0 {
			t.Errorf("replica %d never found the programme in its cache", i)
		}
	}
}
