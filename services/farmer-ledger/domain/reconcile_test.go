package domain_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/furrow/furrow/pkg/failure"

	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

const header = "provider_reference,payout_id,farmer_id,amount_fen,currency,status,settled_at\n"

func TestParseSettlement(t *testing.T) {
	t.Parallel()
	file := "\uFEFF" + "Payout_ID, provider_reference ,farmer_id,amount_fen,currency,status,settled_at,memo\n" +
		"PO-F1-1,SIM-1,F1,10000,CNY,settled,2026-11-28T10:00:00Z,x\n" +
		"\n" +
		"PO-F1-2,\"SIM-2\",F1,5030,CNY,FAILED,2026-11-28T11:00:00+08:00,\n"
	got, err := domain.ParseSettlement([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	want := []domain.SettlementLine{
		{Line: 2, ProviderRef: "SIM-1", PayoutID: "PO-F1-1", FarmerID: "F1", AmountFen: 10_000, Currency: "CNY", Status: "settled", SettledAt: time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)},
		{Line: 4, ProviderRef: "SIM-2", PayoutID: "PO-F1-2", FarmerID: "F1", AmountFen: 5_030, Currency: "CNY", Status: "failed", SettledAt: time.Date(2026, 11, 28, 3, 0, 0, 0, time.UTC)},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}

	// What we write, we read back.
	var buf bytes.Buffer
	if err := domain.FormatSettlement(&buf, got); err != nil {
		t.Fatal(err)
	}
	again, err := domain.ParseSettlement(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != 2 || again[1].AmountFen != 5_030 || again[1].Line != 3 {
		t.Fatalf("round trip: %+v", again)
	}
	if lines, err := domain.ParseSettlement([]byte(header)); err != nil || len(lines) != 0 {
		t.Fatalf("header only: %v, %v", lines, err)
	}
}

func TestParseSettlementErrorsNameTheLine(t *testing.T) {
	t.Parallel()
	ok := "SIM-1,PO-F1-1,F1,100,CNY,settled,2026-11-28T10:00:00Z\n"
	for _, tc := range []struct {
		name, file, want string
	}{
		{"empty", "", "empty file"},
		{"missing column", "provider_reference,payout_id,farmer_id,amount_fen,currency,status\n", "line 1: header lacks column \"settled_at\""},
		{"repeated column", strings.TrimSuffix(header, "\n") + ",status\n", "line 1: column \"status\" appears twice"},
		{"decimal amount", header + ok + "SIM-2,PO-F1-2,F1,100.50,CNY,settled,2026-11-28T10:00:00Z\n", "line 3: amount_fen: \"100.50\" is not a whole number"},
		{"zero amount", header + "SIM-2,PO-F1-2,F1,0,CNY,settled,2026-11-28T10:00:00Z\n", "line 2: amount_fen: must be positive"},
		{"negative amount", header + "SIM-2,PO-F1-2,F1,-5,CNY,settled,2026-11-28T10:00:00Z\n", "line 2: amount_fen: must be positive"},
		{"too few fields", header + ok + ok + "SIM-2,PO-F1-2,F1\n", "line 4: 3 fields, the header has 7"},
		{"bad status", header + "SIM-2,PO-F1-2,F1,5,CNY,paid-ish,2026-11-28T10:00:00Z\n", "line 2: status: \"paid-ish\""},
		{"bad time", header + "SIM-2,PO-F1-2,F1,5,CNY,settled,28/11/2026\n", "line 2: settled_at"},
		{"bad currency", header + "SIM-2,PO-F1-2,F1,5,rmb,settled,2026-11-28T10:00:00Z\n", "line 2: currency"},
		{"empty payout id", header + "SIM-2,,F1,5,CNY,settled,2026-11-28T10:00:00Z\n", "line 2: payout_id: is empty"},
		{"broken quote", header + ok + "\"SIM-2,PO-F1-2,F1,5,CNY,settled,2026-11-28T10:00:00Z\n", "line 3"},
		{"binary", "\xff\xfe\x00", "not UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := domain.ParseSettlement([]byte(tc.file))
			if !errors.Is(err, domain.ErrMalformedSettlement) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrMalformedSettlement mentioning %q", err, tc.want)
			}
		})
	}
}

