// Package ports exposes brand incubation: its gRPC API and the reactions
// through which its own events drive re-rating.
package ports

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	brandevents "github.com/furrow/furrow/proto/furrow/brand/events/v1"
	brandv1 "github.com/furrow/furrow/proto/furrow/brand/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/grpcx"
	"github.com/furrow/furrow/pkg/limits"

	"github.com/furrow/furrow/services/brand-incubation/app"
	"github.com/furrow/furrow/services/brand-incubation/domain"
)

// GRPCServer implements furrow.brand.v1.BrandService. Errors are mapped to
// status codes by grpcx's interceptors. The limits of package limits on
// names, reasons, rates and grams are the domain's checks; the port checks
// what only it sees, the timestamps.
type GRPCServer struct {
	brandv1.UnimplementedBrandServiceServer
	app *app.Incubator
}

var _ brandv1.BrandServiceServer = (*GRPCServer)(nil)

// NewGRPCServer returns the gRPC face of a.
func NewGRPCServer(a *app.Incubator) *GRPCServer { return &GRPCServer{app: a} }

// RegisterBrand implements BrandService.
func (s *GRPCServer) RegisterBrand(ctx context.Context, req *brandv1.RegisterBrandRequest) (*brandv1.RegisterBrandResponse, error) {
	res, err := s.app.RegisterBrand(ctx, app.RegisterBrand{
		RequestID:   req.GetRequestId(),
		Fingerprint: eventstore.Fingerprint(req),
		Meta:        grpcx.CommandMeta(ctx, req.GetRequestId()),
		Brand: &brandevents.BrandRegistered{
			BrandId: req.GetBrandId(), Kind: int32(req.GetKind()), Name: req.GetName(),
			County: req.GetCounty(), ProductCategory: req.GetProductCategory(), RegisteredOn: req.GetRegisteredOn(),
		},
	})
	if err != nil {
		return nil, err
	}
	return &brandv1.RegisterBrandResponse{BrandId: req.GetBrandId(), Position: grpcx.ToPosition(res.Position())}, nil
}

// GetBrand implements BrandService.
func (s *GRPCServer) GetBrand(ctx context.Context, req *brandv1.GetBrandRequest) (*brandv1.GetBrandResponse, error) {
	b, err := s.app.Brand(ctx, req.GetBrandId())
	if err != nil {
		return nil, err
	}
	r, cur := b.Registration(), b.Stage()
	out := &brandv1.Brand{
		BrandId: r.GetBrandId(), Kind: brandv1.BrandKind(r.GetKind()), Name: r.GetName(),
		County: r.GetCounty(), ProductCategory: r.GetProductCategory(), Version: b.Version(),
		Stage: brandv1.BrandStage(cur.Stage), StageSince: cur.From.String(), RegisteredOn: r.GetRegisteredOn(),
	}
	for _, st := range b.Stages() {
		out.Stages = append(out.Stages, &brandv1.StageChange{Stage: brandv1.BrandStage(st.Stage), EffectiveOn: st.From.String(), Note: st.Note})
	}
	return &brandv1.GetBrandResponse{Brand: out}, nil
}

// ChangeBrandStage implements BrandService.
func (s *GRPCServer) ChangeBrandStage(ctx context.Context, req *brandv1.ChangeBrandStageRequest) (*brandv1.ChangeBrandStageResponse, error) {
	res, err := s.app.ChangeBrandStage(ctx, app.ChangeBrandStage{
		RequestID: req.GetRequestId(), Fingerprint: eventstore.Fingerprint(req), Meta: grpcx.CommandMeta(ctx, req.GetRequestId()),
		BrandID: req.GetBrandId(), Stage: int32(req.GetStage()), EffectiveOn: req.GetEffectiveOn(), Note: req.GetNote(),
	})
	if err != nil {
		return nil, err
	}
	return &brandv1.ChangeBrandStageResponse{Position: grpcx.ToPosition(res.Position()), Version: res.Last}, nil
}

