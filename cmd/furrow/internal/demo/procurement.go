package demo

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	procurementv1 "github.com/furrow/furrow/proto/furrow/procurement/v1"
)

// ProgramID is the demo's direct-purchase programme.
const ProgramID = "baba-2025"

func day(month time.Month, d, hour int) *timestamppb.Timestamp {
	return timestamppb.New(time.Date(2025, month, d, hour, 0, 0, 0, time.FixedZone("CST", 8*3600)))
}

// order is one purchase order of the demo and what is weighed in against it.
type order struct {
	key     string // request-id suffix
	req     *procurementv1.PlaceOrderRequest
	weighIn []*procurementv1.RecordDeliveryRequest
	// corrections of weigh-ins, by their index in weighIn.
	corrections map[int][]*procurementv1.CorrectDeliveryRequest
	cancel      string // reason, when the order is cancelled after its weigh-ins
}

func grades(a, b int64) []*procurementv1.GradePrice {
	return []*procurementv1.GradePrice{{Grade: "A", PriceFenPerKg: a}, {Grade: "B", PriceFenPerKg: b}}
}

func lot(grade string, grams int64, at *timestamppb.Timestamp) *procurementv1.RecordDeliveryRequest {
	return &procurementv1.RecordDeliveryRequest{Grade: grade, NetGrams: grams, WeighedAt: at}
}

// orders tell the programme's season: chestnuts in the autumn in
// Qinglong, navel oranges from November in Xunwu, berry tea picked from
// spring to summer in Yongshun.
func orders() []order {
	chestnuts := func(farmer string, kg int64) *procurementv1.PlaceOrderRequest {
		return &procurementv1.PlaceOrderRequest{FarmerId: farmer, Product: "qinglong-chestnut", Prices: grades(1_400, 1_000),
			OrderedGrams: kg * 1000, ToleranceBp: 500, WindowStart: day(time.September, 1, 0), WindowEnd: day(time.November, 1, 0),
			OriginWarehouse: "WH-QINGLONG"}
	}
	oranges := func(farmer string, kg int64) *procurementv1.PlaceOrderRequest {
		return &procurementv1.PlaceOrderRequest{FarmerId: farmer, Product: "xunwu-navel-orange", Prices: grades(680, 480),
			OrderedGrams: kg * 1000, ToleranceBp: 300, WindowStart: day(time.November, 1, 0), WindowEnd: day(time.December, 31, 0),
			OriginWarehouse: "WH-XUNWU"}
	}
	tea := func(farmer string, kg int64) *procurementv1.PlaceOrderRequest {
		return &procurementv1.PlaceOrderRequest{FarmerId: farmer, Product: "yongshun-berry-tea", Prices: grades(3_600, 2_400),
			OrderedGrams: kg * 1000, ToleranceBp: 0, WindowStart: day(time.April, 1, 0), WindowEnd: day(time.August, 1, 0),
			OriginWarehouse: "WH-YONGSHUN"}
	}
	return []order{
		{key: "ql-001", req: chestnuts("QL-001", 2_000), weighIn: []*procurementv1.RecordDeliveryRequest{
			lot("A", 612_400, day(time.September, 18, 9)),
			lot("B", 388_150, day(time.September, 25, 10)),
			lot("REJECTED", 41_300, day(time.September, 25, 11)), // wormy nuts
			lot("A", 705_900, day(time.October, 9, 9)),
		}, corrections: map[int][]*procurementv1.CorrectDeliveryRequest{
			1: {{NetGrams: 380_150, Grade: "B", Reason: "crate tare of 8 kg not deducted"}},
		}},
		{key: "ql-002", req: chestnuts("QL-002", 1_500), weighIn: []*procurementv1.RecordDeliveryRequest{
			lot("A", 498_000, day(time.September, 20, 8)),
			lot("A", 520_750, day(time.October, 12, 8)),
		}, corrections: map[int][]*procurementv1.CorrectDeliveryRequest{
			// Graded A at the gate, B by the quality check, then A again on appeal.
			1: {
				{NetGrams: 520_750, Grade: "B", Reason: "quality check: size below grade A"},
				{NetGrams: 520_750, Grade: "A", Reason: "appeal upheld: re-sampled lot meets grade A"},
			},
		}},
		{key: "xw-001", req: oranges("XW-001", 5_000), weighIn: []*procurementv1.RecordDeliveryRequest{
			lot("A", 1_250_500, day(time.November, 8, 9)),
			lot("A", 1_180_250, day(time.November, 15, 9)),
			lot("B", 640_000, day(time.November, 15, 10)),
		}},
		{key: "xw-002", req: oranges("XW-002", 3_000), weighIn: []*procurementv1.RecordDeliveryRequest{
			lot("A", 980_300, day(time.November, 10, 14)),
		}, cancel: "frost damaged the rest of the crop"},
		{key: "ys-coop", req: tea("YS-COOP", 800), weighIn: []*procurementv1.RecordDeliveryRequest{
			lot("A", 210_400, day(time.April, 22, 7)),
			lot("A", 195_800, day(time.May, 20, 7)),
			lot("B", 240_000, day(time.July, 2, 7)),
		}},
		{key: "ys-001", req: tea("YS-001", 150), weighIn: []*procurementv1.RecordDeliveryRequest{
			lot("A", 62_500, day(time.May, 5, 6)),
		}},
	}
}

