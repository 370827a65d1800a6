package stack_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
	procurementv1 "github.com/furrow/furrow/proto/furrow/procurement/v1"

	"github.com/furrow/furrow/pkg/telemetry"

	"github.com/furrow/furrow/cmd/furrow/internal/metricnames"
	"github.com/furrow/furrow/cmd/furrow/internal/stack"
)

// furrow dev's ops listener serves the production binaries' pages; its
// /metrics shows gRPC, append, handler, projection and dead-letter series
// from OpenTelemetry (metricnames.Core, which the production test checks
// too). It installs the process's MeterProvider; not parallel.
func TestOpsListenerServesOTelMetrics(t *testing.T) {
	ctx := testCtx(t)
	shutdown, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "furrow-dev"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = shutdown(context.Background()) })
	st, err := stack.Start(ctx, stack.Config{DataDir: t.TempDir(), GRPCAddr: "127.0.0.1:0", OpsAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st.Shutdown(sctx)
	})
	conn, err := grpc.NewClient(st.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	led, proc := ledgerv1.NewLedgerServiceClient(conn), procurementv1.NewProcurementServiceClient(conn)
	if _, err := led.RegisterFarmer(ctx, &ledgerv1.RegisterFarmerRequest{RequestId: "reg-M1", FarmerId: "M1", Name: "Li Na", County: "Xunwu"}); err != nil {
		t.Fatal(err)
	}
	res, err := proc.RecordDelivery(ctx, &procurementv1.RecordDeliveryRequest{
		RequestId: "metrics", FarmerId: "M1", Product: "chestnut", NetGrams: 1000, PriceFenPerKg: 1200})
	if err != nil {
		t.Fatal(err)
	}
	// The ledger's handler posts the delivery and its projection applies it.
	if _, err := led.GetFarmerBalance(ctx, &ledgerv1.GetFarmerBalanceRequest{FarmerId: "M1", MinPosition: res.GetPosition()}); err != nil {
		t.Fatal(err)
	}

	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + st.OpsAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d %s", code, body)
	}
	if code, body := get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz = %d %s", code, body)
	}
	var missing []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, body := get("/metrics")
		have := metricnames.Families(body)
		missing = missing[:0]
		for _, name := range metricnames.Core {
			if !have[name] {
				missing = append(missing, name)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics lacks %s:\n%s", strings.Join(missing, ", "), body)
		}
	}
}