var (
	day  = time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	noon = day.Add(12 * time.Hour)
)

// cleanSide is a ledger and a settlement file that agree: two settled
// payouts and one failed, plus one still in flight (not in the file).
func cleanSide() ([]domain.LedgerPayout, []domain.SettlementLine) {
	ledger := []domain.LedgerPayout{
		{ID: "PO-F1-1", FarmerID: "F1", AmountFen: 10_000, Currency: "CNY", Status: domain.PayoutStatusSettled, ProviderRef: "SIM-1", CompletedAt: noon},
		{ID: "PO-F1-2", FarmerID: "F1", AmountFen: 5_030, Currency: "CNY", Status: domain.PayoutStatusFailed, ProviderRef: "SIM-2", CompletedAt: noon},
		{ID: "PO-F2-1", FarmerID: "F2", AmountFen: 777, Currency: "CNY", Status: domain.PayoutStatusSettled, ProviderRef: "SIM-3", CompletedAt: noon},
		{ID: "PO-F2-2", FarmerID: "F2", AmountFen: 100, Currency: "CNY", Status: domain.PayoutStatusSent, ProviderRef: "SIM-4"},
	}
	lines := []domain.SettlementLine{
		{Line: 2, ProviderRef: "SIM-1", PayoutID: "PO-F1-1", FarmerID: "F1", AmountFen: 10_000, Currency: "CNY", Status: "settled", SettledAt: noon},
		{Line: 3, ProviderRef: "SIM-2", PayoutID: "PO-F1-2", FarmerID: "F1", AmountFen: 5_030, Currency: "CNY", Status: "failed", SettledAt: noon},
		{Line: 4, ProviderRef: "SIM-3", PayoutID: "PO-F2-1", FarmerID: "F2", AmountFen: 777, Currency: "CNY", Status: "settled", SettledAt: noon},
	}
	return ledger, lines
}

// row is the part of a reconciliation item a test states by hand.
type row struct {
	Result domain.ReconResult
	Payout string
	Line   int
}

func rows(r domain.Reconciliation) []row {
	var out []row
	for _, i := range r.Items {
		out = append(out, row{i.Result, i.PayoutID, i.Line})
	}
	return out
}

func TestReconcileCleanFileHasNoBreaks(t *testing.T) {
	t.Parallel()
	ledger, lines := cleanSide()
	got := mustReconcile(t, ledger, lines, domain.Period{From: day, To: day.Add(24 * time.Hour)})
	want := []row{{domain.ReconMatched, "PO-F1-1", 2}, {domain.ReconMatched, "PO-F1-2", 3}, {domain.ReconMatched, "PO-F2-1", 4}}
	if diff := cmp.Diff(want, rows(got)); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	if got.SettlementLines != 3 || got.SettlementFen != 15_807 || got.LedgerPayouts != 3 || got.LedgerFen != 15_807 {
		t.Fatalf("totals = %+v", got)
	}
}

