package ports

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	procurementv1 "github.com/furrow/furrow/proto/furrow/procurement/v1"

	"github.com/furrow/furrow/pkg/grpcx"
	"github.com/furrow/furrow/pkg/limits"

	"github.com/furrow/furrow/services/procurement/app"
)

// ListCentreIntake implements ProcurementService.
func (s *GRPCServer) ListCentreIntake(ctx context.Context, req *procurementv1.ListCentreIntakeRequest) (*procurementv1.ListCentreIntakeResponse, error) {
	if s.centres == nil {
		return nil, status.Error(codes.Unimplemented, "this procurement process keeps no centres read model")
	}
	if err := limits.Text("county", req.GetCounty(), limits.MaxCodeLen); err != nil {
		return nil, err
	}
	rows, shares, asOf, err := s.centres.Intake(ctx, app.CentreFilter{
		County: req.GetCounty(), Centre: req.GetDistributionCentre(), DayFrom: req.GetDayFrom(), DayTo: req.GetDayTo(),
		MinPosition: grpcx.FromPosition(req.GetMinPosition()),
	})
	if err != nil {
		return nil, err
	}
	out := &procurementv1.ListCentreIntakeResponse{AsOf: grpcx.ToPosition(asOf)}
	for _, r := range rows {
		out.Intake = append(out.Intake, &procurementv1.CentreIntake{
			DistributionCentre: r.Centre, County: r.County, Day: r.Day, Product: r.Product, Grade: r.Grade,
			Deliveries: int32(r.Deliveries), NetGrams: r.NetGrams, AmountFen: r.AmountFen,
		})
	}
	for _, c := range shares {
		out.Centres = append(out.Centres, &procurementv1.CentreShare{
			DistributionCentre: c.Centre, County: c.County, Deliveries: int32(c.Deliveries), NetGrams: c.NetGrams,
			AmountFen: c.AmountFen, CountyNetGrams: c.CountyNetGrams, CountyAmountFen: c.CountyAmountFen,
			AmountShareBp: c.AmountShareBP, GramsShareBp: c.GramsShareBP,
		})
	}
	return out, nil
}
