// Package ports exposes procurement's gRPC API: it turns requests into
// commands and queries and results into responses. Errors are mapped to
// status codes by grpcx, in one place.
package ports

import (
	"context"
	"log/slog"
	"strings"
	"time"
	"unicode"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	procurementv1 "github.com/furrow/furrow/proto/furrow/procurement/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/grpcx"
	"github.com/furrow/furrow/pkg/limits"

	"github.com/furrow/furrow/services/procurement/app"
	"github.com/furrow/furrow/services/procurement/domain"
)

// GRPCServer implements furrow.procurement.v1.ProcurementService.
type GRPCServer struct {
	procurementv1.UnimplementedProcurementServiceServer
	app *app.Procurement
	log *slog.Logger
	// centres answers ListCentreIntake (UNIMPLEMENTED without it).
	centres *app.Centres
	// requests checks and records the request ids of RecordDeliveries'
	// lines (nil: not checked beyond their aggregates).
	requests Requests
}

// Requests is a request-id registry (pkg/requests.Registry).
type Requests interface {
	Check(ctx context.Context, method, requestID, fingerprint string) error
	Record(ctx context.Context, method, requestID, fingerprint string) error
}

// WithRequests makes s check each RecordDeliveries line's request id
// against r, as the process checks a single RecordDelivery's, and returns
// s. A nil r checks nothing.
func (s *GRPCServer) WithRequests(r Requests) *GRPCServer {
	if r != nil && !isNilRegistry(r) {
		s.requests = r
	}
	return s
}

var _ procurementv1.ProcurementServiceServer = (*GRPCServer)(nil)

// NewGRPCServer returns the gRPC face of a.
func NewGRPCServer(a *app.Procurement, log *slog.Logger) *GRPCServer {
	return &GRPCServer{app: a, log: log}
}

// WithCentres makes s answer ListCentreIntake from c, and returns s.
func (s *GRPCServer) WithCentres(c *app.Centres) *GRPCServer {
	s.centres = c
	return s
}

// OpenProgram implements ProcurementService.
func (s *GRPCServer) OpenProgram(ctx context.Context, req *procurementv1.OpenProgramRequest) (*procurementv1.OpenProgramResponse, error) {
	start, end, err := programTimes(req)
	if err != nil {
		return nil, err
	}
	res, err := s.app.OpenProgram(ctx, app.OpenProgram{
		RequestID: req.GetRequestId(), Fingerprint: eventstore.Fingerprint(req), ProgramID: req.GetProgramId(),
		Meta: grpcx.CommandMeta(ctx, req.GetRequestId()),
		Terms: domain.ProgramTerms{
			Name: req.GetName(), BudgetFen: req.GetBudgetFen(),
			PeriodStart: start, PeriodEnd: end,
			Products: req.GetProducts(), Counties: req.GetCounties(),
		},
	})
	if err != nil {
		return nil, err
	}
	return &procurementv1.OpenProgramResponse{ProgramId: req.GetProgramId(), Position: grpcx.ToPosition(res.Position())}, nil
}

// CloseProgram implements ProcurementService.
func (s *GRPCServer) CloseProgram(ctx context.Context, req *procurementv1.CloseProgramRequest) (*procurementv1.CloseProgramResponse, error) {
	if err := limits.Text("reason", req.GetReason(), limits.MaxTextLen); err != nil {
		return nil, err
	}
	res, err := s.app.CloseProgram(ctx, app.CloseProgram{
		RequestID: req.GetRequestId(), Fingerprint: eventstore.Fingerprint(req), ProgramID: req.GetProgramId(),
		Reason: req.GetReason(), Meta: grpcx.CommandMeta(ctx, req.GetRequestId()),
	})
	if err != nil {
		return nil, err
	}
	return &procurementv1.CloseProgramResponse{Position: grpcx.ToPosition(res.Position())}, nil
}

