package app_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"
	procurementevents "github.com/furrow/furrow/proto/furrow/procurement/events/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/natstest"

	"github.com/furrow/furrow/services/farmer-ledger/adapters"
	"github.com/furrow/furrow/services/farmer-ledger/app"
	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

// TestPersonalDataIsSealedAndErased: registration and a new payout
// account reach the stream only sealed (payload and headers, the request
// fingerprint included); retries are still recognised; Reveal opens them
// with the farmer's key, and after EraseFarmer nothing does.
func TestPersonalDataIsSealedAndErased(t *testing.T) {
	t.Parallel()
	js := natstest.Embedded(t).JetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	if err := eventstore.EnsureStreams(ctx, js, eventstore.StreamSpec{Name: domain.Stream, Subjects: []string{domain.Subjects}}); err != nil {
		t.Fatal(err)
	}
	store := eventstore.New(js)
	repo := adapters.NewFarmerRepository(store)
	keys := testKeys(t, js)
	l := app.New(app.Deps{Farmers: repo, Keys: keys, Log: slog.New(slog.DiscardHandler)})

	const name, phone, account, account2 = "Wang Fang", "13800000201", "6222020000000201", "6222020000000202"
	register := app.RegisterFarmer{RequestID: "reg-1", Fingerprint: "fp-reg-1",
		Farmer: &ledgerevents.FarmerRegistered{FarmerId: "F1", Name: name, County: "Xunwu", Phone: phone, PayoutAccount: account}}
	first, err := l.RegisterFarmer(ctx, register)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := l.RegisterFarmer(ctx, register); err != nil || again.Last != first.Last {
		t.Fatalf("retried registration = %+v, %v; want the first one's result", again, err)
	}
	update := app.UpdatePayoutAccount{RequestID: "acct-1", Fingerprint: "fp-acct-1", FarmerID: "F1", PayoutAccount: account2}
	if _, err := l.UpdatePayoutAccount(ctx, update); err != nil {
		t.Fatal(err)
	}
	if _, err := l.UpdatePayoutAccount(ctx, update); err != nil {
		t.Fatalf("retried update: %v", err)
	}

	recs, err := store.Load(ctx, domain.Stream, domain.FarmerAggregate("F1"), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		raw := string(r.Data) + r.Fingerprint
		for _, clear := range []string{name, phone, account, account2, "fp-reg-1", "fp-acct-1"} {
			if strings.Contains(raw, clear) {
				t.Errorf("%s at %d holds %q in clear", r.Type, r.Sequence, clear)
			}
		}
	}

	f, err := l.Farmer(ctx, "F1")
	if err != nil {
		t.Fatal(err)
	}
	d := f.Snapshot()
	for field, want := range map[string]string{domain.FieldName: name, domain.FieldPhone: phone, domain.FieldPayoutAccount: account2} {
		text := map[string]string{domain.FieldName: d.GetName(), domain.FieldPhone: d.GetPhone(), domain.FieldPayoutAccount: d.GetPayoutAccount()}[field]
		if got, err := l.Reveal(ctx, "F1", field, text); err != nil || got != want {
			t.Errorf("Reveal(%s) = %q, %v; want %q", field, got, err, want)
		}
		// Another farmer's key, or another field, does not open it.
		if got, _ := l.Reveal(ctx, "F1", "other", text); got != domain.Unreadable {
			t.Errorf("Reveal(%s) as another field = %q, want %q", field, got, domain.Unreadable)
		}
	}

	if _, err := l.EraseFarmer(ctx, app.EraseFarmer{RequestID: "erase-1", Fingerprint: "e", FarmerID: "F1"}); err != nil {
		t.Fatal(err)
	}
	if got, err := l.Reveal(ctx, "F1", domain.FieldPayoutAccount, d.GetPayoutAccount()); err != nil || got != domain.Erased {
		t.Errorf("after erasure the sealed account reads %q, %v; want %q", got, err, domain.Erased)
	}
	// A fresh key store (another replica, no cache) finds no key either.
	fresh := app.New(app.Deps{Farmers: adapters.NewFarmerRepository(store), Keys: testKeys(t, js), Log: slog.New(slog.DiscardHandler)})
	if got, err := fresh.Reveal(ctx, "F1", domain.FieldName, d.GetName()); err != nil || got != domain.Erased {
		t.Errorf("another replica reads the name as %q, %v; want %q", got, err, domain.Erased)
	}
	if _, err := l.RegisterFarmer(ctx, register); failure.KindOf(err) != failure.KindFailedPrecondition {
		t.Errorf("registration retried after erasure: %v, want FailedPrecondition", err)
	}
}

// TestPayoutOfAnErasedAccountFails: when a farmer's key is destroyed while
// a payout is in flight (an erasure that raced with the request on another
// replica), the saga cannot read the account: it records the payout failed
// and releases the hold, rather than retry for ever.
func TestPayoutOfAnErasedAccountFails(t *testing.T) {
	t.Parallel()
	js := natstest.Embedded(t).JetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	if err := eventstore.EnsureStreams(ctx, js, eventstore.StreamSpec{Name: domain.Stream, Subjects: []string{domain.Subjects}}); err != nil {
		t.Fatal(err)
	}
	store := eventstore.New(js)
	keys := testKeys(t, js)
	sim, err := adapters.NewSimulatedProvider(adapters.SimulatedProviderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	l := app.New(app.Deps{Farmers: adapters.NewFarmerRepository(store), Keys: keys, Provider: sim, Log: slog.New(slog.DiscardHandler)})
	if _, err := l.RegisterFarmer(ctx, app.RegisterFarmer{RequestID: "reg", Fingerprint: "reg",
		Farmer: &ledgerevents.FarmerRegistered{FarmerId: "F1", Name: "Wang Fang", County: "Xunwu", PayoutAccount: "6222"}}); err != nil {
		t.Fatal(err)
	}
	if err := l.PostEntryOnDeliveryRecorded(ctx, eventstore.Recorded{Stream: "PROCUREMENT", Sequence: 1, ID: "d1"},
		&procurementevents.DeliveryRecorded{DeliveryId: "D1", FarmerId: "F1", AmountFen: 1_000}); err != nil {
		t.Fatal(err)
	}
	p, res, err := l.RequestPayout(ctx, app.RequestPayout{RequestID: "po", Fingerprint: "po", FarmerID: "F1", AmountFen: 600})
	if err != nil {
		t.Fatal(err)
	}
	if err := keys.Destroy(ctx, "F1"); err != nil {
		t.Fatal(err)
	}
	f, err := l.Farmer(ctx, "F1")
	if err != nil {
		t.Fatal(err)
	}
	requested := &ledgerevents.PayoutRequested{PayoutId: p.ID, FarmerId: "F1"}
	if err := l.SendPayoutOnPayoutRequested(ctx, eventstore.Recorded{Stream: domain.Stream, Sequence: res.First, ID: res.EventIDs[0]}, requested); err != nil {
		t.Fatal(err)
	}
	if f, err = l.Farmer(ctx, "F1"); err != nil {
		t.Fatal(err)
	}
	got, _ := f.Payout(p.ID)
	if got.Status != domain.PayoutStatusFailed || !strings.Contains(got.Reason, domain.Erased) {
		t.Errorf("payout = %+v, want failed because its account was erased", got)
	}
	if b := f.Balance(); b.HeldFen != 0 || b.PaidFen != 0 {
		t.Errorf("balance = %+v, want the hold released and nothing paid", b)
	}
	if _, err := sim.Status(ctx, p.ID); err == nil {
		t.Errorf("the provider received payout %s", p.ID)
	}
}
