// Package ports exposes procurement's gRPC API.
package ports

import (
	"context"

	procurementevents "github.com/furrow/furrow/proto/furrow/procurement/events/v1"
	procurementv1 "github.com/furrow/furrow/proto/furrow/procurement/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/grpcx"

	"github.com/furrow/furrow/services/procurement/app"
	"github.com/furrow/furrow/services/procurement/domain"
)

// GRPCServer implements furrow.procurement.v1.ProcurementService. Errors are
// mapped to status codes by grpcx's interceptors.
type GRPCServer struct {
	procurementv1.UnimplementedProcurementServiceServer
	app *app.Procurement
}

var _ procurementv1.ProcurementServiceServer = (*GRPCServer)(nil)

// NewGRPCServer returns the gRPC face of a.
func NewGRPCServer(a *app.Procurement) *GRPCServer { return &GRPCServer{app: a} }

// RecordDelivery implements ProcurementService.
func (s *GRPCServer) RecordDelivery(ctx context.Context, req *procurementv1.RecordDeliveryRequest) (*procurementv1.RecordDeliveryResponse, error) {
	w := domain.WeighIn{
		FarmerID: req.GetFarmerId(), Product: req.GetProduct(), Grade: req.GetGrade(),
		NetGrams: req.GetNetGrams(), PriceFenPerKg: req.GetPriceFenPerKg(),
	}
	if req.GetWeighedAt() != nil {
		w.WeighedAt = req.GetWeighedAt().AsTime()
	}
	out, err := s.app.RecordDelivery(ctx, app.RecordDelivery{
		RequestID:   req.GetRequestId(),
		Fingerprint: eventstore.Fingerprint(req),
		WeighIn:     w,
		Meta:        grpcx.CommandMeta(ctx, req.GetRequestId()),
	})
	if err != nil {
		return nil, err
	}
	return &procurementv1.RecordDeliveryResponse{
		DeliveryId: out.Delivery.GetDeliveryId(),
		AmountFen:  out.Delivery.GetAmountFen(),
		Position:   grpcx.ToPosition(out.Result.Position()),
	}, nil
}

// GetDelivery implements ProcurementService.
func (s *GRPCServer) GetDelivery(ctx context.Context, req *procurementv1.GetDeliveryRequest) (*procurementv1.GetDeliveryResponse, error) {
	d, err := s.app.Delivery(ctx, req.GetDeliveryId())
	if err != nil {
		return nil, err
	}
	return &procurementv1.GetDeliveryResponse{Delivery: toDelivery(d.Recorded(), eventstore.Position{Stream: domain.Stream, Sequence: d.Version()})}, nil
}

func toDelivery(e *procurementevents.DeliveryRecorded, pos eventstore.Position) *procurementv1.Delivery {
	return &procurementv1.Delivery{
		DeliveryId: e.GetDeliveryId(), FarmerId: e.GetFarmerId(), Product: e.GetProduct(),
		NetGrams: e.GetNetGrams(), PriceFenPerKg: e.GetPriceFenPerKg(), Grade: e.GetGrade(),
		AmountFen: e.GetAmountFen(), WeighedAt: e.GetWeighedAt(), Position: grpcx.ToPosition(pos),
	}
}
