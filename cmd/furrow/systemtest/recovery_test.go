package systemtest

import (
	"context"
	"fmt"
	"testing"
	"time"

	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
	procurementv1 "github.com/furrow/furrow/proto/furrow/procurement/v1"
	typesv1 "github.com/furrow/furrow/proto/furrow/types/v1"
)

// maxRecovery is how long, after a SIGKILL and restart, the ledger may take
// to post a new delivery. A message the dead process held un-acked used to
// block the ledger's handler consumer (one message in flight at a time)
// until its 30 s AckWait ran out; the bound is well below that and well
// above a healthy restart, so it tells the defect from noise.
const maxRecovery = 15 * time.Second

// TestRecoveryAfterSIGKILLTakesSeconds kills furrow dev while the ledger is
// busy posting deliveries, restarts it, records one more delivery and
// measures how long until the farmer's balance reflects it. It prints the
// figure for each kill.
func TestRecoveryAfterSIGKILLTakesSeconds(t *testing.T) {
	if testing.Short() {
		t.Skip("system test")
	}
	t.Parallel()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	p := startDev(t, dir)
	if _, err := p.ledger().RegisterFarmer(ctx, &ledgerv1.RegisterFarmerRequest{
		RequestId: "reg-F1", FarmerId: "F1", Name: "Wang Fang", County: "Xunwu"}); err != nil {
		t.Fatal(err)
	}
	n := 0
	record := func(p *proc) *typesv1.Position {
		t.Helper()
		n++
		res, err := p.procurement().RecordDelivery(ctx, &procurementv1.RecordDeliveryRequest{
			RequestId: fmt.Sprintf("rec-%d", n), FarmerId: "F1", Product: "xunwu-navel-orange",
			NetGrams: 1000, PriceFenPerKg: 500})
		if err != nil {
			t.Fatalf("RecordDelivery %d: %v\n%s", n, err, p.out.String())
		}
		return res.GetPosition()
	}
	for kill := range 3 {
		// A burst, so that the ledger's handler is mid-way when the kill lands.
		for range 8 {
			record(p)
		}
		_ = p.cmd.Process.Kill()
		_ = p.wait(t)

		p = startDev(t, dir)
		started := time.Now()
		at := record(p)
		c, cc := context.WithTimeout(ctx, time.Minute)
		bal, err := p.ledger().GetFarmerBalance(c, &ledgerv1.GetFarmerBalanceRequest{FarmerId: "F1", MinPosition: at})
		cc()
		took := time.Since(started)
		t.Logf("kill %d: the ledger posted the first delivery after the restart in %v", kill+1, took.Round(time.Millisecond))
		if err != nil {
			t.Fatalf("kill %d: balance after restart: %v\n%s", kill+1, err, p.out.String())
		}
		if want := int64(n) * 500; bal.GetPurchasesFen() != want {
			t.Fatalf("kill %d: purchases %d fen, want %d", kill+1, bal.GetPurchasesFen(), want)
		}
		if took > maxRecovery {
			t.Errorf("kill %d: recovery took %v, want under %v", kill+1, took.Round(time.Millisecond), maxRecovery)
		}
	}
}