// GetProgram implements ProcurementService.
func (s *GRPCServer) GetProgram(ctx context.Context, req *procurementv1.GetProgramRequest) (*procurementv1.GetProgramResponse, error) {
	p, err := s.app.Program(ctx, req.GetProgramId())
	if err != nil {
		return nil, err
	}
	t := p.Terms()
	return &procurementv1.GetProgramResponse{Program: &procurementv1.Program{
		ProgramId: p.ID(), Name: t.GetName(), BudgetFen: t.GetBudgetFen(), ReservedFen: p.ReservedFen(),
		AvailableFen: p.AvailableFen(), PeriodStart: t.GetPeriodStart(), PeriodEnd: t.GetPeriodEnd(),
		Products: t.GetProducts(), Counties: t.GetCounties(), Status: programStatus(p.Closed()),
		Orders: p.Orders(), Version: p.Version(),
	}}, nil
}

func programStatus(closed bool) procurementv1.ProgramStatus {
	if closed {
		return procurementv1.ProgramStatus_PROGRAM_STATUS_CLOSED
	}
	return procurementv1.ProgramStatus_PROGRAM_STATUS_OPEN
}

// GetProgramProgress implements ProcurementService.
func (s *GRPCServer) GetProgramProgress(ctx context.Context, req *procurementv1.GetProgramProgressRequest) (*procurementv1.GetProgramProgressResponse, error) {
	pp, asOf, err := s.app.ProgramProgress(ctx, req.GetProgramId(), grpcx.FromPosition(req.GetMinPosition()))
	if err != nil {
		return nil, err
	}
	out := &procurementv1.GetProgramProgressResponse{
		ProgramId: pp.ProgramID, Name: pp.Name, Status: programStatus(pp.Closed), BudgetFen: pp.BudgetFen,
		ReservedFen: pp.ReservedFen, Total: toProgress(pp.Total), AsOf: grpcx.ToPosition(asOf),
	}
	for _, p := range pp.ByProduct {
		out.ByProduct = append(out.ByProduct, toProgress(p))
	}
	for _, p := range pp.ByCounty {
		out.ByCounty = append(out.ByCounty, toProgress(p))
	}
	return out, nil
}

func toProgress(p app.Progress) *procurementv1.Progress {
	return &procurementv1.Progress{
		Key: p.Key, Orders: p.Orders, OrderedGrams: p.OrderedGrams, Deliveries: p.Deliveries,
		DeliveredGrams: p.DeliveredGrams, DeliveredFen: p.DeliveredFen, RejectedGrams: p.RejectedGrams,
	}
}

// PlaceOrder implements ProcurementService.
func (s *GRPCServer) PlaceOrder(ctx context.Context, req *procurementv1.PlaceOrderRequest) (*procurementv1.PlaceOrderResponse, error) {
	start, end, err := orderTimes(req)
	if err != nil {
		return nil, err
	}
	prices := make([]domain.GradePrice, len(req.GetPrices()))
	for i, p := range req.GetPrices() {
		prices[i] = domain.GradePrice{Grade: p.GetGrade(), PriceFenPerKg: p.GetPriceFenPerKg()}
	}
	out, err := s.app.PlaceOrder(ctx, app.PlaceOrder{
		RequestID: req.GetRequestId(), Fingerprint: eventstore.Fingerprint(req),
		Meta: grpcx.CommandMeta(ctx, req.GetRequestId()),
		Terms: domain.OrderTerms{
			ProgramID: req.GetProgramId(), FarmerID: req.GetFarmerId(), Product: req.GetProduct(), Prices: prices,
			OrderedGrams: req.GetOrderedGrams(), ToleranceBP: req.GetToleranceBp(),
			WindowStart: start, WindowEnd: end,
			OriginWarehouse: req.GetOriginWarehouse(),
		},
	})
	if err != nil {
		return nil, err
	}
	return &procurementv1.PlaceOrderResponse{
		OrderId: out.Order.GetOrderId(), MaxGrams: out.Order.GetMaxGrams(), ReservedFen: out.Order.GetReservedFen(),
		Position: grpcx.ToPosition(out.Result.Position()),
	}, nil
}

// CancelOrder implements ProcurementService.
func (s *GRPCServer) CancelOrder(ctx context.Context, req *procurementv1.CancelOrderRequest) (*procurementv1.CancelOrderResponse, error) {
	if err := limits.Text("reason", req.GetReason(), limits.MaxTextLen); err != nil {
		return nil, err
	}
	out, err := s.app.CancelOrder(ctx, app.CancelOrder{
		RequestID: req.GetRequestId(), Fingerprint: eventstore.Fingerprint(req), OrderID: req.GetOrderId(),
		Reason: req.GetReason(), Meta: grpcx.CommandMeta(ctx, req.GetRequestId()),
	})
	if err != nil {
		return nil, err
	}
	return &procurementv1.CancelOrderResponse{ReleasedFen: out.Cancelled.GetReleasedFen(), Position: grpcx.ToPosition(out.Result.Position())}, nil
}