// ListBrands implements BrandService.
func (s *GRPCServer) ListBrands(ctx context.Context, req *brandv1.ListBrandsRequest) (*brandv1.ListBrandsResponse, error) {
	if err := limits.Text("county", req.GetCounty(), limits.MaxCodeLen); err != nil {
		return nil, err
	}
	page, err := s.app.Brands(ctx, req.GetCounty(), int32(req.GetKind()), int32(req.GetStage()),
		req.GetPageSize(), req.GetPageToken(), grpcx.FromPosition(req.GetMinPosition()))
	if err != nil {
		return nil, err
	}
	out := &brandv1.ListBrandsResponse{Brands: []*brandv1.Brand{}, NextPageToken: page.Next, AsOf: grpcx.ToPosition(page.AsOf)}
	for _, b := range page.Items {
		out.Brands = append(out.Brands, &brandv1.Brand{
			BrandId: b.BrandID, Kind: brandv1.BrandKind(b.Kind), Name: b.Name, County: b.County,
			ProductCategory: b.ProductCategory, Version: b.Version, Stage: brandv1.BrandStage(b.Stage),
			StageSince: b.StageSince, RegisteredOn: b.RegisteredOn,
		})
	}
	return out, nil
}

// RegisterChannel implements BrandService.
func (s *GRPCServer) RegisterChannel(ctx context.Context, req *brandv1.RegisterChannelRequest) (*brandv1.RegisterChannelResponse, error) {
	res, err := s.app.RegisterChannel(ctx, app.RegisterChannel{
		RequestID: req.GetRequestId(), Fingerprint: eventstore.Fingerprint(req), Meta: grpcx.CommandMeta(ctx, req.GetRequestId()),
		ChannelID: req.GetChannelId(), Name: req.GetName(),
	})
	if err != nil {
		return nil, err
	}
	return &brandv1.RegisterChannelResponse{Position: grpcx.ToPosition(res.Position())}, nil
}

// ListChannels implements BrandService.
func (s *GRPCServer) ListChannels(ctx context.Context, req *brandv1.ListChannelsRequest) (*brandv1.ListChannelsResponse, error) {
	rows, asOf, err := s.app.Channels(ctx, grpcx.FromPosition(req.GetMinPosition()))
	if err != nil {
		return nil, err
	}
	out := &brandv1.ListChannelsResponse{Channels: []*brandv1.Channel{}, AsOf: grpcx.ToPosition(asOf)}
	for _, c := range rows {
		out.Channels = append(out.Channels, &brandv1.Channel{ChannelId: c.ChannelID, Name: c.Name})
	}
	return out, nil
}

// EnrolFarmer implements BrandService.
func (s *GRPCServer) EnrolFarmer(ctx context.Context, req *brandv1.EnrolFarmerRequest) (*brandv1.EnrolFarmerResponse, error) {
	res, err := s.app.EnrolFarmer(ctx, app.EnrolFarmer{
		RequestID: req.GetRequestId(), Fingerprint: eventstore.Fingerprint(req), Meta: grpcx.CommandMeta(ctx, req.GetRequestId()),
		BrandID: req.GetBrandId(), FarmerID: req.GetFarmerId(), EnrolledFrom: req.GetEnrolledFrom(), Certificate: req.GetCertificate(),
	})
	if err != nil {
		return nil, err
	}
	return &brandv1.EnrolFarmerResponse{Position: grpcx.ToPosition(res.Position()), Version: res.Last}, nil
}

// SuspendFarmer implements BrandService.
func (s *GRPCServer) SuspendFarmer(ctx context.Context, req *brandv1.SuspendFarmerRequest) (*brandv1.SuspendFarmerResponse, error) {
	res, err := s.app.SuspendFarmer(ctx, app.SuspendFarmer{
		RequestID: req.GetRequestId(), Fingerprint: eventstore.Fingerprint(req), Meta: grpcx.CommandMeta(ctx, req.GetRequestId()),
		BrandID: req.GetBrandId(), FarmerID: req.GetFarmerId(), SuspendedFrom: req.GetSuspendedFrom(), Reason: req.GetReason(),
	})
	if err != nil {
		return nil, err
	}
	return &brandv1.SuspendFarmerResponse{Position: grpcx.ToPosition(res.Position()), Version: res.Last}, nil
}

// ListBrandFarmers implements BrandService.
func (s *GRPCServer) ListBrandFarmers(ctx context.Context, req *brandv1.ListBrandFarmersRequest) (*brandv1.ListBrandFarmersResponse, error) {
	page, err := s.app.BrandFarmers(ctx, req.GetBrandId(), int32(req.GetStatus()), req.GetPageSize(), req.GetPageToken(),
		grpcx.FromPosition(req.GetMinPosition()))
	if err != nil {
		return nil, err
	}
	out := &brandv1.ListBrandFarmersResponse{Farmers: []*brandv1.BrandFarmer{}, NextPageToken: page.Next, AsOf: grpcx.ToPosition(page.AsOf)}
	for _, f := range page.Items {
		out.Farmers = append(out.Farmers, &brandv1.BrandFarmer{
			BrandId: f.BrandID, FarmerId: f.FarmerID, Status: brandv1.EnrolmentStatus(f.Status),
			EnrolledFrom: f.EnrolledFrom, SuspendedFrom: f.SuspendedFrom, Certificate: f.Certificate, Version: f.Version,
		})
	}
	return out, nil
}

