package domain_test

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"testing"

	"github.com/google/go-cmp/cmp"

	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"

	"github.com/furrow/furrow/pkg/snapshot"

	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

// At every point of a farmer's history, its snapshot decoded and followed
// by the rest of the events equals the farmer replayed whole; every
// shorter or longer copy of the snapshot is refused.
func TestFarmerSnapshotPlusTailEqualsReplay(t *testing.T) {
	t.Parallel()
	first, second := cloneHistory(t)
	history := append(first, second...)
	want := replay(history)
	for k := 0; k <= len(history); k++ {
		var w snapshot.Writer
		if err := domain.EncodeFarmerSnapshot(replay(history[:k]), &w); err != nil {
			t.Fatalf("after %d events: encode: %v", k, err)
		}
		r := snapshot.NewReader(w.Data())
		got := domain.DecodeFarmerSnapshot("F1", r)
		if err := r.Done(); err != nil {
			t.Fatalf("after %d events: decode: %v", k, err)
		}
		if diff := cmp.Diff(replay(history[:k]), got, farmerCmp); diff != "" {
			t.Fatalf("after %d events: decoded snapshot (-replayed +decoded):\n%s", k, diff)
		}
		for _, ev := range history[k:] {
			got.Apply(ev.seq, ev.ev)
		}
		if diff := cmp.Diff(want, got, farmerCmp); diff != "" {
			t.Fatalf("snapshot after %d events + the %d after it (-full replay +snapshot and tail):\n%s", k, len(history)-k, diff)
		}
	}
	var w snapshot.Writer
	if err := domain.EncodeFarmerSnapshot(want, &w); err != nil {
		t.Fatal(err)
	}
	data := w.Data()
	for n := range len(data) {
		r := snapshot.NewReader(data[:n])
		domain.DecodeFarmerSnapshot("F1", r)
		if r.Done() == nil {
			t.Errorf("snapshot cut to %d of %d bytes decoded without error", n, len(data))
		}
	}
	r := snapshot.NewReader(append(append([]byte{}, data...), 0))
	domain.DecodeFarmerSnapshot("F1", r)
	if r.Done() == nil {
		t.Errorf("snapshot with a byte added decoded without error")
	}
}

// The farmer's snapshot schema names every field of Farmer, Payout and
// Balance: a field added without its place in the encoding, and a new
// schema version, would make snapshots silently drop it. When this fails,
// extend snapshot.go, bump FarmerSnapshotVersion, then the lists here.
func TestFarmerSnapshotCoversEveryField(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		typ  reflect.Type
		want string
	}{
		{reflect.TypeFor[domain.Farmer](), "id string; registered bool; name string; county string; cooperative string; phone string; " +
			"payoutAccount string; version uint64; erased bool; coolingOffUntil time.Time; posted cowmap.Map[string,struct {}]; balance domain.Balance; overflow error; " +
			"payouts cowmap.Map[string,github.com/furrow/furrow/services/farmer-ledger/domain.Payout]; byRequest cowmap.Map[string,string]"},
		{reflect.TypeFor[domain.Payout](), "ID string; FarmerID string; RequestID string; AmountFen int64; Currency string; " +
			"Account string; Status domain.PayoutStatus; ProviderRef string; Reason string; RequestedBy string"},
		{reflect.TypeFor[domain.Balance](), "FarmerID string; PurchasesFen int64; PremiumsFen int64; HeldFen int64; PaidFen int64; ReceivableFen int64; ClawbackFen int64"},
	} {
		if got := fields(tc.typ); got != tc.want || domain.FarmerSnapshotVersion != 2 {
			t.Errorf("%s (schema version %d) has fields\n\t%s\nthe snapshot encodes\n\t%s", tc.typ, domain.FarmerSnapshotVersion, got, tc.want)
		}
	}
}

func fields(t reflect.Type) string {
	s := ""
	for i := range t.NumField() {
		if i > 0 {
			s += "; "
		}
		s += fmt.Sprintf("%s %s", t.Field(i).Name, t.Field(i).Type)
	}
	return s
}

func TestOverflowedFarmerHasNoSnapshot(t *testing.T) {
	t.Parallel()
	f := domain.NewFarmer("F1")
	f.Apply(1, &ledgerevents.FarmerRegistered{FarmerId: "F1", Name: "Wang Fang", County: "Xunwu"})
	for seq := range uint64(2) {
		f.Apply(seq+2, &ledgerevents.EntryPosted{EntryId: fmt.Sprint("E", seq), FarmerId: "F1",
			Source: &ledgerevents.SourceRef{Stream: "PROCUREMENT", EventId: fmt.Sprint("d", seq)},
			Lines: []*ledgerevents.EntryLine{
				{Account: domain.AccountProcurementExpense, DebitFen: math.MaxInt64},
				{Account: domain.FarmerAccount("F1", domain.FarmerPayable), CreditFen: math.MaxInt64},
			}})
	}
	if f.Overflow() == nil {
		t.Fatal("no overflow after two entries of MaxInt64")
	}
	if err := domain.EncodeFarmerSnapshot(f, &snapshot.Writer{}); !errors.Is(err, domain.ErrSnapshotUnsupported) {
		t.Errorf("EncodeFarmerSnapshot of an overflowed farmer = %v, want ErrSnapshotUnsupported", err)
	}
}
