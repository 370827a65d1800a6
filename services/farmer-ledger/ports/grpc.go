// Package ports exposes the farmer ledger: its gRPC API and the event
// handlers through which other services' events reach it.
package ports

import (
	"context"

	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"
	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/grpcx"
	"github.com/furrow/furrow/pkg/limits"

	"github.com/furrow/furrow/services/farmer-ledger/app"
	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

// GRPCServer implements furrow.ledger.v1.LedgerService. Errors are mapped
// to status codes by grpcx's interceptors.
type GRPCServer struct {
	ledgerv1.UnimplementedLedgerServiceServer
	app *app.Ledger
}

var _ ledgerv1.LedgerServiceServer = (*GRPCServer)(nil)

// NewGRPCServer returns the gRPC face of a.
func NewGRPCServer(a *app.Ledger) *GRPCServer { return &GRPCServer{app: a} }

// RegisterFarmer implements LedgerService.
func (s *GRPCServer) RegisterFarmer(ctx context.Context, req *ledgerv1.RegisterFarmerRequest) (*ledgerv1.RegisterFarmerResponse, error) {
	if err := firstErr(
		limits.Text("name", req.GetName(), limits.MaxNameLen),
		limits.Text("county", req.GetCounty(), limits.MaxCodeLen),
		limits.Text("cooperative", req.GetCooperative(), limits.MaxNameLen),
		limits.Text("phone", req.GetPhone(), limits.MaxCodeLen),
		limits.Text("payout_account", req.GetPayoutAccount(), limits.MaxCodeLen),
		domain.CheckPersonalInput("name", req.GetName()),
		domain.CheckPersonalInput("phone", req.GetPhone()),
		domain.CheckPersonalInput("payout_account", req.GetPayoutAccount()),
	); err != nil {
		return nil, err
	}
	res, err := s.app.RegisterFarmer(ctx, app.RegisterFarmer{
		RequestID:   req.GetRequestId(),
		Fingerprint: eventstore.Fingerprint(req),
		Meta:        grpcx.CommandMeta(ctx, req.GetRequestId()),
		Farmer: &ledgerevents.FarmerRegistered{
			FarmerId: req.GetFarmerId(), Name: req.GetName(), County: req.GetCounty(),
			Cooperative: req.GetCooperative(), Phone: req.GetPhone(), PayoutAccount: req.GetPayoutAccount(),
		},
	})
	if err != nil {
		return nil, err
	}
	return &ledgerv1.RegisterFarmerResponse{FarmerId: req.GetFarmerId(), Position: grpcx.ToPosition(res.Position()), Version: res.Last}, nil
}

// UpdatePayoutAccount implements LedgerService.
func (s *GRPCServer) UpdatePayoutAccount(ctx context.Context, req *ledgerv1.UpdatePayoutAccountRequest) (*ledgerv1.UpdatePayoutAccountResponse, error) {
	if err := firstErr(
		limits.Text("payout_account", req.GetPayoutAccount(), limits.MaxCodeLen),
		domain.CheckPersonalInput("payout_account", req.GetPayoutAccount()),
	); err != nil {
		return nil, err
	}
	res, err := s.app.UpdatePayoutAccount(ctx, app.UpdatePayoutAccount{
		RequestID:       req.GetRequestId(),
		Fingerprint:     eventstore.Fingerprint(req),
		Meta:            grpcx.CommandMeta(ctx, req.GetRequestId()),
		FarmerID:        req.GetFarmerId(),
		PayoutAccount:   req.GetPayoutAccount(),
		ExpectedVersion: req.ExpectedVersion,
	})
	if err != nil {
		return nil, err
	}
	return &ledgerv1.UpdatePayoutAccountResponse{Position: grpcx.ToPosition(res.Position()), Version: res.Last}, nil
}

// GetFarmer implements LedgerService.
func (s *GRPCServer) GetFarmer(ctx context.Context, req *ledgerv1.GetFarmerRequest) (*ledgerv1.GetFarmerResponse, error) {
	f, err := s.app.Farmer(ctx, req.GetFarmerId())
	if err != nil {
		return nil, err
	}
	out, err := s.farmerOf(ctx, f)
	if err != nil {
		return nil, err
	}
	return &ledgerv1.GetFarmerResponse{Farmer: out}, nil
}

// GetFarmerBalance implements LedgerService.
func (s *GRPCServer) GetFarmerBalance(ctx context.Context, req *ledgerv1.GetFarmerBalanceRequest) (*ledgerv1.GetFarmerBalanceResponse, error) {
	b, asOf, err := s.app.Balance(ctx, req.GetFarmerId(), grpcx.FromPosition(req.GetMinPosition()))
	if err != nil {
		return nil, err
	}
	return balanceResponse(b, asOf)
}

// firstErr returns the first of errs that is not nil: the edge checks of
// a request's fields (package limits), in the order the fields are listed.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func balanceResponse(b domain.Balance, asOf eventstore.Position) (*ledgerv1.GetFarmerBalanceResponse, error) {
	avail, err := b.Available()
	if err != nil {
		return nil, err
	}
	return &ledgerv1.GetFarmerBalanceResponse{
		FarmerId: b.FarmerID, PurchasesFen: b.PurchasesFen, PremiumsFen: b.PremiumsFen,
		HeldFen: b.HeldFen, PaidFen: b.PaidFen, AvailableFen: avail, ReceivableFen: b.ReceivableFen,
		AsOf: grpcx.ToPosition(asOf),
	}, nil
}
