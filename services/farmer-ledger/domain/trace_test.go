package domain_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

// TestAllocateFirstInFirstOut: payable 500,000 and premium 60,000; a payout
// of 540,000 takes all the payable and 40,000 of the premium; a cut of
// 72,000 takes the 20,000 left unpaid and owes 52,000 back; a payable of
// 50,000 repays 50,000 of it and a premium of 30,000 the last 2,000, the
// rest (28,000) stays unpaid until a payout of 28,000 takes it.
func TestAllocateFirstInFirstOut(t *testing.T) {
	t.Parallel()
	got, err := domain.Allocate([]domain.TraceItem{
		{EntryID: "d1", AccruedFen: 500_000},
		{EntryID: "p1", AccruedFen: 60_000},
		{EntryID: "hold"}, // a hold moves nothing until the payout settles
		{EntryID: "settle1", PaidFen: 540_000, PayoutID: "PO-1"},
		{EntryID: "cut", AccruedFen: -72_000},
		{EntryID: "d2", AccruedFen: 50_000},
		{EntryID: "p2", AccruedFen: 30_000},
		{EntryID: "settle2", PaidFen: 28_000, PayoutID: "PO-2"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]*domain.Allocated{
		"d1":  {Parts: []domain.Part{{Kind: "payout", Fen: 500_000, PayoutID: "PO-1"}}},
		"p1":  {Parts: []domain.Part{{Kind: "payout", Fen: 40_000, PayoutID: "PO-1"}, {Kind: "reduction", Fen: 20_000, EntryID: "cut"}}},
		"cut": {Parts: []domain.Part{{Kind: "unpaid", Fen: 20_000, EntryID: "p1"}, {Kind: "receivable", Fen: 52_000}}},
		"d2":  {Parts: []domain.Part{{Kind: "receivable", Fen: 50_000, EntryID: "cut"}}},
		"p2":  {Parts: []domain.Part{{Kind: "receivable", Fen: 2_000, EntryID: "cut"}, {Kind: "payout", Fen: 28_000, PayoutID: "PO-2"}}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("allocation (-want +got):\n%s", diff)
	}
}
