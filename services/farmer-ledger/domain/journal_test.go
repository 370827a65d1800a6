package domain_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"

	"github.com/furrow/furrow/pkg/failure"

	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

func registered(t *testing.T) *domain.Farmer {
	t.Helper()
	f := domain.NewFarmer("F1")
	ev, err := f.Register(&ledgerevents.FarmerRegistered{FarmerId: "F1", Name: "Wang Fang", County: "Xunwu"})
	if err != nil {
		t.Fatal(err)
	}
	f.Apply(1, ev)
	return f
}

// payable sums the farmer's payable and premium accounts over entries, the
// way the balances projection does.
func accrued(entries []*ledgerevents.EntryPosted) (payable, premium int64) {
	for _, e := range entries {
		for _, l := range e.GetLines() {
			switch l.GetAccount() {
			case domain.FarmerAccount(e.GetFarmerId(), "payable"):
				payable += l.GetCreditFen() - l.GetDebitFen()
			case domain.FarmerAccount(e.GetFarmerId(), "premium"):
				premium += l.GetCreditFen() - l.GetDebitFen()
			}
		}
	}
	return payable, premium
}

func TestCorrectionChainEndsAtLastCorrection(t *testing.T) {
	t.Parallel()
	f := registered(t)
	var entries []*ledgerevents.EntryPosted
	post := func(seq uint64, e *ledgerevents.EntryPosted, already bool, err error) {
		t.Helper()
		if err != nil || already {
			t.Fatalf("post: already=%v err=%v", already, err)
		}
		if err := domain.CheckBalanced(e.GetLines()); err != nil {
			t.Fatal(err)
		}
		f.Apply(seq, e)
		entries = append(entries, e)
	}
	src := func(id string) *ledgerevents.SourceRef { return &ledgerevents.SourceRef{EventId: id} }
	e, already, err := f.PostPayable(src("rec"), 8395, "")
	post(2, e, already, err)
	e, already, err = f.PostCorrection(src("c1"), 8395, 7000, "")
	post(3, e, already, err)
	e, already, err = f.PostCorrection(src("c2"), 7000, 7100, "")
	post(4, e, already, err)
	if payable, _ := accrued(entries); payable != 7100 {
		t.Fatalf("payable after corrections = %d, want 7100", payable)
	}
	// Redelivery of any source event posts nothing.
	for _, id := range []string{"rec", "c1", "c2"} {
		if _, already, err := f.PostCorrection(src(id), 1, 2, ""); !already || err != nil {
			t.Fatalf("repost %s: already=%v err=%v", id, already, err)
		}
	}
}

func TestPremiumEarnedAndAdjusted(t *testing.T) {
	t.Parallel()
	f := registered(t)
	earned, _, err := f.PostPremium(&ledgerevents.SourceRef{EventId: "p1"}, 123_457, "")
	if err != nil {
		t.Fatal(err)
	}
	f.Apply(2, earned)
	down, _, err := f.PostPremium(&ledgerevents.SourceRef{EventId: "p2"}, -457, "")
	if err != nil {
		t.Fatal(err)
	}
	want := []*ledgerevents.EntryLine{
		{Account: domain.FarmerAccount("F1", "premium"), DebitFen: 457},
		{Account: domain.AccountPremiumExpense, CreditFen: 457},
	}
	if diff := cmp.Diff(want, down.GetLines(), protocmp.Transform()); diff != "" {
		t.Fatalf("negative adjustment lines (-want +got):\n%s", diff)
	}
	if _, premium := accrued([]*ledgerevents.EntryPosted{earned, down}); premium != 123_000 {
		t.Fatalf("premium = %d, want 123000", premium)
	}
}

func TestPostingRefusesUnknownFarmerAndNegativeAmounts(t *testing.T) {
	t.Parallel()
	if _, _, err := domain.NewFarmer("F9").PostPayable(&ledgerevents.SourceRef{EventId: "x"}, 1, ""); failure.KindOf(err) != failure.KindNotFound {
		t.Fatalf("unknown farmer: %v", err)
	}
	f := registered(t)
	if _, _, err := f.PostPayable(&ledgerevents.SourceRef{EventId: "x"}, -1, ""); failure.KindOf(err) != failure.KindInvalid {
		t.Fatalf("negative payable: %v", err)
	}
}

func TestCheckBalanced(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		lines []*ledgerevents.EntryLine
		ok    bool
	}{
		{"balanced", []*ledgerevents.EntryLine{{Account: "a", DebitFen: 5}, {Account: "b", CreditFen: 5}}, true},
		{"unbalanced", []*ledgerevents.EntryLine{{Account: "a", DebitFen: 5}, {Account: "b", CreditFen: 4}}, false},
		{"one line", []*ledgerevents.EntryLine{{Account: "a"}}, false},
		{"negative", []*ledgerevents.EntryLine{{Account: "a", DebitFen: -5}, {Account: "b", CreditFen: -5}}, false},
	} {
		if err := domain.CheckBalanced(tc.lines); (err == nil) != tc.ok {
			t.Errorf("%s: err = %v", tc.name, err)
		}
	}
}

// TestZeroPremiumAdjustmentPostsNothing: an adjustment whose delta is 0
// (a restatement that changed a sale's grams but not its premium) is no
// entry: the journal holds no zero postings.
func TestZeroPremiumAdjustmentPostsNothing(t *testing.T) {
	t.Parallel()
	f := registered(t)
	e, already, err := f.PostPremium(&ledgerevents.SourceRef{EventId: "p0"}, 0, "")
	if err != nil || e != nil || !already {
		t.Fatalf("zero adjustment: entry %v, nothing to post %v, err %v; want no entry", e, already, err)
	}
}
