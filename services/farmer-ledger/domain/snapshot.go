package domain

import (
	"errors"
	"time"

	"github.com/furrow/furrow/pkg/cowmap"
	"github.com/furrow/furrow/pkg/snapshot"
)

// FarmerSnapshotVersion is the version of the farmer's snapshot schema
// (EncodeFarmerSnapshot). Bump it whenever the encoding changes, e.g. when
// Farmer gains a field: snapshots of another version are not used
// (TestFarmerSnapshotCoversEveryField fails until the encoding and this
// version follow a change of the Farmer struct).
const FarmerSnapshotVersion = 2

// ErrSnapshotUnsupported means the aggregate is in a state its snapshot schema does
// not hold (an overflowed balance, kept only as an error): it is loaded by
// replaying its events instead.
var ErrSnapshotUnsupported = errors.New("aggregate state not held by its snapshot schema")

// EncodeFarmerSnapshot writes the farmer's state for a snapshot.
func EncodeFarmerSnapshot(f *Farmer, w *snapshot.Writer) error {
	if f.overflow != nil {
		return ErrSnapshotUnsupported
	}
	w.Bool(f.registered)
	w.String(f.name)
	w.String(f.county)
	w.String(f.cooperative)
	w.String(f.phone)
	w.String(f.payoutAccount)
	w.Uint(f.version)
	w.Bool(f.erased)
	w.Bool(!f.coolingOffUntil.IsZero())
	if !f.coolingOffUntil.IsZero() {
		w.Int(f.coolingOffUntil.Unix())
		w.Int(int64(f.coolingOffUntil.Nanosecond()))
	}
	w.Uint(uint64(f.posted.Len()))
	for id := range f.posted.All() {
		w.String(id)
	}
	w.Int(f.balance.PurchasesFen)
	w.Int(f.balance.PremiumsFen)
	w.Int(f.balance.HeldFen)
	w.Int(f.balance.PaidFen)
	w.Int(f.balance.ReceivableFen)
	w.Int(f.balance.ClawbackFen)
	w.Uint(uint64(f.payouts.Len()))
	for _, p := range f.payouts.All() {
		w.String(p.ID)
		w.String(p.RequestID)
		w.Int(p.AmountFen)
		w.String(p.Currency)
		w.String(p.Account)
		w.Int(int64(p.Status))
		w.String(p.ProviderRef)
		w.String(p.Reason)
		w.String(p.RequestedBy)
	}
	w.Uint(uint64(f.byRequest.Len()))
	for req, payout := range f.byRequest.All() {
		w.String(req)
		w.String(payout)
	}
	return nil
}

// DecodeFarmerSnapshot reads what EncodeFarmerSnapshot wrote back into
// farmer id; r reports a failure.
func DecodeFarmerSnapshot(id string, r *snapshot.Reader) *Farmer {
	f := NewFarmer(id)
	f.registered = r.Bool()
	f.name, f.county, f.cooperative, f.phone, f.payoutAccount = r.Text(), r.Text(), r.Text(), r.Text(), r.Text()
	f.version = r.Uint()
	f.erased = r.Bool()
	if r.Bool() {
		sec, nsec := r.Int(), r.Int()
		if nsec < 0 || nsec >= 1e9 {
			r.Fail("cooling-off nanoseconds")
		}
		f.coolingOffUntil = time.Unix(sec, nsec).UTC()
	}
	nPosted := r.Count(1)
	posted := make(map[string]struct{}, nPosted)
	for range nPosted {
		posted[r.Text()] = struct{}{}
	}
	f.posted = cowmap.Of(posted)
	f.balance.PurchasesFen, f.balance.PremiumsFen, f.balance.HeldFen, f.balance.PaidFen = r.Int(), r.Int(), r.Int(), r.Int()
	f.balance.ReceivableFen, f.balance.ClawbackFen = r.Int(), r.Int()
	nPayouts := r.Count(9)
	payouts := make(map[string]Payout, nPayouts)
	for range nPayouts {
		p := Payout{ID: r.Text(), FarmerID: id, RequestID: r.Text(), AmountFen: r.Int(), Currency: r.Text(),
			Account: r.Text(), Status: PayoutStatus(r.Int()), ProviderRef: r.Text(), Reason: r.Text(), RequestedBy: r.Text()}
		if _, ok := ParsePayoutStatus(p.Status.String()); !ok && r.Err() == nil {
			r.Fail("unknown payout status")
		}
		payouts[p.ID] = p
	}
	f.payouts = cowmap.Of(payouts)
	nRequests := r.Count(2)
	byRequest := make(map[string]string, nRequests)
	for range nRequests {
		req := r.Text()
		byRequest[req] = r.Text()
	}
	f.byRequest = cowmap.Of(byRequest)
	if len(posted) != nPosted || len(payouts) != nPayouts || len(byRequest) != nRequests {
		r.Fail("repeated keys")
	}
	return f
}
