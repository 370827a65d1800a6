package domain_test

import (
	"strings"
	"testing"
	"time"

	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"

	"github.com/furrow/furrow/pkg/failure"

	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

// TestCoolingOffAfterAccountChange: a change of payout account made with
// a cooling-off period refuses payouts until the period ends, naming its
// end; a change without one (or the registration's account) does not.
func TestCoolingOffAfterAccountChange(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	b := newBook(t, "6222020000000001")
	b.post(b.f.PostPayable(src("d1"), 10_000, ""))
	if _, changes, err := b.f.RequestPayout(domain.PayoutRequest{RequestID: "r0", AmountFen: 100, Now: t0}, b.ids); err != nil {
		t.Fatalf("payout to the registration's account: %v", err)
	} else {
		b.apply(changes...)
	}

	ev, err := b.f.UpdatePayoutAccount("6222020000000002")
	if err != nil {
		t.Fatal(err)
	}
	domain.StartCoolingOff(ev, t0, domain.PayoutControls{CoolingOff: 24 * time.Hour})
	b.apply(domain.Change{Kind: domain.KindPayoutAccountUpdated, Event: ev})
	if want := t0.Add(24 * time.Hour); !b.f.CoolingOffUntil().Equal(want) {
		t.Fatalf("cooling off until %v, want %v", b.f.CoolingOffUntil(), want)
	}
	for _, at := range []time.Time{t0, t0.Add(time.Hour), t0.Add(24*time.Hour - time.Nanosecond)} {
		_, _, err := b.f.RequestPayout(domain.PayoutRequest{RequestID: "r1", AmountFen: 100, Now: at}, b.ids)
		if failure.KindOf(err) != failure.KindFailedPrecondition || !strings.Contains(err.Error(), "2026-12-02T09:00:00Z") {
			t.Errorf("payout at %v during cooling-off: %v, want FailedPrecondition naming its end", at, err)
		}
	}
	p, changes, err := b.f.RequestPayout(domain.PayoutRequest{RequestID: "r2", AmountFen: 100, Now: t0.Add(24 * time.Hour)}, b.ids)
	if err != nil {
		t.Fatalf("payout when the cooling-off ended: %v", err)
	}
	b.apply(changes...)
	if p.Status != domain.PayoutStatusRequested {
		t.Errorf("payout after cooling-off is %s, want requested", p.Status)
	}

	// A change without a cooling-off period ends the previous one.
	ev, err = b.f.UpdatePayoutAccount("6222020000000003")
	if err != nil {
		t.Fatal(err)
	}
	domain.StartCoolingOff(ev, t0, domain.PayoutControls{})
	b.apply(domain.Change{Kind: domain.KindPayoutAccountUpdated, Event: ev})
	if ev.GetCoolingOffUntil() != nil || !b.f.CoolingOffUntil().IsZero() {
		t.Errorf("no cooling-off configured, yet the change holds payouts until %v", b.f.CoolingOffUntil())
	}
}

// TestFourEyes: a payout above the threshold is held but waits for a
// second approver; its requester cannot approve it, another identity can
// (once); a rejection releases the hold. At the threshold or without one,
// payouts go straight on.
func TestFourEyes(t *testing.T) {
	t.Parallel()
	b := newBook(t, "6222020000000001")
	b.post(b.f.PostPayable(src("d1"), 10_000, ""))
	req := func(id string, amount, above int64) (domain.Payout, *ledgerevents.PayoutRequested) {
		t.Helper()
		p, changes, err := b.f.RequestPayout(domain.PayoutRequest{RequestID: id, AmountFen: amount, RequestedBy: "platform-a", ApprovalAboveFen: above}, b.ids)
		if err != nil {
			t.Fatalf("RequestPayout(%d above %d): %v", amount, above, err)
		}
		b.apply(changes...)
		return p, changes[0].Event.(*ledgerevents.PayoutRequested)
	}
	if p, ev := req("r1", 1_000, 1_000); p.Status != domain.PayoutStatusRequested || ev.GetApprovalRequired() {
		t.Errorf("payout at the threshold: %s (approval %t), want requested", p.Status, ev.GetApprovalRequired())
	}
	if p, _ := req("r2", 1_000, 0); p.Status != domain.PayoutStatusRequested {
		t.Errorf("payout without a threshold: %s, want requested", p.Status)
	}
	held := b.f.Balance().HeldFen
	big, ev := req("r3", 3_000, 1_000)
	if big.Status != domain.PayoutStatusPendingApproval || !ev.GetApprovalRequired() || ev.GetRequestedBy() != "platform-a" {
		t.Fatalf("payout above the threshold: %s, event %v; want pending approval, requested by platform-a", big.Status, ev)
	}
	if got := b.f.Balance().HeldFen - held; got != 3_000 {
		t.Errorf("a pending payout holds %d fen, want 3000 (its hold is placed at once)", got)
	}
	if _, err := b.f.ApprovePayout(big.ID, "platform-a"); failure.KindOf(err) != failure.KindFailedPrecondition || !strings.Contains(err.Error(), "four-eyes") {
		t.Errorf("approval by its requester: %v, want FailedPrecondition (four-eyes)", err)
	}
	if _, err := b.f.ApprovePayout(big.ID, ""); failure.KindOf(err) != failure.KindFailedPrecondition {
		t.Errorf("approval by nobody: %v, want FailedPrecondition", err)
	}
	if _, err := b.f.ApprovePayout("PO-F1-99", "finance-b"); failure.KindOf(err) != failure.KindNotFound {
		t.Errorf("approval of an unknown payout: %v, want NotFound", err)
	}
	approved, err := b.f.ApprovePayout(big.ID, "finance-b")
	if err != nil {
		t.Fatal(err)
	}
	b.apply(domain.Change{Kind: domain.KindPayoutApproved, Event: approved})
	if p, _ := b.f.Payout(big.ID); p.Status != domain.PayoutStatusRequested {
		t.Errorf("approved payout is %s, want requested (the saga sends it)", p.Status)
	}
	if _, err := b.f.ApprovePayout(big.ID, "finance-c"); failure.KindOf(err) != failure.KindFailedPrecondition {
		t.Errorf("second approval: %v, want FailedPrecondition", err)
	}

	other, _ := req("r4", 2_000, 1_000)
	held = b.f.Balance().HeldFen
	if _, err := b.f.RejectPayout(other.ID, "finance-b", "", b.ids); failure.KindOf(err) != failure.KindInvalid {
		t.Errorf("rejection without a reason: %v, want InvalidArgument", err)
	}
	changes, err := b.f.RejectPayout(other.ID, "finance-b", "farmer asked to wait", b.ids)
	if err != nil {
		t.Fatal(err)
	}
	b.apply(changes...)
	if p, _ := b.f.Payout(other.ID); p.Status != domain.PayoutStatusRejected || !p.Status.Final() {
		t.Errorf("rejected payout is %s, want rejected (final)", p.Status)
	}
	if got := held - b.f.Balance().HeldFen; got != 2_000 {
		t.Errorf("rejection released %d fen, want 2000", got)
	}
	if _, err := b.f.RejectPayout(big.ID, "finance-b", "too late", b.ids); failure.KindOf(err) != failure.KindFailedPrecondition {
		t.Errorf("rejection of an approved payout: %v, want FailedPrecondition", err)
	}
}

func TestFarmerOfPayout(t *testing.T) {
	t.Parallel()
	for id, want := range map[string]string{"PO-F1-1": "F1", "PO-F-1001-12": "F-1001", "PO-wang-fang-3": "wang-fang",
		"PO-F1": "", "PO--1": "", "PO-F1-": "", "XX-F1-1": "", "PO-F1-1a": ""} {
		got, ok := domain.FarmerOfPayout(id)
		if got != want || ok != (want != "") {
			t.Errorf("FarmerOfPayout(%q) = %q, %t; want %q", id, got, ok, want)
		}
	}
}
