package stack_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"

	"github.com/furrow/furrow/cmd/furrow/internal/stack"
)

// logBuffer is an io.Writer safe for the stack's goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// records returns the JSON log records written so far.
func (b *logBuffer) records(t testing.TB) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

// startLoggedStack starts the stack with its logs captured as JSON.
func startLoggedStack(t testing.TB, dir string) (clients, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	st, err := stack.Start(context.Background(), stack.Config{DataDir: dir, GRPCAddr: "127.0.0.1:0", Log: log})
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
	return clients{st: st, ledger: ledgerv1.NewLedgerServiceClient(conn)}, logs
}

// TestPayoutSagaRetryIsNotAnError: the provider times out on a payout's
// first instruction (it paid, but did not say so); the saga retries with
// the same payout id and the payout settles. A retry is expected work, so
// it is logged as a warning, never as an error: an ERROR is kept for a
// payout the saga gives up on.
func TestPayoutSagaRetryIsNotAnError(t *testing.T) {
	t.Parallel()
	c, logs := startLoggedStack(t, t.TempDir())
	finRegister(t, c, "FT", "Yongshun", "Yongshun Berry Tea Co-op", "SIM-TIMEOUT-6222")
	balanceAt(t, c, "FT", finDeliver(t, c, "FT", "D-FT", 2_000, 500, 1_000))
	finRequestPayout(t, c, "FT", "pay-FT", 600)
	finWaitPayout(t, c, "PO-FT-1", ledgerv1.PayoutStatus_PAYOUT_STATUS_SETTLED)

	var retries int
	for _, r := range logs.records(t) {
		text, _ := json.Marshal(r)
		timedOut := strings.Contains(string(text), "no answer in time")
		if r["level"] == "ERROR" {
			t.Errorf("ERROR logged though the payout settled: %s", text)
		}
		if timedOut && r["level"] == "WARN" {
			retries++
		}
	}
	if retries == 0 {
		t.Errorf("no WARN record of the retry after the provider's timeout; records:\n%v", logs.records(t))
	}
}