// SetPremiumRule implements BrandService.
func (s *GRPCServer) SetPremiumRule(ctx context.Context, req *brandv1.SetPremiumRuleRequest) (*brandv1.SetPremiumRuleResponse, error) {
	res, err := s.app.SetPremiumRule(ctx, app.SetPremiumRule{
		RequestID: req.GetRequestId(), Fingerprint: eventstore.Fingerprint(req), Meta: grpcx.CommandMeta(ctx, req.GetRequestId()),
		BrandID: req.GetBrandId(), Channel: req.GetChannel(),
		Rule: domain.NewRule{RuleID: req.GetRuleId(), FenPerKg: req.GetFenPerKg(), EffectiveFrom: req.GetEffectiveFrom(), EffectiveTo: req.GetEffectiveTo()},
	})
	if err != nil {
		return nil, err
	}
	return &brandv1.SetPremiumRuleResponse{RuleId: req.GetRuleId(), RuleVersion: 1, Position: grpcx.ToPosition(res.Position())}, nil
}

// ReviseRule implements BrandService.
func (s *GRPCServer) ReviseRule(ctx context.Context, req *brandv1.ReviseRuleRequest) (*brandv1.ReviseRuleResponse, error) {
	out, err := s.app.ReviseRule(ctx, app.ReviseRule{
		RequestID: req.GetRequestId(), Fingerprint: eventstore.Fingerprint(req), Meta: grpcx.CommandMeta(ctx, req.GetRequestId()),
		BrandID: req.GetBrandId(), Channel: req.GetChannel(),
		Revision: domain.Revision{RuleID: req.GetRuleId(), FenPerKg: req.GetFenPerKg(), RevisedFrom: req.GetRevisedFrom(), Reason: req.GetReason()},
	})
	if err != nil {
		return nil, err
	}
	return &brandv1.ReviseRuleResponse{
		RuleVersion: out.RuleVersion, Changed: out.Changed, AdjustedSales: int32(out.Adjusted), DeltaFen: out.DeltaFen,
		Position: grpcx.ToPosition(out.Position),
	}, nil
}

// PreviewRevision implements BrandService.
func (s *GRPCServer) PreviewRevision(ctx context.Context, req *brandv1.PreviewRevisionRequest) (*brandv1.PreviewRevisionResponse, error) {
	p, err := s.app.PreviewRevision(ctx, app.PreviewRevision{
		BrandID: req.GetBrandId(), Channel: req.GetChannel(), MinPosition: grpcx.FromPosition(req.GetMinPosition()),
		Revision: domain.Revision{RuleID: req.GetRuleId(), FenPerKg: req.GetFenPerKg(), RevisedFrom: req.GetRevisedFrom()},
	})
	if err != nil {
		return nil, err
	}
	return &brandv1.PreviewRevisionResponse{
		RuleVersion: p.RuleVersion, Changed: p.Changed, Farmers: farmerDeltas(p.Farmers),
		AdjustedSales: int32(p.Sales), DeltaFen: p.DeltaFen, AsOf: grpcx.ToPosition(p.AsOf),
	}, nil
}

// EndRule implements BrandService.
func (s *GRPCServer) EndRule(ctx context.Context, req *brandv1.EndRuleRequest) (*brandv1.EndRuleResponse, error) {
	out, err := s.app.EndRule(ctx, app.EndRule{
		RequestID: req.GetRequestId(), Fingerprint: eventstore.Fingerprint(req), Meta: grpcx.CommandMeta(ctx, req.GetRequestId()),
		BrandID: req.GetBrandId(), Channel: req.GetChannel(),
		Ending: domain.Ending{RuleID: req.GetRuleId(), EffectiveTo: req.GetEffectiveTo(), Reason: req.GetReason()},
	})
	if err != nil {
		return nil, err
	}
	return &brandv1.EndRuleResponse{
		RuleVersion: out.RuleVersion, Changed: out.Changed, AdjustedSales: int32(out.Adjusted), DeltaFen: out.DeltaFen,
		Position: grpcx.ToPosition(out.Position),
	}, nil
}

