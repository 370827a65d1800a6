package domain_test

import (
	"google.golang.org/protobuf/types/known/timestamppb"
	"maps"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"

	"github.com/furrow/furrow/pkg/cowmap"

	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

// recorded is an event at its stream sequence.
type recorded struct {
	seq uint64
	ev  proto.Message
}

// replay rebuilds a farmer from events: the oracle a clone is held to.
func replay(evs ...[]recorded) *domain.Farmer {
	f := domain.NewFarmer("F1")
	for _, part := range evs {
		for _, r := range part {
			f.Apply(r.seq, r.ev)
		}
	}
	return f
}

// farmerCmp compares farmers field by field, unexported ones included,
// and their cowmaps by content (copies lay theirs out differently).
var farmerCmp = cmp.Options{
	cmp.AllowUnexported(domain.Farmer{}),
	plainMap[string, struct{}](), plainMap[string, domain.Payout](), plainMap[string, string](),
}

func plainMap[K comparable, V any]() cmp.Option {
	return cmp.Transformer("cowmap", func(m cowmap.Map[K, V]) map[K]V { return maps.Collect(m.All()) })
}

// cloneHistory decides a farmer's life in two halves: registration,
// entries and a payout with its hold; then another entry, the payout sent
// and settled, a second payout and a new payout account. The second half
// changes every part of the aggregate: posted sources, balance, an
// existing payout, the payouts and the request index.
func cloneHistory(t *testing.T) (first, second []recorded) {
	t.Helper()
	b := newBook(t, "6222-1")
	src := func(id string) *ledgerevents.SourceRef {
		return &ledgerevents.SourceRef{Stream: "PROCUREMENT", EventId: id, EventType: "furrow.procurement.events.v1.DeliveryRecorded"}
	}
	var log []recorded
	apply := func(changes ...domain.Change) {
		t.Helper()
		for _, c := range changes {
			b.apply(c)
			log = append(log, recorded{seq: b.seq, ev: c.Event})
		}
	}
	entry := func(e *ledgerevents.EntryPosted, _ bool, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		apply(domain.Change{Kind: domain.KindEntryPosted, Event: e})
	}
	log = append(log, recorded{seq: b.seq, ev: &ledgerevents.FarmerRegistered{FarmerId: "F1", Name: "Wang Fang", County: "Xunwu", PayoutAccount: "6222-1"}})
	entry(b.f.PostPayable(src("d1"), 10_000, "d1"))
	entry(b.f.PostPremium(src("s1"), 500, "s1"))
	_, changes, err := b.f.RequestPayout(domain.PayoutRequest{RequestID: "r1", AmountFen: 3_000}, b.ids)
	if err != nil {
		t.Fatal(err)
	}
	apply(changes...)
	first, log = log, nil

	entry(b.f.PostPayable(src("d2"), 2_000, "d2"))
	changes, err = b.f.RecordProviderOutcome("PO-F1-1", domain.ProviderReceipt{Reference: "bank-1", Status: domain.ProviderSettled, At: time.Unix(1_700_000_000, 0)}, b.ids)
	if err != nil {
		t.Fatal(err)
	}
	apply(changes...)
	_, changes, err = b.f.RequestPayout(domain.PayoutRequest{RequestID: "r2", AmountFen: 1_000}, b.ids)
	if err != nil {
		t.Fatal(err)
	}
	apply(changes...)
	acct, err := b.f.UpdatePayoutAccount("6222-2")
	if err != nil {
		t.Fatal(err)
	}
	apply(domain.Change{Kind: domain.KindPayoutAccountUpdated, Event: acct})
	// State the snapshot must carry too: a cooling-off period (with
	// nanoseconds) after another account change.
	b.seq++
	log = append(log, recorded{seq: b.seq, ev: &ledgerevents.PayoutAccountUpdated{FarmerId: "F1", PayoutAccount: "6222-3",
		CoolingOffUntil: timestamppb.New(time.Unix(1_700_100_000, 123))}})
	return first, log
}

// TestFarmerCloneIsDeep: a clone equals its original, and applying events
// to either one leaves the other exactly as a replay of its own events.
func TestFarmerCloneIsDeep(t *testing.T) {
	t.Parallel()
	first, second := cloneHistory(t)
	for _, mutate := range []string{"clone", "original"} {
		t.Run("apply to the "+mutate, func(t *testing.T) {
			t.Parallel()
			orig := replay(first)
			clone := orig.Clone()
			if diff := cmp.Diff(orig, clone, farmerCmp); diff != "" {
				t.Fatalf("clone differs from its original (-orig +clone):\n%s", diff)
			}
			changed, untouched := clone, orig
			if mutate == "original" {
				changed, untouched = orig, clone
			}
			for _, r := range second {
				changed.Apply(r.seq, r.ev)
			}
			if diff := cmp.Diff(replay(first), untouched, farmerCmp); diff != "" {
				t.Errorf("applying to the %s changed the other (-want +got):\n%s", mutate, diff)
			}
			if diff := cmp.Diff(replay(first, second), changed, farmerCmp); diff != "" {
				t.Errorf("the %s after applying (-want +got):\n%s", mutate, diff)
			}
		})
	}
}

// TestFarmerClonesApplyConcurrently: clones of one farmer taken and changed
// by several goroutines at once share nothing they write (run with -race).
func TestFarmerClonesApplyConcurrently(t *testing.T) {
	t.Parallel()
	first, second := cloneHistory(t)
	orig := replay(first)
	want := replay(first, second)
	done := make(chan *domain.Farmer)
	for range 4 {
		go func() {
			c := orig.Clone()
			for _, r := range second {
				c.Apply(r.seq, r.ev)
			}
			done <- c
		}()
	}
	for range 4 {
		if diff := cmp.Diff(want, <-done, farmerCmp); diff != "" {
			t.Fatalf("clone after applying (-want +got):\n%s", diff)
		}
	}
	if diff := cmp.Diff(replay(first), orig, farmerCmp); diff != "" {
		t.Fatalf("original after its clones changed (-want +got):\n%s", diff)
	}
}