func TestReconcileFindsEachInjectedBreak(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		mutate func([]domain.SettlementLine) []domain.SettlementLine
		want   row
	}{
		{"missing line", func(ls []domain.SettlementLine) []domain.SettlementLine { return ls[1:] },
			row{domain.ReconMissingInSettlement, "PO-F1-1", 0}},
		{"duplicate", func(ls []domain.SettlementLine) []domain.SettlementLine {
			d := ls[2]
			d.Line = 5
			return append(ls, d)
		}, row{domain.ReconDuplicate, "PO-F2-1", 5}},
		{"duplicate provider reference", func(ls []domain.SettlementLine) []domain.SettlementLine {
			d := ls[2]
			d.Line, d.PayoutID = 5, "PO-F2-9"
			return append(ls, d)
		}, row{domain.ReconDuplicate, "PO-F2-9", 5}},
		{"amount off by one fen", func(ls []domain.SettlementLine) []domain.SettlementLine {
			ls[0].AmountFen++
			return ls
		}, row{domain.ReconAmountMismatch, "PO-F1-1", 2}},
		{"currency", func(ls []domain.SettlementLine) []domain.SettlementLine {
			ls[0].Currency = "USD"
			return ls
		}, row{domain.ReconAmountMismatch, "PO-F1-1", 2}},
		{"unknown payout id", func(ls []domain.SettlementLine) []domain.SettlementLine {
			return append(ls, domain.SettlementLine{Line: 5, ProviderRef: "SIM-9", PayoutID: "PO-F9-1", FarmerID: "F9", AmountFen: 1, Currency: "CNY", Status: "settled", SettledAt: noon})
		}, row{domain.ReconMissingInLedger, "PO-F9-1", 5}},
		{"status", func(ls []domain.SettlementLine) []domain.SettlementLine {
			ls[1].Status = "settled"
			return ls
		}, row{domain.ReconStatusMismatch, "PO-F1-2", 3}},
		{"in flight in the ledger, settled in the file", func(ls []domain.SettlementLine) []domain.SettlementLine {
			return append(ls, domain.SettlementLine{Line: 5, ProviderRef: "SIM-4", PayoutID: "PO-F2-2", FarmerID: "F2", AmountFen: 100, Currency: "CNY", Status: "settled", SettledAt: noon})
		}, row{domain.ReconStatusMismatch, "PO-F2-2", 5}},
		{"other farmer", func(ls []domain.SettlementLine) []domain.SettlementLine {
			ls[2].FarmerID = "F1"
			return ls
		}, row{domain.ReconFarmerMismatch, "PO-F2-1", 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ledger, lines := cleanSide()
			got := mustReconcile(t, ledger, tc.mutate(lines), domain.Period{})
			var breaks []row
			for _, r := range rows(got) {
				if r.Result != domain.ReconMatched {
					breaks = append(breaks, r)
				}
			}
			if diff := cmp.Diff([]row{tc.want}, breaks); diff != "" {
				t.Fatalf("breaks (-want +got):\n%s", diff)
			}
			// The same difference gets the same id on the next run.
			ledger, lines = cleanSide()
			again := mustReconcile(t, ledger, tc.mutate(lines), domain.Period{})
			if a, b := breakIDs(got), breakIDs(again); !cmp.Equal(a, b) || len(a) != 1 {
				t.Fatalf("break ids differ between runs or are missing: %v vs %v", a, b)
			}
		})
	}
}

func breakIDs(r domain.Reconciliation) []string {
	var ids []string
	for _, i := range r.Items {
		if i.BreakID != "" {
			ids = append(ids, i.BreakID)
		}
	}
	return ids
}

// TestReconcilePeriod: a line is in scope by the file's time or by the
// ledger's completion time, so a payout near the boundary is no false break.
func TestReconcilePeriod(t *testing.T) {
	t.Parallel()
	ledger, lines := cleanSide()
	lines[0].SettledAt = day.Add(-time.Second) // the file dates it the day before
	next := day.Add(24 * time.Hour)
	lines = append(lines, domain.SettlementLine{Line: 5, ProviderRef: "SIM-8", PayoutID: "PO-F8-1", FarmerID: "F8", AmountFen: 1, Currency: "CNY", Status: "settled", SettledAt: next})
	got := mustReconcile(t, ledger, lines, domain.Period{From: day, To: next})
	want := []row{{domain.ReconMatched, "PO-F1-1", 2}, {domain.ReconMatched, "PO-F1-2", 3}, {domain.ReconMatched, "PO-F2-1", 4}}
	if diff := cmp.Diff(want, rows(got)); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	if got := mustReconcile(t, ledger, lines, domain.Period{From: next}); len(got.Items) != 1 || got.Items[0].Result != domain.ReconMissingInLedger {
		t.Fatalf("next day: %+v", rows(got))
	}
}

