package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"
	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
	procurementevents "github.com/furrow/furrow/proto/furrow/procurement/events/v1"
	typesv1 "github.com/furrow/furrow/proto/furrow/types/v1"

	"github.com/furrow/furrow/pkg/eventstore"

	"github.com/furrow/furrow/cmd/furrow/internal/stack"
)

// cli runs the furrow command in-process, as main would.
func cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := run(ctx, args, &out, &errOut, func(string) string { return "" })
	return out.String() + errOut.String(), err
}

func mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := cli(t, args...)
	if err != nil {
		t.Fatalf("furrow %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func appendEvent(t *testing.T, st *stack.Stack, stream, subject, key string, msg proto.Message) *typesv1.Position {
	t.Helper()
	ev, err := eventstore.NewEvent(subject, msg, eventstore.Metadata{Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := eventstore.New(st.JetStream()).Append(context.Background(), eventstore.AppendRequest{
		Stream: stream, Aggregate: subject, IdempotencyKey: key, Events: []eventstore.Event{ev}})
	if err != nil {
		t.Fatal(err)
	}
	return &typesv1.Position{Stream: res.Stream, Sequence: res.Last}
}

// TestFinanceCommands drives the finance CLI against a running stack: a
// farmer delivers and is paid out, then trial balance, statement and
// reconciliation run in every format, a break is resolved, and a journal
// made unbalanced behind the ledger's back fails the trial balance.
func TestFinanceCommands(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st, err := stack.Start(context.Background(), stack.Config{DataDir: dir, GRPCAddr: "127.0.0.1:0"})
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
		&procurementevents.DeliveryRecorded{DeliveryId: "D1", FarmerId: "F1", NetGrams: 12_345, PriceFenPerKg: 680, AmountFen: 8_395})
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
	addr := "--addr=" + st.GRPCAddr()

	if out := mustCLI(t, "ledger", "trial-balance", addr); !strings.Contains(out, "Balanced: yes — 3 entries") || !strings.Contains(out, "provider:settlement") {
		t.Fatalf("trial balance table:\n%s", out)
	}
	rows := readCSV(t, mustCLI(t, "ledger", "trial-balance", addr, "--format=csv", "--by-farmer"))
	if last := rows[len(rows)-1]; last[0] != "TOTAL" || last[1] != "17395" || last[2] != "17395" || last[3] != "0" {
		t.Fatalf("trial balance CSV total: %v", last) // 8,395 + 3,000 + 3,000 × 2
	}

	rows = readCSV(t, mustCLI(t, "ledger", "statement", addr, "--farmer", "F1", "--from", "2000-01-01", "--csv"))
	if len(rows) != 1+1+3+1 || rows[1][0] != "opening" || rows[5][0] != "closing" {
		t.Fatalf("statement CSV rows: %v", rows)
	}
	// Columns 10..14: purchases, premiums, held, paid, available.
	if got := rows[5][10:15]; strings.Join(got, ",") != "8395,0,0,3000,5395" {
		t.Fatalf("closing row %v", got)
	}
	if out := mustCLI(t, "ledger", "statement", addr, "--farmer=F1"); !strings.Contains(out, "Closing balance") || !strings.Contains(out, "53.95") {
		t.Fatalf("statement table:\n%s", out)
	}

	settlement := filepath.Join(dir, "provider", "settlement.csv")
	var rec struct {
		Items  []map[string]any `json:"items"`
		Totals struct {
			OpenBreaks int `json:"open_breaks"`
		} `json:"totals"`
	}
	if err := json.Unmarshal([]byte(mustCLI(t, "reconcile", addr, "--settlement", settlement, "--format=json")), &rec); err != nil {
		t.Fatal(err)
	}
	if len(rec.Items) != 1 || rec.Items[0]["result"] != "RECONCILIATION_RESULT_MATCHED" || rec.Totals.OpenBreaks != 0 {
		t.Fatalf("reconciliation JSON: %+v", rec)
	}

	// A line the ledger does not know: a break, open, then resolved.
	data, err := os.ReadFile(settlement)
	if err != nil {
		t.Fatal(err)
	}
	withBreak := filepath.Join(t.TempDir(), "with-break.csv")
	if err := os.WriteFile(withBreak, append(data, "SIM-X,PO-F9-1,F9,100,CNY,settled,2026-11-28T10:00:00Z\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := cli(t, "reconcile", addr, "--settlement", withBreak, "--fail-on-open"); err == nil {
		t.Fatal("--fail-on-open with an open break: no error")
	}
	rows = readCSV(t, mustCLI(t, "reconcile", addr, "--settlement", withBreak, "--format=csv"))
	var breakID string
	for _, r := range rows {
		if r[0] == "missing_in_ledger" {
			breakID = r[2]
		}
	}
	if breakID == "" || rows[len(rows)-1][0] != "total:farmer_mismatch" {
		t.Fatalf("reconciliation CSV: %v", rows)
	}
	if out := mustCLI(t, "reconcile", "resolve", addr, "--break", breakID, "--decision", "provider_to_correct", "--note", "not ours"); !strings.Contains(out, "resolved") {
		t.Fatalf("resolve: %s", out)
	}
	if out := mustCLI(t, "reconcile", addr, "--settlement", withBreak); !strings.Contains(out, "resolved: provider_to_correct") || !strings.Contains(out, "Breaks: 0 open, 1 resolved.") {
		t.Fatalf("second reconciliation:\n%s", out)
	}

	bad := filepath.Join(t.TempDir(), "bad.csv")
	if err := os.WriteFile(bad, append(data, "SIM-Y,PO-F1-2,F1,ten,CNY,settled,2026-11-28T10:00:00Z\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := cli(t, "reconcile", addr, "--settlement", bad); err == nil || !strings.Contains(err.Error(), "line 3: amount_fen") {
		t.Fatalf("malformed file: %v", err)
	}

	// Help and usage mistakes.
	if _, err := cli(t, "ledger", "statement", "-h"); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	for _, args := range [][]string{{"ledger"}, {"ledger", "nope"}, {"ledger", "statement", addr}, {"reconcile", addr}, {"ledger", "trial-balance", "--format=xml"}} {
		if _, err := cli(t, args...); err == nil {
			t.Errorf("furrow %v: no error", args)
		} else if code := exitCode(err); code != exitUsage {
			t.Errorf("furrow %v: exit code %d (%v), want %d (usage)", args, code, err, exitUsage)
		}
	}

	// An entry that does not balance, written past the ledger: the trial
	// balance still prints, and fails.
	pos = appendEvent(t, st, "LEDGER", "ledger.farmer.F1.entry_posted", "bogus", &ledgerevents.EntryPosted{
		EntryId: "E-bogus", FarmerId: "F1", Source: &ledgerevents.SourceRef{Stream: "TEST", Sequence: 1, EventId: "bogus"},
		Lines: []*ledgerevents.EntryLine{{Account: "farmer:F1:payable", CreditFen: 10}, {Account: "platform:procurement_expense", DebitFen: 9}}})
	if _, err := ledger.GetPayout(ctx, &ledgerv1.GetPayoutRequest{PayoutId: "PO-F1-1", MinPosition: pos}); err != nil {
		t.Fatal(err)
	}
	out, err := cli(t, "ledger", "trial-balance", addr)
	if err == nil || !strings.Contains(err.Error(), "does not balance") || !strings.Contains(out, "Balanced: NO") {
		t.Fatalf("unbalanced journal: %v\n%s", err, out)
	}
	if code := exitCode(err); code != exitProblem {
		t.Errorf("unbalanced journal: exit code %d, want %d (a check found a problem)", code, exitProblem)
	}
}

func readCSV(t *testing.T, s string) [][]string {
	t.Helper()
	r := csv.NewReader(strings.NewReader(s))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil {
		t.Fatalf("%v:\n%s", err, s)
	}
	return rows
}
