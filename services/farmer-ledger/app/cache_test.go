package app_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"
	procurementevents "github.com/furrow/furrow/proto/furrow/procurement/events/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/natstest"

	"github.com/furrow/furrow/services/farmer-ledger/adapters"
	"github.com/furrow/furrow/services/farmer-ledger/app"
	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

// TestRetriesAfterTheDedupWindowFromTheCache: with the server's duplicate
// window at 100ms, a command retried and an event redelivered long after it
// are recognised from the farmer as the repository's cache holds it (the
// idempotency keys and posted sources come along with the cached state), so
// nothing is written twice.
func TestRetriesAfterTheDedupWindowFromTheCache(t *testing.T) {
	t.Parallel()
	js := natstest.Embedded(t).JetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	spec := eventstore.StreamSpec{Name: domain.Stream, Subjects: []string{domain.Subjects}, DuplicateWindow: 100 * time.Millisecond}
	if err := eventstore.EnsureStreams(ctx, js, spec); err != nil {
		t.Fatal(err)
	}
	store := eventstore.New(js)
	repo := adapters.NewFarmerRepository(store)
	l := app.New(app.Deps{Farmers: repo, Keys: testKeys(t, js), Log: slog.New(slog.DiscardHandler)})

	register := app.RegisterFarmer{RequestID: "reg-1", Fingerprint: "reg-1",
		Farmer: &ledgerevents.FarmerRegistered{FarmerId: "F1", Name: "Wang Fang", County: "Xunwu", PayoutAccount: "6222"}}
	first, err := l.RegisterFarmer(ctx, register)
	if err != nil {
		t.Fatal(err)
	}
	src := eventstore.Recorded{Stream: "PROCUREMENT", Sequence: 7, ID: "delivery-7", Type: "furrow.procurement.events.v1.DeliveryRecorded"}
	delivery := &procurementevents.DeliveryRecorded{DeliveryId: "D7", FarmerId: "F1", NetGrams: 1_000, PriceFenPerKg: 500, AmountFen: 500}
	if err := l.PostEntryOnDeliveryRecorded(ctx, src, delivery); err != nil {
		t.Fatal(err)
	}
	version, err := store.Version(ctx, domain.Stream, domain.FarmerAggregate("F1"))
	if err != nil {
		t.Fatal(err)
	}

	time.Sleep(300 * time.Millisecond) // the server forgets the message ids
	hits := repo.CacheStats().Hits
	again, err := l.RegisterFarmer(ctx, register)
	if err != nil {
		t.Fatalf("retried registration: %v", err)
	}
	if !again.Duplicate || again.Last != first.Last {
		t.Fatalf("retried registration = %+v, want the first one's result (%+v) as a duplicate", again, first)
	}
	if err := l.PostEntryOnDeliveryRecorded(ctx, src, delivery); err != nil {
		t.Fatalf("redelivered delivery: %v", err)
	}
	if now, err := store.Version(ctx, domain.Stream, domain.FarmerAggregate("F1")); err != nil || now != version {
		t.Fatalf("farmer at version %d (%v) after the retries, want %d: something was written twice", now, err, version)
	}
	if got := repo.CacheStats().Hits - hits; got < 2 {
		t.Fatalf("%d of the retries' loads hit the cache, want both", got)
	}
	f, _, err := repo.Load(ctx, "F1")
	if err != nil {
		t.Fatal(err)
	}
	if b := f.Balance(); b.PurchasesFen != 500 {
		t.Fatalf("farmer's purchases %d fen, want 500 (posted once)", b.PurchasesFen)
	}
}