func loadProcurement(ctx context.Context, conn *grpc.ClientConn) error {
	p := procurementv1.NewProcurementServiceClient(conn)
	_, err := p.OpenProgram(ctx, &procurementv1.OpenProgramRequest{
		RequestId: "demo:open:" + ProgramID, ProgramId: ProgramID, Name: "Baba Farm 2025 direct purchase",
		BudgetFen:   100_000_000_000, // 1,000,000,000 yuan
		PeriodStart: day(time.January, 1, 0), PeriodEnd: timestamppb.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("CST", 8*3600))),
		Products: []string{"qinglong-chestnut", "xunwu-navel-orange", "yongshun-berry-tea"},
		Counties: []string{"Qinglong", "Xunwu", "Yongshun"},
	})
	if err != nil {
		return fmt.Errorf("open programme: %w", err)
	}
	for _, o := range orders() {
		o.req.RequestId, o.req.ProgramId = "demo:order:"+o.key, ProgramID
		placed, err := p.PlaceOrder(ctx, o.req)
		if err != nil {
			return fmt.Errorf("place order %s: %w", o.key, err)
		}
		// A warehouse's weigh-ins go in as one batch, as they would at the
		// end of a day.
		day := &procurementv1.RecordDeliveriesRequest{}
		for i, l := range o.weighIn {
			l.RequestId, l.OrderId = fmt.Sprintf("demo:weigh-in:%s:%d", o.key, i+1), placed.GetOrderId()
			day.Lines = append(day.Lines, l)
		}
		res, err := p.RecordDeliveries(ctx, day)
		if err != nil {
			return fmt.Errorf("weigh-ins of %s: %w", o.key, err)
		}
		for _, r := range res.GetResults() {
			if e := r.GetError(); e != nil {
				return fmt.Errorf("weigh-in %s: %s: %s", r.GetRequestId(), e.GetCode(), e.GetMessage())
			}
		}
		for _, i := range slices.Sorted(maps.Keys(o.corrections)) {
			for n, c := range o.corrections[i] {
				c.RequestId = fmt.Sprintf("demo:correct:%s:%d:%d", o.key, i+1, n+1)
				c.DeliveryId = res.GetResults()[i].GetRecorded().GetDeliveryId()
				if _, err := p.CorrectDelivery(ctx, c); err != nil {
					return fmt.Errorf("correct %s: %w", c.GetRequestId(), err)
				}
			}
		}
		if o.cancel != "" {
			if _, err := p.CancelOrder(ctx, &procurementv1.CancelOrderRequest{
				RequestId: "demo:cancel:" + o.key, OrderId: placed.GetOrderId(), Reason: o.cancel}); err != nil {
				return fmt.Errorf("cancel %s: %w", o.key, err)
			}
		}
	}
	return nil
}
