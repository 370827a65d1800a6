package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
	procurementevents "github.com/furrow/furrow/proto/furrow/procurement/events/v1"

	"github.com/furrow/furrow/cmd/furrow/internal/stack"
)

// financeStack starts a stack where farmer F1 delivered 12,345 g at 680
// fen/kg (83.95 yuan) and was paid 30.00 yuan out, and returns its --addr
// flag.
func financeStack(t *testing.T) (string, *stack.Stack) {
	t.Helper()
	st, err := stack.Start(context.Background(), stack.Config{DataDir: t.TempDir(), GRPCAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st.Shutdown(ctx)
	})
	conn, err := grpc.NewClient(st.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ledger := ledgerv1.NewLedgerServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	if _, err := ledger.RegisterFarmer(ctx, &ledgerv1.RegisterFarmerRequest{RequestId: "r", FarmerId: "F1", Name: "Wang Fang",
		County: "Xunwu", Cooperative: "Navel Co-op", PayoutAccount: "6222"}); err != nil {
		t.Fatal(err)
	}
	pos := appendEvent(t, st, "PROCUREMENT", "procurement.delivery.D1.delivery_recorded", "d1",
		&procurementevents.DeliveryRecorded{DeliveryId: "D1", FarmerId: "F1", Product: "xunwu-navel-orange", NetGrams: 12_345, PriceFenPerKg: 680, AmountFen: 8_395})
	if _, err := ledger.GetFarmerBalance(ctx, &ledgerv1.GetFarmerBalanceRequest{FarmerId: "F1", MinPosition: pos}); err != nil {
		t.Fatal(err)
	}
	if _, err := ledger.RequestPayout(ctx, &ledgerv1.RequestPayoutRequest{RequestId: "p1", FarmerId: "F1",
		Amount: &ledgerv1.RequestPayoutRequest_AmountFen{AmountFen: 3_000}}); err != nil {
		t.Fatal(err)
	}
	for {
		p, err := ledger.GetPayout(ctx, &ledgerv1.GetPayoutRequest{PayoutId: "PO-F1-1"})
		if err == nil && p.GetPayout().GetStatus() == ledgerv1.PayoutStatus_PAYOUT_STATUS_SETTLED {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("payout never settled: %v %v", p, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "--addr=" + st.GRPCAddr(), st
}

// TestStatementTableIsAllYuan: the statement for people says its amounts
// are yuan (CNY), and every amount in it is: the columns and the amounts
// in the entries' descriptions ("hold 3000 fen" is "hold 30.00 yuan").
// The CSV for machines stays in fen, descriptions included.
func TestStatementTableIsAllYuan(t *testing.T) {
	t.Parallel()
	addr, _ := financeStack(t)
	out := mustCLI(t, "ledger", "statement", addr, "--farmer=F1")
	if !strings.Contains(out, "amounts in yuan (CNY)") {
		t.Fatalf("statement heading does not name its unit:\n%s", out)
	}
	if strings.Contains(out, "fen") {
		t.Errorf("statement table mixes fen into its yuan:\n%s", out)
	}
	for _, want := range []string{
		"at 6.80 yuan/kg", // the delivery's price
		"hold 30.00 yuan", // the payout's hold
		"30.00 yuan paid", // its settlement
		"83.95", "53.95", "Closing balance",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("statement table lacks %q:\n%s", want, out)
		}
	}
	// Every number with decimals in the table has exactly two.
	if bad := regexp.MustCompile(`\d\.\d(\D|$)|\d\.\d{3}`).FindString(out); bad != "" {
		t.Errorf("an amount not in yuan with two decimals (%q):\n%s", bad, out)
	}

	rows := readCSV(t, mustCLI(t, "ledger", "statement", addr, "--farmer=F1", "--csv"))
	var descs []string
	for _, r := range rows[1:] {
		descs = append(descs, r[9])
	}
	if joined := strings.Join(descs, "\n"); !strings.Contains(joined, "hold 3000 fen") || !strings.Contains(joined, "at 680 fen/kg") {
		t.Errorf("CSV descriptions should stay in fen, like its *_fen columns:\n%s", joined)
	}
}

// TestResolveRefusesWhatItCannotRecord: a --decision that is not one of
// the four is a usage error naming --decision and the allowed values; a
// break id no reconciliation reported is refused by the server, and the
// CLI says so plainly.
func TestResolveRefusesWhatItCannotRecord(t *testing.T) {
	t.Parallel()
	addr, _ := financeStack(t)
	_, err := cli(t, "reconcile", "resolve", addr, "--break", "Bdeadbeefdeadbeef", "--decision", "maybe", "--note", "x")
	if err == nil {
		t.Fatal("--decision maybe: no error")
	}
	msg := err.Error()
	for _, want := range []string{`--decision "maybe"`, "accepted", "provider_to_correct", "ledger_to_correct", "written_off"} {
		if !strings.Contains(msg, want) {
			t.Errorf("--decision maybe: %q does not say %q", msg, want)
		}
	}
	if strings.Contains(msg, "--break") || strings.Contains(msg, "--note") {
		t.Errorf("--decision maybe: %q blames flags that were given", msg)
	}
	for _, tc := range []struct{ args []string }{
		{[]string{"--decision", "accepted", "--note", "x"}},
		{[]string{"--break", "Bdeadbeefdeadbeef", "--note", "x"}},
		{[]string{"--break", "Bdeadbeefdeadbeef", "--decision", "accepted"}},
	} {
		_, err := cli(t, append([]string{"reconcile", "resolve", addr}, tc.args...)...)
		if err == nil {
			t.Errorf("%v: no error", tc.args)
			continue
		}
		for _, f := range []string{"--break", "--decision", "--note"} {
			if given := strings.Contains(strings.Join(tc.args, " "), f); given == strings.Contains(err.Error(), f) {
				t.Errorf("%v: %q (should name exactly the missing flag)", tc.args, err)
			}
		}
	}

	_, err = cli(t, "reconcile", "resolve", addr, "--break", "Bdeadbeefdeadbeef", "--decision", "accepted", "--note", "typo")
	if err == nil {
		t.Fatal("resolving a break no reconciliation reported: no error")
	}
	if msg := err.Error(); !strings.Contains(msg, "Bdeadbeefdeadbeef") || !strings.Contains(msg, "not found") || strings.Contains(msg, "rpc error") {
		t.Errorf("unknown break: %q, want a plain 'not found' naming the break", msg)
	}
}

// TestYuanText: every way the journal writes an amount in fen in a
// description becomes yuan with two decimals; other numbers stay.
func TestYuanText(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"payout PO-F1-1 requested: hold 10000 fen":                              "payout PO-F1-1 requested: hold 100.00 yuan",
		"payout PO-F1-1 failed (rejected): hold of 8015 fen released":           "payout PO-F1-1 failed (rejected): hold of 80.15 yuan released",
		"delivery D1: 12345 g xunwu-navel-orange at 680 fen/kg":                 "delivery D1: 12345 g xunwu-navel-orange at 6.80 yuan/kg",
		"premium adjustment for sale r1/L1: +24691 fen (Hema raised the price)": "premium adjustment for sale r1/L1: +246.91 yuan (Hema raised the price)",
		"premium adjustment for sale r1/L1: -5 fen (restated in revision 2)":    "premium adjustment for sale r1/L1: -0.05 yuan (restated in revision 2)",
		"premium for sale r1/L1: 1234567 g xunwu at hema, 100 fen/kg":           "premium for sale r1/L1: 1234567 g xunwu at hema, 1.00 yuan/kg",
		"payout PO-F2-7 settled by provider (SIM-1): 123456789 fen paid":        "payout PO-F2-7 settled by provider (SIM-1): 1,234,567.89 yuan paid",
		"fence of 12 fenders": "fence of 12 fenders",
	} {
		if got := yuanText(in); got != want {
			t.Errorf("yuanText(%q) = %q, want %q", in, got, want)
		}
	}
}