// GetOrder implements ProcurementService.
func (s *GRPCServer) GetOrder(ctx context.Context, req *procurementv1.GetOrderRequest) (*procurementv1.GetOrderResponse, error) {
	o, err := s.app.Order(ctx, req.GetOrderId())
	if err != nil {
		return nil, err
	}
	return &procurementv1.GetOrderResponse{Order: toOrder(app.OrderRowOf(o))}, nil
}

func toOrder(o app.OrderRow) *procurementv1.Order {
	prices := make([]*procurementv1.GradePrice, len(o.Prices))
	for i, p := range o.Prices {
		prices[i] = &procurementv1.GradePrice{Grade: p.Grade, PriceFenPerKg: p.PriceFenPerKg}
	}
	return &procurementv1.Order{
		OrderId: o.OrderID, ProgramId: o.ProgramID, FarmerId: o.FarmerID, County: o.County, Product: o.Product,
		Prices: prices, OrderedGrams: o.OrderedGrams, ToleranceBp: o.ToleranceBP, MaxGrams: o.MaxGrams,
		WindowStart: timestamppb.New(o.WindowStart), WindowEnd: timestamppb.New(o.WindowEnd),
		OriginWarehouse: o.OriginWarehouse, Status: orderStatus(o.Status), ReservedFen: o.ReservedFen,
		DeliveredGrams: o.DeliveredGrams, DeliveredFen: o.DeliveredFen, RejectedGrams: o.RejectedGrams,
		Deliveries: o.Deliveries, Version: o.Version,
	}
}

var orderStatuses = map[domain.OrderStatus]procurementv1.OrderStatus{
	domain.OrderOpen:      procurementv1.OrderStatus_ORDER_STATUS_OPEN,
	domain.OrderFulfilled: procurementv1.OrderStatus_ORDER_STATUS_FULFILLED,
	domain.OrderCancelled: procurementv1.OrderStatus_ORDER_STATUS_CANCELLED,
}

func orderStatus(s domain.OrderStatus) procurementv1.OrderStatus { return orderStatuses[s] }

