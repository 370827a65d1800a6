package ports

import (
	"context"

	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/grpcx"

	"github.com/furrow/furrow/services/farmer-ledger/app"
	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

// roleFinance is the role that sees payout accounts in full: finance pays
// farmers and reconciles what the provider paid into which account.
const roleFinance = "finance"

// shown returns a farmer's personal value as the caller may see it: in
// clear (decrypted with the farmer's key), then masked to its last four
// characters unless the caller's role needs the number. Names are shown in
// full; payout accounts to finance; phone numbers to nobody (the ledger's
// own notifications use them inside the service). After erasure every
// value reads domain.Erased.
func (s *GRPCServer) shown(ctx context.Context, farmerID, field, text string) (string, error) {
	v, err := s.app.Reveal(ctx, farmerID, field, text)
	if err != nil {
		return "", err
	}
	switch {
	case field == domain.FieldName:
		return v, nil
	case field == domain.FieldPayoutAccount && grpcx.CallerHasRole(ctx, roleFinance):
		return v, nil
	}
	return domain.Mask(v), nil
}

// farmerMessage is the API's view of a farmer's details, for the caller.
// name, phone and account are personal texts (sealed, old clear values or
// domain.Erased).
func (s *GRPCServer) farmerMessage(ctx context.Context, farmerID, name, county, cooperative, phone, account string, version uint64) (*ledgerv1.Farmer, error) {
	m := &ledgerv1.Farmer{FarmerId: farmerID, County: county, Cooperative: cooperative, Version: version, Erased: name == domain.Erased}
	var err error
	if m.Name, err = s.shown(ctx, farmerID, domain.FieldName, name); err != nil {
		return nil, err
	}
	if m.Phone, err = s.shown(ctx, farmerID, domain.FieldPhone, phone); err != nil {
		return nil, err
	}
	if m.PayoutAccount, err = s.shown(ctx, farmerID, domain.FieldPayoutAccount, account); err != nil {
		return nil, err
	}
	return m, nil
}

// farmerOf is the API's view of a farmer aggregate, for the caller.
func (s *GRPCServer) farmerOf(ctx context.Context, f *domain.Farmer) (*ledgerv1.Farmer, error) {
	d := f.Snapshot()
	m, err := s.farmerMessage(ctx, d.GetFarmerId(), d.GetName(), d.GetCounty(), d.GetCooperative(), d.GetPhone(), d.GetPayoutAccount(), f.Version())
	if err != nil {
		return nil, err
	}
	m.Erased = f.Erased()
	return m, nil
}

// payoutOf is the API's view of a payout, its account as the caller may
// see it.
func (s *GRPCServer) payoutOf(ctx context.Context, p app.PayoutView) (*ledgerv1.Payout, error) {
	m := payoutMessage(p)
	var err error
	if m.PayoutAccount, err = s.shown(ctx, p.FarmerID, domain.FieldPayoutAccount, p.Account); err != nil {
		return nil, err
	}
	return m, nil
}

// EraseFarmer implements LedgerService.
func (s *GRPCServer) EraseFarmer(ctx context.Context, req *ledgerv1.EraseFarmerRequest) (*ledgerv1.EraseFarmerResponse, error) {
	res, err := s.app.EraseFarmer(ctx, app.EraseFarmer{
		RequestID:   req.GetRequestId(),
		Fingerprint: eventstore.Fingerprint(req),
		Meta:        grpcx.CommandMeta(ctx, req.GetRequestId()),
		FarmerID:    req.GetFarmerId(),
	})
	if err != nil {
		return nil, err
	}
	return &ledgerv1.EraseFarmerResponse{Position: grpcx.ToPosition(res.Position()), Version: res.Last}, nil
}