func TestResolveBreak(t *testing.T) {
	t.Parallel()
	found := domain.BreakState{Found: true}
	for _, tc := range []struct {
		name, id, decision, note string
		state                    domain.BreakState
		want                     failure.Kind
	}{
		{"ok", "B0123456789abcdef", "accepted", "timing", found, 0},
		{"bad id", "B123", "accepted", "timing", found, failure.KindInvalid},
		{"no decision", "B0123456789abcdef", "", "timing", found, failure.KindInvalid},
		{"no note", "B0123456789abcdef", "written_off", "  ", found, failure.KindInvalid},
		{"twice", "B0123456789abcdef", "accepted", "timing", domain.BreakState{Found: true, Resolved: true}, failure.KindAlreadyExists},
		{"never reported", "Bdeadbeefdeadbeef", "accepted", "timing", domain.BreakState{}, failure.KindNotFound},
	} {
		_, err := domain.ResolveBreak(tc.id, tc.decision, tc.note, tc.state)
		if failure.KindOf(err) != tc.want {
			t.Errorf("%s: err = %v, want kind %v", tc.name, err, tc.want)
		}
	}
}

func TestTrialBalance(t *testing.T) {
	t.Parallel()
	accounts := []domain.AccountTotal{
		{Account: "farmer:F1:payable", CreditFen: 100},
		{Account: "farmer:F2:payable", CreditFen: 50},
		{Account: "farmer:F1:held", DebitFen: 30, CreditFen: 30},
		{Account: "platform:procurement_expense", DebitFen: 150},
	}
	tb, err := domain.NewTrialBalance(accounts, false)
	if err != nil {
		t.Fatal(err)
	}
	want := domain.TrialBalance{
		Accounts: []domain.AccountTotal{
			{Account: "farmer:*:held", DebitFen: 30, CreditFen: 30},
			{Account: "farmer:*:payable", CreditFen: 150},
			{Account: "platform:procurement_expense", DebitFen: 150},
		},
		DebitFen: 180, CreditFen: 180,
	}
	if diff := cmp.Diff(want, tb); diff != "" || !tb.Balanced() {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	accounts[0].CreditFen = 101
	if tb, _ := domain.NewTrialBalance(accounts, true); tb.Balanced() || len(tb.Accounts) != 4 {
		t.Fatalf("an unbalanced journal: %+v", tb)
	}
	if _, err := domain.NewTrialBalance([]domain.AccountTotal{{Account: "a", DebitFen: 1 << 62}, {Account: "b", DebitFen: 1 << 62}}, false); err == nil {
		t.Fatal("overflowing sums: no error")
	}
}

// TestAmountMismatchDetailIsInYuan: the detail people read beside the
// yuan columns labels its amounts: yuan with two decimals and the
// currency, never fen labelled as CNY.
func TestAmountMismatchDetailIsInYuan(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	ledger := []domain.LedgerPayout{{ID: "PO-F1-1", FarmerID: "F1", AmountFen: 123_400, Currency: "CNY",
		Status: domain.PayoutStatusSettled, ProviderRef: "SIM-1", CompletedAt: at}}
	for _, tc := range []struct {
		fen      int64
		currency string
		want     string
	}{
		{123_401, "CNY", "the file says 1,234.01 CNY, the ledger 1,234.00 CNY (difference +0.01 CNY)"},
		{23_400, "CNY", "the file says 234.00 CNY, the ledger 1,234.00 CNY (difference -1,000.00 CNY)"},
		{123_400, "USD", "the file says 1,234.00 USD, the ledger 1,234.00 CNY (different currencies)"},
	} {
		lines := []domain.SettlementLine{{Line: 2, ProviderRef: "SIM-1", PayoutID: "PO-F1-1", FarmerID: "F1",
			AmountFen: tc.fen, Currency: tc.currency, Status: "settled", SettledAt: at}}
		rec := mustReconcile(t, ledger, lines, domain.Period{})
		if len(rec.Items) != 1 || rec.Items[0].Result != domain.ReconAmountMismatch || rec.Items[0].Detail != tc.want {
			t.Errorf("%d %s: %+v, want detail %q", tc.fen, tc.currency, rec.Items, tc.want)
		}
	}
}