// ListOrders implements ProcurementService.
func (s *GRPCServer) ListOrders(ctx context.Context, req *procurementv1.ListOrdersRequest) (*procurementv1.ListOrdersResponse, error) {
	if err := limits.Text("county", req.GetCounty(), limits.MaxCodeLen); err != nil {
		return nil, err
	}
	page, err := app.NewPage(req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	f := app.OrderFilter{ProgramID: req.GetProgramId(), FarmerID: req.GetFarmerId(), County: req.GetCounty()}
	if st := req.GetStatus(); st != procurementv1.OrderStatus_ORDER_STATUS_UNSPECIFIED {
		for d, v := range orderStatuses {
			if v == st {
				f.Status = d
			}
		}
		if f.Status == "" {
			return nil, failure.Invalid("status", "unknown order status %d", st)
		}
	}
	rows, next, asOf, err := s.app.Orders(ctx, f, page, grpcx.FromPosition(req.GetMinPosition()))
	if err != nil {
		return nil, err
	}
	out := &procurementv1.ListOrdersResponse{NextPageToken: next, AsOf: grpcx.ToPosition(asOf)}
	for _, o := range rows {
		out.Orders = append(out.Orders, toOrder(o))
	}
	return out, nil
}

// recordCommand checks a RecordDeliveryRequest's limits and turns it into
// its command.
func recordCommand(ctx context.Context, req *procurementv1.RecordDeliveryRequest, now time.Time) (app.RecordDelivery, error) {
	at, err := weighedAt(req, now)
	if err != nil {
		return app.RecordDelivery{}, err
	}
	return app.RecordDelivery{
		RequestID:   req.GetRequestId(),
		Fingerprint: eventstore.Fingerprint(req),
		OrderID:     req.GetOrderId(),
		Meta:        grpcx.CommandMeta(ctx, req.GetRequestId()),
		WeighIn: domain.WeighIn{
			FarmerID: req.GetFarmerId(), Product: req.GetProduct(), Grade: req.GetGrade(),
			NetGrams: req.GetNetGrams(), PriceFenPerKg: req.GetPriceFenPerKg(),
			WeighedAt: at, Warehouse: req.GetWarehouse(), DistributionCentre: req.GetDistributionCentre(),
		},
	}, nil
}

func recordResponse(out app.Recorded) *procurementv1.RecordDeliveryResponse {
	return &procurementv1.RecordDeliveryResponse{
		DeliveryId: out.Delivery.GetDeliveryId(), AmountFen: out.Delivery.GetAmountFen(),
		PriceFenPerKg: out.Delivery.GetPriceFenPerKg(), Position: grpcx.ToPosition(out.Result.Position()),
	}
}

// RecordDelivery implements ProcurementService.
func (s *GRPCServer) RecordDelivery(ctx context.Context, req *procurementv1.RecordDeliveryRequest) (*procurementv1.RecordDeliveryResponse, error) {
	cmd, err := recordCommand(ctx, req, time.Now())
	if err != nil {
		return nil, err
	}
	out, err := s.app.RecordDelivery(ctx, cmd)
	if err != nil {
		return nil, err
	}
	return recordResponse(out), nil
}

// recordDeliveryMethod is RecordDelivery's full method name: a line of
// RecordDeliveries is that command, under the same request-id space.
var recordDeliveryMethod = "/" + procurementv1.ProcurementService_ServiceDesc.ServiceName + "/RecordDelivery"

// isNilRegistry reports whether r is an interface holding a nil pointer
// (a process without a registry passes one).
func isNilRegistry(r Requests) bool {
	v, ok := r.(interface{ IsNil() bool })
	return ok && v.IsNil()
}

// RecordDeliveries implements ProcurementService. A line's error is mapped
// to a status by grpcx, exactly as if the line had been sent on its own; a
// line beyond the limits is refused on its own and never reaches the
// command.
func (s *GRPCServer) RecordDeliveries(ctx context.Context, req *procurementv1.RecordDeliveriesRequest) (*procurementv1.RecordDeliveriesResponse, error) {
	if err := app.CheckLines(len(req.GetLines())); err != nil {
		return nil, err
	}
	now := time.Now()
	results := make([]app.LineResult, len(req.GetLines()))
	lines := make([]app.RecordDelivery, 0, len(req.GetLines()))
	at := make([]int, 0, len(req.GetLines())) // lines[k] is request line at[k]
	for i, l := range req.GetLines() {
		cmd, err := recordCommand(ctx, l, now)
		if err == nil && s.requests != nil {
			err = s.requests.Check(ctx, recordDeliveryMethod, cmd.RequestID, cmd.Fingerprint)
		}
		if err != nil {
			results[i].Err = err
			continue
		}
		lines, at = append(lines, cmd), append(at, i)
	}
	if len(lines) > 0 {
		recorded, err := s.app.RecordDeliveries(ctx, lines)
		if err != nil {
			return nil, err
		}
		for k, r := range recorded {
			results[at[k]] = r
			if r.Err == nil && s.requests != nil {
				if err := s.requests.Record(ctx, recordDeliveryMethod, lines[k].RequestID, lines[k].Fingerprint); err != nil {
					s.log.WarnContext(ctx, "request id not recorded", "method", recordDeliveryMethod, "error", err)
				}
			}
		}
	}
	out := &procurementv1.RecordDeliveriesResponse{Results: make([]*procurementv1.DeliveryLineResult, len(results))}
	var last eventstore.Position
	for i, r := range results {
		lr := &procurementv1.DeliveryLineResult{Index: int32(i), RequestId: req.GetLines()[i].GetRequestId()}
		if r.Err != nil {
			st := status.Convert(grpcx.Status(ctx, s.log, r.Err))
			lr.Error = &procurementv1.LineError{Code: codeName(st.Code()), Message: st.Message()}
			out.Refused++
		} else {
			lr.Recorded = recordResponse(r.Recorded)
			out.Recorded++
			if pos := r.Recorded.Result.Position(); pos.Sequence > last.Sequence {
				last = pos
			}
		}
		out.Results[i] = lr
	}
	if last.Sequence > 0 {
		out.Position = grpcx.ToPosition(last)
	}
	return out, nil
}

// codeName is a status code as the gRPC specification spells it,
// e.g. FAILED_PRECONDITION.
func codeName(c codes.Code) string {
	switch c {
	case codes.OK:
		return "OK"
	case codes.Canceled:
		return "CANCELLED" // Go spells the constant Canceled
	}
	var b strings.Builder
	for i, r := range c.String() {
		if i > 0 && unicode.IsUpper(r) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}

// CorrectDelivery implements ProcurementService.
func (s *GRPCServer) CorrectDelivery(ctx context.Context, req *procurementv1.CorrectDeliveryRequest) (*procurementv1.CorrectDeliveryResponse, error) {
	if err := checkCorrection(req); err != nil {
		return nil, err
	}
	out, err := s.app.CorrectDelivery(ctx, app.CorrectDelivery{
		RequestID: req.GetRequestId(), Fingerprint: eventstore.Fingerprint(req), DeliveryID: req.GetDeliveryId(),
		Meta: grpcx.CommandMeta(ctx, req.GetRequestId()),
		Correction: domain.Correction{
			NetGrams: req.GetNetGrams(), Grade: req.GetGrade(), PriceFenPerKg: req.PriceFenPerKg, Reason: req.GetReason(),
		},
	})
	if err != nil {
		return nil, err
	}
	c := out.Correction
	return &procurementv1.CorrectDeliveryResponse{
		CorrectionNumber: c.GetCorrectionNumber(), ReversedAmountFen: c.GetReversedAmountFen(), AmountFen: c.GetAmountFen(),
		Position: grpcx.ToPosition(out.Result.Position()),
	}, nil
}

// GetDelivery implements ProcurementService.
func (s *GRPCServer) GetDelivery(ctx context.Context, req *procurementv1.GetDeliveryRequest) (*procurementv1.GetDeliveryResponse, error) {
	d, err := s.app.Delivery(ctx, req.GetDeliveryId())
	if err != nil {
		return nil, err
	}
	return &procurementv1.GetDeliveryResponse{Delivery: toDelivery(d)}, nil
}

func toDelivery(d domain.DeliveryView) *procurementv1.Delivery {
	return &procurementv1.Delivery{
		DeliveryId: d.DeliveryID, FarmerId: d.FarmerID, Product: d.Product, NetGrams: d.NetGrams,
		PriceFenPerKg: d.PriceFenPerKg, Grade: d.Grade, AmountFen: d.AmountFen, WeighedAt: timestamppb.New(d.WeighedAt),
		Position: grpcx.ToPosition(eventstore.Position{Stream: domain.Stream, Sequence: d.Version}),
		OrderId:  d.OrderID, ProgramId: d.ProgramID, Warehouse: d.Warehouse, County: d.County, Corrections: d.Corrections,
		DistributionCentre: d.DistributionCentre,
	}
}

// ListFarmerDeliveries implements ProcurementService.
func (s *GRPCServer) ListFarmerDeliveries(ctx context.Context, req *procurementv1.ListFarmerDeliveriesRequest) (*procurementv1.ListFarmerDeliveriesResponse, error) {
	page, err := app.NewPage(req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	rows, next, asOf, err := s.app.FarmerDeliveries(ctx, req.GetFarmerId(), page, grpcx.FromPosition(req.GetMinPosition()))
	if err != nil {
		return nil, err
	}
	out := &procurementv1.ListFarmerDeliveriesResponse{NextPageToken: next, AsOf: grpcx.ToPosition(asOf)}
	for _, d := range rows {
		out.Deliveries = append(out.Deliveries, toDelivery(d))
	}
	return out, nil
}

// ListCountyTotals implements ProcurementService.
func (s *GRPCServer) ListCountyTotals(ctx context.Context, req *procurementv1.ListCountyTotalsRequest) (*procurementv1.ListCountyTotalsResponse, error) {
	rows, asOf, err := s.app.CountyTotals(ctx, grpcx.FromPosition(req.GetMinPosition()))
	if err != nil {
		return nil, err
	}
	out := &procurementv1.ListCountyTotalsResponse{AsOf: grpcx.ToPosition(asOf)}
	for _, c := range rows {
		out.Counties = append(out.Counties, &procurementv1.CountyTotals{County: c.County, Farmers: c.Farmers, Progress: toProgress(c.Progress)})
	}
	return out, nil
}
