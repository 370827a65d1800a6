package domain_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"

	"github.com/furrow/furrow/pkg/failure"

	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

func TestMask(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"6222020000000101": "••••0101",
		"13800000101":      "••••0101",
		"SIM-LATE-0003":    "••••0003",
		"6222":             "••••",
		"":                 "",
		domain.Erased:      domain.Erased,
		domain.Unreadable:  domain.Unreadable,
		"账户一二三四五":          "••••二三四五",
	} {
		if got := domain.Mask(in); got != want {
			t.Errorf("Mask(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSealedTextRoundTrip(t *testing.T) {
	t.Parallel()
	s := &ledgerevents.Sealed{KeyId: "dk-0011223344556677", Ciphertext: []byte{0, 1, 2, 0xfe, 0xff, ':'}}
	got, ok := domain.ParseSealed(domain.SealedText(s))
	if !ok {
		t.Fatalf("ParseSealed(%q) failed", domain.SealedText(s))
	}
	if diff := cmp.Diff(s, got, protocmp.Transform()); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	for _, clear := range []string{"6222020000000101", "", domain.Erased, "sealed:v1:", "sealed:v1:dk:%%%"} {
		if _, ok := domain.ParseSealed(clear); ok {
			t.Errorf("ParseSealed(%q) took a clear value for a sealed one", clear)
		}
	}
	if err := domain.CheckPersonalInput("payout_account", domain.SealedText(s)); failure.KindOf(err) != failure.KindInvalid {
		t.Errorf("a caller's value in the sealed form: %v, want InvalidArgument", err)
	}
}

// TestEraseRules: an erasure needs a registered farmer with no payout in
// flight; afterwards every personal value reads Erased (the clear ones of
// old events too), the balance is untouched, and the farmer takes no new
// payout account and no payout.
func TestEraseRules(t *testing.T) {
	t.Parallel()
	if _, err := domain.NewFarmer("F9").Erase(); failure.KindOf(err) != failure.KindNotFound {
		t.Fatalf("erase an unknown farmer: %v, want NotFound", err)
	}
	b := newBook(t, "6222020000000001") // a clear account: an event from before sealing
	b.post(b.f.PostPayable(src("d1"), 8_395, ""))
	p := b.request(5_000)
	if _, err := b.f.Erase(); failure.KindOf(err) != failure.KindFailedPrecondition {
		t.Fatalf("erase with payout %s in flight: %v, want FailedPrecondition", p.ID, err)
	}
	b.outcome(p.ID, domain.ProviderSettled)
	balance := b.f.Balance()

	ev, err := b.f.Erase()
	if err != nil {
		t.Fatal(err)
	}
	if ev.GetFarmerId() != "F1" || ev.GetKeyId() != "" {
		t.Errorf("FarmerErased = %v, want F1 without a key (its events predate sealing)", ev)
	}
	b.apply(domain.Change{Kind: domain.KindErased, Event: ev})

	got := b.f.Snapshot()
	if got.GetName() != domain.Erased || got.GetPayoutAccount() != domain.Erased || got.GetPhone() != "" || !b.f.Erased() {
		t.Errorf("after erasure: %v (erased %t), want name and account erased, no phone", &got, b.f.Erased())
	}
	if diff := cmp.Diff(balance, b.f.Balance()); diff != "" {
		t.Errorf("balance changed by the erasure (-before +after):\n%s", diff)
	}
	if _, err := b.f.Erase(); failure.KindOf(err) != failure.KindFailedPrecondition {
		t.Errorf("second erasure: %v, want FailedPrecondition", err)
	}
	if _, err := b.f.UpdatePayoutAccount("6222020000000009"); failure.KindOf(err) != failure.KindFailedPrecondition {
		t.Errorf("new payout account after erasure: %v, want FailedPrecondition", err)
	}
	if _, _, err := b.f.RequestPayout(domain.PayoutRequest{RequestID: "r", AllAvailable: true}, b.ids); failure.KindOf(err) != failure.KindFailedPrecondition {
		t.Errorf("payout after erasure: %v, want FailedPrecondition", err)
	}
}

// TestSealedAccountTravelsWithThePayout: a payout requested from a sealed
// account carries it sealed (never in clear) in PayoutRequested.
func TestSealedAccountTravelsWithThePayout(t *testing.T) {
	t.Parallel()
	sealed := &ledgerevents.Sealed{KeyId: "dk-1", Ciphertext: []byte("not really encrypted")}
	b := &book{t: t, f: domain.NewFarmer("F1")}
	b.apply(domain.Change{Kind: domain.KindRegistered, Event: &ledgerevents.FarmerRegistered{
		FarmerId: "F1", County: "Xunwu", SealedName: sealed, SealedPayoutAccount: sealed}})
	b.post(b.f.PostPayable(src("d1"), 1_000, ""))
	_, changes, err := b.f.RequestPayout(domain.PayoutRequest{RequestID: "r1", AmountFen: 500}, b.ids)
	if err != nil {
		t.Fatal(err)
	}
	req := changes[0].Event.(*ledgerevents.PayoutRequested)
	if req.GetPayoutAccount() != "" || !cmp.Equal(sealed, req.GetSealedPayoutAccount(), protocmp.Transform()) {
		t.Errorf("PayoutRequested = %v, want the account sealed and no clear one", req)
	}
	if b.f.KeyID() != "dk-1" {
		t.Errorf("KeyID = %q, want dk-1", b.f.KeyID())
	}
}
