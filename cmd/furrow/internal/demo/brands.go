package demo

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	brandv1 "github.com/furrow/furrow/proto/furrow/brand/v1"
)

// The brand step runs after the farmers (enrolment needs them registered
// with the ledger) and the procurement step.
func init() { steps = append(steps, Step{Name: "brands", Run: loadBrands}) }

// Brand ids of the demo.
const (
	BrandXunwu    = "xunwu-navel-orange"
	BrandQinglong = "qinglong-chestnut"
	BrandYongshun = "yongshun-county"
	ChannelHema   = "hema"
)

// loadBrands tells the brand side of the Xunwu story: the navel-orange
// brand launched at Hema, its growers enrolled, one extra yuan per
// kilogram sold there, and Hema's first sales report. Qinglong's chestnut
// brand is still incubating, and Yongshun has a county public brand.
func loadBrands(ctx context.Context, conn *grpc.ClientConn) error {
	b := brandv1.NewBrandServiceClient(conn)
	for _, r := range []*brandv1.RegisterBrandRequest{
		{BrandId: BrandXunwu, Kind: brandv1.BrandKind_BRAND_KIND_REGIONAL_PRODUCT, Name: "Xunwu navel orange", County: "Xunwu", ProductCategory: "citrus", RegisteredOn: "2025-03-01"},
		{BrandId: BrandQinglong, Kind: brandv1.BrandKind_BRAND_KIND_REGIONAL_PRODUCT, Name: "Qinglong chestnut", County: "Qinglong", ProductCategory: "nuts", RegisteredOn: "2025-06-01"},
		{BrandId: BrandYongshun, Kind: brandv1.BrandKind_BRAND_KIND_COUNTY_PUBLIC, Name: "Yongshun county brand", County: "Yongshun", ProductCategory: "berry tea", RegisteredOn: "2025-04-15"},
	} {
		r.RequestId = "demo:brand:" + r.GetBrandId()
		if _, err := b.RegisterBrand(ctx, r); err != nil {
			return fmt.Errorf("register brand %s: %w", r.GetBrandId(), err)
		}
	}
	if _, err := b.ChangeBrandStage(ctx, &brandv1.ChangeBrandStageRequest{RequestId: "demo:launch:" + BrandXunwu, BrandId: BrandXunwu,
		Stage: brandv1.BrandStage_BRAND_STAGE_LAUNCHED, EffectiveOn: "2025-11-01", Note: "on Hema shelves in 30 cities"}); err != nil {
		return fmt.Errorf("launch %s: %w", BrandXunwu, err)
	}
	if _, err := b.RegisterChannel(ctx, &brandv1.RegisterChannelRequest{RequestId: "demo:channel:" + ChannelHema, ChannelId: ChannelHema, Name: "Hema Fresh"}); err != nil {
		return fmt.Errorf("register channel: %w", err)
	}
	for _, f := range []string{"XW-001", "XW-002"} {
		if _, err := b.EnrolFarmer(ctx, &brandv1.EnrolFarmerRequest{RequestId: "demo:enrol:" + BrandXunwu + ":" + f, BrandId: BrandXunwu,
			FarmerId: f, EnrolledFrom: "2025-11-01", Certificate: "GI-XUNWU-2025-" + f}); err != nil {
			return fmt.Errorf("enrol %s: %w", f, err)
		}
	}
	if _, err := b.SetPremiumRule(ctx, &brandv1.SetPremiumRuleRequest{RequestId: "demo:rule:" + BrandXunwu + ":hema-2025", BrandId: BrandXunwu,
		Channel: ChannelHema, RuleId: "hema-2025-26", FenPerKg: 100, EffectiveFrom: "2025-11-01", EffectiveTo: "2026-04-30"}); err != nil {
		return fmt.Errorf("premium rule: %w", err)
	}
	// Sold in the evening, Shanghai time.
	cst := time.FixedZone("CST", 8*3600)
	lines := []*brandv1.SaleLine{
		{LineId: "1", BrandId: BrandXunwu, FarmerId: "XW-001", Grams: 1_234_567},
		{LineId: "2", BrandId: BrandXunwu, FarmerId: "XW-002", Grams: 402_350},
		{LineId: "3", BrandId: BrandXunwu, FarmerId: "XW-001", Grams: 87_000},
	}
	for i, day := range []int{20, 21, 27} {
		lines[i].SoldAt = timestamppb.New(time.Date(2025, time.November, day, 19, 30, 0, 0, cst))
	}
	if _, err := b.ReportSales(ctx, &brandv1.ReportSalesRequest{ReportId: "hema-2025-11", Revision: 1, Channel: ChannelHema, Lines: lines}); err != nil {
		return fmt.Errorf("hema sales report: %w", err)
	}
	return nil
}