// PreviewEndRule implements BrandService.
func (s *GRPCServer) PreviewEndRule(ctx context.Context, req *brandv1.PreviewEndRuleRequest) (*brandv1.PreviewEndRuleResponse, error) {
	p, err := s.app.PreviewEndRule(ctx, app.PreviewEndRule{
		BrandID: req.GetBrandId(), Channel: req.GetChannel(), MinPosition: grpcx.FromPosition(req.GetMinPosition()),
		Ending: domain.Ending{RuleID: req.GetRuleId(), EffectiveTo: req.GetEffectiveTo()},
	})
	if err != nil {
		return nil, err
	}
	out := &brandv1.PreviewEndRuleResponse{
		RuleVersion: p.RuleVersion, Changed: p.Changed, Farmers: farmerDeltas(p.Farmers),
		AdjustedSales: int32(p.Sales), DeltaFen: p.DeltaFen, AsOf: grpcx.ToPosition(p.AsOf),
	}
	return out, nil
}

func farmerDeltas(ds []domain.FarmerDelta) []*brandv1.FarmerDelta {
	out := []*brandv1.FarmerDelta{}
	for _, d := range ds {
		out = append(out, &brandv1.FarmerDelta{
			FarmerId: d.FarmerID, Sales: int32(d.Sales), Grams: d.Grams,
			PremiumBeforeFen: d.BeforeFen, PremiumAfterFen: d.AfterFen, DeltaFen: d.DeltaFen,
		})
	}
	return out
}

// ListPremiumRules implements BrandService.
func (s *GRPCServer) ListPremiumRules(ctx context.Context, req *brandv1.ListPremiumRulesRequest) (*brandv1.ListPremiumRulesResponse, error) {
	rs, err := s.app.RuleSet(ctx, req.GetBrandId(), req.GetChannel())
	if err != nil {
		return nil, err
	}
	out := &brandv1.ListPremiumRulesResponse{Rules: []*brandv1.PremiumRule{}, Version: rs.Version()}
	for _, r := range rs.Rules() {
		pr := &brandv1.PremiumRule{
			BrandId: rs.BrandID(), Channel: rs.Channel(), RuleId: r.ID, RuleVersion: r.Version, EffectiveFrom: r.From.String(),
			EndReason: r.EndReason, EndedFrom: r.EndedFrom,
		}
		if !r.OpenEnded {
			pr.EffectiveTo = r.To.String()
		}
		for _, seg := range r.Schedule {
			pr.Schedule = append(pr.Schedule, &brandv1.RateSegment{From: seg.From.String(), FenPerKg: seg.FenPerKg, RuleVersion: seg.Version, Reason: seg.Reason})
		}
		out.Rules = append(out.Rules, pr)
	}
	return out, nil
}

// ReportSales implements BrandService.
func (s *GRPCServer) ReportSales(ctx context.Context, req *brandv1.ReportSalesRequest) (*brandv1.ReportSalesResponse, error) {
	in := domain.SalesReport{ReportID: req.GetReportId(), Revision: req.GetRevision(), Channel: req.GetChannel()}
	now := time.Now()
	for i, l := range req.GetLines() {
		// An unset sold_at stays zero: the domain says it is required.
		soldAt, err := limits.EventTime(fmt.Sprintf("lines[%d].sold_at", i), l.GetSoldAt(), now)
		if err != nil {
			return nil, err
		}
		in.Lines = append(in.Lines, domain.SaleLine{
			LineID: l.GetLineId(), BrandID: l.GetBrandId(), FarmerID: l.GetFarmerId(), DeliveryID: l.GetDeliveryId(),
			Grams: l.GetGrams(), SoldAt: soldAt,
		})
	}
	// The report id and revision are the request's identity: they name
	// the command in the event metadata the way a request id does.
	requestID := fmt.Sprintf("%s#%d", req.GetReportId(), req.GetRevision())
	out, err := s.app.ReportSales(ctx, app.ReportSales{
		Fingerprint: eventstore.Fingerprint(req), Report: in, Meta: grpcx.CommandMeta(ctx, requestID),
	})
	if err != nil {
		return nil, err
	}
	if err := out.Report.Overflow(); err != nil {
		return nil, err
	}
	return &brandv1.ReportSalesResponse{
		ReportId: req.GetReportId(), Revision: req.GetRevision(), ChangedLines: int32(out.ChangedLines),
		Lines: saleOutcomes(out.Report), PremiumFen: out.Report.PremiumFen(), Position: grpcx.ToPosition(out.Result.Position()),
	}, nil
}

