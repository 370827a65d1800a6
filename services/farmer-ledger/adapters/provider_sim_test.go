package adapters_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/furrow/furrow/services/farmer-ledger/adapters"
	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

func instruction(payoutID, account string, amount int64) domain.PayoutInstruction {
	return domain.PayoutInstruction{PayoutID: payoutID, FarmerID: "F1", Account: account, AmountFen: amount, Currency: "CNY"}
}

// clock returns 10:00, 10:01, … on successive calls.
func clock() func() time.Time {
	t := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	return func() time.Time { t = t.Add(time.Minute); return t.Add(-time.Minute) }
}

func TestSimulatedProviderBehaviours(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		account string
		// statuses after Send, then after each Status poll.
		want    []domain.ProviderStatus
		timeout bool
	}{
		{"6222020000000001", []domain.ProviderStatus{domain.ProviderSettled, domain.ProviderSettled}, false},
		{"SIM-FAIL-1", []domain.ProviderStatus{domain.ProviderFailed, domain.ProviderFailed}, false},
		{"sim-late", []domain.ProviderStatus{domain.ProviderAccepted, domain.ProviderAccepted, domain.ProviderSettled, domain.ProviderSettled}, false},
		{"SIM_LATE_FAIL", []domain.ProviderStatus{domain.ProviderAccepted, domain.ProviderAccepted, domain.ProviderFailed}, false},
		{"SIM-TIMEOUT", []domain.ProviderStatus{domain.ProviderSettled}, true},
	} {
		t.Run(tc.account, func(t *testing.T) {
			t.Parallel()
			sim, err := adapters.NewSimulatedProvider(adapters.SimulatedProviderConfig{Now: clock()})
			if err != nil {
				t.Fatal(err)
			}
			in := instruction("PO-F1-1", tc.account, 1_000)
			r, err := sim.Send(ctx, in)
			if tc.timeout {
				if !errors.Is(err, adapters.ErrProviderTimeout) {
					t.Fatalf("first send: %v, want a timeout", err)
				}
				r, err = sim.Send(ctx, in) // the retry carries the same payout id
			}
			if err != nil {
				t.Fatal(err)
			}
			got := []domain.ProviderStatus{r.Status}
			for len(got) < len(tc.want) {
				r, err := sim.Status(ctx, "PO-F1-1")
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, r.Status)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("statuses (-want +got):\n%s", diff)
			}
			if len(r.Reference) != len("SIM-")+12 || r.Reference[:4] != "SIM-" {
				t.Fatalf("reference %q, want SIM- and 12 hex digits", r.Reference)
			}
		})
	}
}

// TestSimulatedProviderPaysOnceAndWritesItsFile: retries, a restart and a
// reused payout id never make a second payment; the settlement file lists
// every completed payout once.
func TestSimulatedProviderPaysOnceAndWritesItsFile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	sim, err := adapters.NewSimulatedProvider(adapters.SimulatedProviderConfig{Dir: dir, Now: clock()})
	if err != nil {
		t.Fatal(err)
	}
	first, err := sim.Send(ctx, instruction("PO-F1-1", "6222", 1_000))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sim.Send(ctx, instruction("PO-F1-2", "SIM-FAIL", 250)); err != nil {
		t.Fatal(err)
	}
	if _, err := sim.Send(ctx, instruction("PO-F1-3", "SIM-LATE", 70)); err != nil {
		t.Fatal(err)
	}
	if _, err := sim.Send(ctx, instruction("PO-F1-1", "6222", 999)); !errors.Is(err, adapters.ErrInstructionMismatch) {
		t.Fatalf("payout id reused for another amount: %v", err)
	}

	// A restarted provider remembers: the retry is answered, not paid.
	again, err := adapters.NewSimulatedProvider(adapters.SimulatedProviderConfig{Dir: dir, Now: clock()})
	if err != nil {
		t.Fatal(err)
	}
	retry, err := again.Send(ctx, instruction("PO-F1-1", "6222", 1_000))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(first, retry); diff != "" {
		t.Fatalf("retry after restart (-first +retry):\n%s", diff)
	}
	if _, err := again.Status(ctx, "PO-F9-9"); !errors.Is(err, adapters.ErrUnknownPayout) {
		t.Fatalf("status of an unknown payout: %v", err)
	}

	data, err := os.ReadFile(filepath.Join(dir, adapters.SettlementFile))
	if err != nil {
		t.Fatal(err)
	}
	want := "provider_reference,payout_id,farmer_id,amount_fen,currency,status,settled_at\n" +
		first.Reference + ",PO-F1-1,F1,1000,CNY,settled,2026-11-28T10:00:00Z\n" +
		ref(t, again, "PO-F1-2") + ",PO-F1-2,F1,250,CNY,failed,2026-11-28T10:01:00Z\n"
	if diff := cmp.Diff(want, string(data)); diff != "" {
		t.Fatalf("settlement file (-want +got):\n%s", diff)
	}
	// The file is one the ledger's reconciliation reads.
	if lines, err := domain.ParseSettlement(data); err != nil || len(lines) != 2 {
		t.Fatalf("parse own file: %v, %v", lines, err)
	}
}

func ref(t *testing.T, sim *adapters.SimulatedProvider, payoutID string) string {
	t.Helper()
	r, err := sim.Status(context.Background(), payoutID)
	if err != nil {
		t.Fatal(err)
	}
	return r.Reference
}

// TestSimulatedProviderKeepsNoAccountNumber: the simulator's files live in
// the data directory, beside the ledger's: they hold the payout reference
// and a masked account, never the account number, and a restarted
// simulator still behaves as the account asked (late, then failed).
func TestSimulatedProviderKeepsNoAccountNumber(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	sim, err := adapters.NewSimulatedProvider(adapters.SimulatedProviderConfig{Dir: dir, Now: clock()})
	if err != nil {
		t.Fatal(err)
	}
	const paid, late = "6222020000000101", "SIM-LATE-FAIL-6222020000000102"
	if _, err := sim.Send(ctx, instruction("PO-F1-1", paid, 1_000)); err != nil {
		t.Fatal(err)
	}
	if _, err := sim.Send(ctx, instruction("PO-F1-2", late, 500)); err != nil {
		t.Fatal(err)
	}
	again, err := adapters.NewSimulatedProvider(adapters.SimulatedProviderConfig{Dir: dir, Now: clock()})
	if err != nil {
		t.Fatal(err)
	}
	var r domain.ProviderReceipt
	for range adapters.DefaultLateAfterPolls {
		if r, err = again.Status(ctx, "PO-F1-2"); err != nil {
			t.Fatal(err)
		}
	}
	if r.Status != domain.ProviderFailed {
		t.Errorf("late failing payout after restart: %v, want failed", r.Status)
	}
	if _, err := again.Send(ctx, instruction("PO-F1-1", paid, 1_000)); err != nil {
		t.Errorf("retry after restart: %v", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for _, number := range []string{paid, "6222020000000102"} {
			if strings.Contains(string(data), number) {
				t.Errorf("%s holds the account number %s", e.Name(), number)
			}
		}
	}
}
