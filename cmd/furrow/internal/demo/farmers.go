package demo

import (
	"context"
	"fmt"

	"google.golang.org/grpc"

	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
)

// farmers are the demo's growers, and one cooperative that sells as one
// account. Procurement buys only from farmers registered with the ledger.
var farmers = []*ledgerv1.RegisterFarmerRequest{
	{FarmerId: "QL-001", Name: "Li Wei", County: "Qinglong", Cooperative: "Qinglong Chestnut Cooperative", Phone: "13800000101", PayoutAccount: "6222020000000101"},
	{FarmerId: "QL-002", Name: "Zhang Min", County: "Qinglong", Cooperative: "Qinglong Chestnut Cooperative", Phone: "13800000102", PayoutAccount: "6222020000000102"},
	{FarmerId: "XW-001", Name: "Wang Fang", County: "Xunwu", Cooperative: "Xunwu Navel Orange Cooperative", Phone: "13800000201", PayoutAccount: "6222020000000201"},
	{FarmerId: "XW-002", Name: "Liu Yang", County: "Xunwu", Cooperative: "Xunwu Navel Orange Cooperative", Phone: "13800000202", PayoutAccount: "6222020000000202"},
	{FarmerId: "YS-001", Name: "Peng Hua", County: "Yongshun", Cooperative: "Yongshun Berry Tea Cooperative", Phone: "13800000301", PayoutAccount: "6222020000000301"},
	{FarmerId: "YS-COOP", Name: "Yongshun Berry Tea Cooperative", County: "Yongshun", Cooperative: "Yongshun Berry Tea Cooperative", Phone: "07430000000", PayoutAccount: "6222020000000399"},
}

func registerFarmers(ctx context.Context, conn *grpc.ClientConn) error {
	ledger := ledgerv1.NewLedgerServiceClient(conn)
	for _, f := range farmers {
		req := &ledgerv1.RegisterFarmerRequest{
			RequestId: "demo:register:" + f.GetFarmerId(), FarmerId: f.GetFarmerId(), Name: f.GetName(),
			County: f.GetCounty(), Cooperative: f.GetCooperative(), Phone: f.GetPhone(), PayoutAccount: f.GetPayoutAccount(),
		}
		if _, err := ledger.RegisterFarmer(ctx, req); err != nil {
			return fmt.Errorf("register %s: %w", f.GetFarmerId(), err)
		}
	}
	return nil
}