// GetSalesReport implements BrandService.
func (s *GRPCServer) GetSalesReport(ctx context.Context, req *brandv1.GetSalesReportRequest) (*brandv1.GetSalesReportResponse, error) {
	rep, err := s.app.SalesReport(ctx, req.GetReportId())
	if err != nil {
		return nil, err
	}
	if err := rep.Overflow(); err != nil {
		return nil, err // its premium is not exact
	}
	return &brandv1.GetSalesReportResponse{
		ReportId: rep.ID(), Revision: rep.Revision(), Channel: rep.Channel(), Lines: saleOutcomes(rep),
		PremiumFen: rep.PremiumFen(), Version: rep.Version(),
	}, nil
}

func saleOutcomes(rep *domain.Report) []*brandv1.SaleOutcome {
	out := []*brandv1.SaleOutcome{}
	for _, s := range rep.Sales() {
		out = append(out, &brandv1.SaleOutcome{
			LineId: s.LineID, SaleId: s.SaleID, BrandId: s.BrandID, FarmerId: s.FarmerID, DeliveryId: s.DeliveryID,
			Grams: s.Grams, SoldAt: timestamppb.New(s.SoldAt), PremiumFen: s.PremiumFen,
			RuleId: s.Rate.RuleID, RuleVersion: s.Rate.Version, FenPerKg: s.Rate.FenPerKg,
			WithheldReason: brandv1.WithheldReason(s.Withheld),
		})
	}
	return out
}

// ListFarmerPremiums implements BrandService.
func (s *GRPCServer) ListFarmerPremiums(ctx context.Context, req *brandv1.ListFarmerPremiumsRequest) (*brandv1.ListFarmerPremiumsResponse, error) {
	page, err := s.app.FarmerPremiums(ctx, app.PremiumFilter{
		FarmerID: req.GetFarmerId(), BrandID: req.GetBrandId(), Channel: req.GetChannel(), From: req.GetMonthFrom(), To: req.GetMonthTo(),
	}, req.GetPageSize(), req.GetPageToken(), grpcx.FromPosition(req.GetMinPosition()))
	if err != nil {
		return nil, err
	}
	out := &brandv1.ListFarmerPremiumsResponse{Premiums: []*brandv1.FarmerPremium{}, NextPageToken: page.Next, AsOf: grpcx.ToPosition(page.AsOf)}
	for _, p := range page.Items {
		out.Premiums = append(out.Premiums, &brandv1.FarmerPremium{
			FarmerId: p.FarmerID, BrandId: p.BrandID, Channel: p.Channel, Month: p.Month, Sales: p.Sales,
			GramsSold: p.GramsSold, GramsEarning: p.GramsEarning, PremiumFen: p.PremiumFen,
			EffectiveFenPerKg: domain.EffectiveRate(p.PremiumFen, p.GramsSold),
		})
	}
	return out, nil
}

// GetBrandDashboard implements BrandService.
func (s *GRPCServer) GetBrandDashboard(ctx context.Context, req *brandv1.GetBrandDashboardRequest) (*brandv1.GetBrandDashboardResponse, error) {
	d, err := s.app.BrandDashboard(ctx, req.GetBrandId(), req.GetMonthFrom(), req.GetMonthTo(), grpcx.FromPosition(req.GetMinPosition()))
	if err != nil {
		return nil, err
	}
	out := &brandv1.GetBrandDashboardResponse{
		BrandId: d.BrandID, EnrolledFarmers: int32(d.EnrolledNow), Months: []*brandv1.BrandMonth{}, AsOf: grpcx.ToPosition(d.AsOf),
	}
	for _, m := range d.Months {
		out.Months = append(out.Months, &brandv1.BrandMonth{
			Month: m.Month, EnrolledFarmers: int32(m.Enrolled), Sales: m.Sales, GramsSold: m.GramsSold,
			GramsEarning: m.GramsEarning, PremiumFen: m.PremiumFen, EffectiveFenPerKg: domain.EffectiveRate(m.PremiumFen, m.GramsSold),
		})
	}
	return out, nil
}
