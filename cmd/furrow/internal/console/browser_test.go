package console_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"

	"github.com/furrow/furrow/cmd/furrow/internal/demo"
	"github.com/furrow/furrow/cmd/furrow/internal/stack"
)

// chromium finds the browser: FURROW_CHROMIUM (scripts/chromium.sh prints
// it and installs Debian's chromium when missing), else chromium on PATH.
// Under CI a missing browser fails the test rather than skipping it.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("FURROW_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no Chromium: make test installs it with scripts/chromium.sh (FURROW_CHROMIUM)")
	}
	t.Skip("no Chromium: run scripts/chromium.sh (or set FURROW_CHROMIUM) to run the console's browser tests")
	return ""
}

// artefacts is where screenshots go: $FURROW_ARTEFACTS/console when set
// (CI keeps it), else the test's temporary directory.
func artefacts(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if a := os.Getenv("FURROW_ARTEFACTS"); a != "" {
		dir = filepath.Join(a, "console")
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestConsoleInABrowser drives the console of `furrow dev` with the demo
// data in a real Chromium: it opens every page and checks what it shows,
// rebuilds a projection and watches the progress bar reach 100 %, diffs
// and swaps it, uploads a settlement file with an injected break and
// resolves the break, previews a rule revision, and takes a screenshot of
// each step.
func TestConsoleInABrowser(t *testing.T) {
	exe := chromium(t)
	shots := artefacts(t)
	dataDir := t.TempDir()
	st, err := stack.Start(context.Background(), stack.Config{DataDir: dataDir, GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st.Shutdown(ctx)
	})
	base := "http://" + st.HTTPAddr()
	conn, err := grpc.NewClient(st.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := demo.Load(ctx, conn); err != nil {
		t.Fatal(err)
	}
	// A payout the provider settles, for reconciliation.
	ledger := ledgerv1.NewLedgerServiceClient(conn)
	po, err := ledger.RequestPayout(ctx, &ledgerv1.RequestPayoutRequest{RequestId: "browser-po-1", FarmerId: "XW-001",
		Amount: &ledgerv1.RequestPayoutRequest_AmountFen{AmountFen: 10_000}})
	if err != nil {
		t.Fatal(err)
	}
	waitSettled(ctx, t, ledger, po.GetPayout().GetPayoutId())
	settlement, err := os.ReadFile(filepath.Join(dataDir, "provider", "settlement.csv"))
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(settlement), ",10000,CNY,", ",10050,CNY,", 1)
	if broken == string(settlement) {
		t.Fatalf("settlement file has no 10000 fen line to alter:\n%s", settlement)
	}
	upload := filepath.Join(t.TempDir(), "settlement-with-break.csv")
	if err := os.WriteFile(upload, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}

	actx, acancel := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1400, 1000))...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	// Start the browser on bctx itself: the first run's context owns it,
	// and each step's context below has its own deadline.
	if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start Chromium (%s): %v", exe, err)
	}

	step := func(name string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, scancel := context.WithTimeout(bctx, 30*time.Second)
		defer scancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			body, _ := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("main")))
			t.Fatalf("%s: %v\npage text:\n%s", name, err, body)
		}
		png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100)) // quality 100: PNG
		if err != nil {
			t.Fatalf("%s: screenshot: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), png, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// has waits for texts to appear in the page's main element.
	has := func(texts ...string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			for {
				// A form post navigates: until the next page has loaded,
				// reading it may fail; try again.
				body, err := chromedp.Text(chromedp.CSS("main"))(ctx, tg)
				missing := ""
				if err != nil {
					missing = "(page loading: " + err.Error() + ")"
				}
				for _, s := range texts {
					if missing == "" && !strings.Contains(body, s) {
						missing = s
						break
					}
				}
				if missing == "" {
					return nil
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("page never showed %q; it shows:\n%s", missing, body)
				case <-time.After(100 * time.Millisecond):
				}
			}
		})
	}
	// until waits for a JavaScript predicate.
	until := func(expr string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			for {
				ok, err := chromedp.Evaluate[bool](expr)(ctx, tg)
				if err == nil && ok {
					return nil
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("%s never held (last error %v)", expr, err)
				case <-time.After(100 * time.Millisecond):
				}
			}
		})
	}
	chartDrawn := func(id string) chromedp.Action[chromedp.Void] {
		return until(`typeof Chart !== "undefined" && Chart.getChart(document.getElementById("` + id + `")) !== undefined`)
	}
	textIs := func(id, want string) chromedp.Action[chromedp.Void] {
		return until(`(document.getElementById("` + id + `") || {}).textContent === "` + want + `"`)
	}
	noErrors := chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		n, err := chromedp.Evaluate[int](`document.querySelectorAll("main > .error").length`)(ctx, tg)
		if err != nil {
			return err
		}
		if n > 0 {
			body, _ := chromedp.Text(chromedp.CSS("main"))(ctx, tg)
			return fmt.Errorf("the page shows %d errors:\n%s", n, body)
		}
		return nil
	})

	step("01-overview", chromedp.Navigate(base+"/"),
		has("Streams", "PROCUREMENT", "LEDGER", "ledger_balances", "idle"), textIs("dlq-count", "0"), noErrors)
	step("02-events", chromedp.Navigate(base+"/events?stream=LEDGER"), has("FarmerRegistered", "ledger.farmer.QL-001"), noErrors)
	// Follow a journal entry's causation link to the delivery that caused it.
	step("03-event", chromedp.Navigate(base+"/events?stream=LEDGER&type=EntryPosted"), has("EntryPosted"),
		chromedp.Click(chromedp.CSS(`table.events tbody tr td a`)), has("Envelope", "Payload", "Correlation", "Causation"), noErrors)
	step("04-causation", chromedp.Click(chromedp.CSS(`a[href^="/events/by-id/"]`)),
		has("Event PROCUREMENT #", "DeliveryRecorded"), noErrors)
	step("05-projections", chromedp.Navigate(base+"/projections"), has("ledger_balances", "procurement_purchases", "brand_premiums"), noErrors)
	step("06-projection-rebuilt", chromedp.Navigate(base+"/projections/ledger_balances"), has("Copies", "Rebuild into a shadow copy"),
		chromedp.Click(chromedp.ID("rebuild")),
		chromedp.WaitVisible(chromedp.CSS(`.progress-text[data-pct="100"]`)), has("caught up"), noErrors)
	step("07-projection-diff", chromedp.Navigate(base+"/projections/ledger_balances/diff"), has("identical"), noErrors)
	step("08-projection-swapped", chromedp.Navigate(base+"/projections/ledger_balances"), chromedp.WaitEnabled(chromedp.ID("swap")), chromedp.Submit(chromedp.CSS(`form[action$="/swap"]`)),
		has("is live", "retired"), noErrors)
	step("09-dead-letters", chromedp.Navigate(base+"/dead-letters"), has("No parked events"), noErrors)
	step("10-farmers", chromedp.Navigate(base+"/farmers"), has("QL-001", "Wang Fang", "Xunwu"), noErrors)
	step("11-farmer", chromedp.Navigate(base+"/farmers/XW-001"),
		has("Balance", "Available", "Opening balance", "Closing balance", "Deliveries", "Premiums", "Payouts", "settled"), noErrors)
	step("12-finance", chromedp.Navigate(base+"/finance"), has("Trial balance", "balanced", "Reconciliation"), noErrors)
	step("13-reconciliation-break", chromedp.SetUploadFiles(chromedp.ID("settlement"), []string{upload}),
		chromedp.Click(chromedp.ID("reconcile")), has("amount mismatch", "the file says 100.50 CNY"), textIs("open-breaks", "1"), noErrors)
	step("14-reconciliation-resolved", chromedp.SendKeys(chromedp.CSS(`form.resolve input[name="note"]`), "provider ticket 4711: fee deducted twice"),
		chromedp.Submit(chromedp.CSS(`form.resolve`)), has("resolved", "provider ticket 4711"),
		textIs("open-breaks", "0"), textIs("resolved-breaks", "1"), noErrors)
	step("15-brands", chromedp.Navigate(base+"/brands"), has("xunwu-navel-orange", "Qinglong chestnut"), noErrors)
	step("16-brand", chromedp.Navigate(base+"/brands/xunwu-navel-orange"), has("Premium per kilogram by month", "Hema Fresh", "hema-2025-26"),
		chartDrawn("premium-chart"), noErrors)
	step("17-brand-preview", chromedp.SetValue(chromedp.CSS(`input[name="fen_per_kg"]`), "150"), chromedp.Submit(chromedp.CSS(`form[action*="/preview"]`)),
		has("would re-rate", "XW-001", "Premium after"), chartDrawn("premium-chart"), noErrors)
	step("18-brand-revised", chromedp.SendKeys(chromedp.CSS(`input[name="reason"]`), "Hema raised the shelf price"),
		chromedp.Submit(chromedp.CSS(`form[action$="/revise"]`)), has("revised to version 2", "3 sales re-rated"),
		has("Hema raised the shelf price"), noErrors)
	step("19-procurement", chromedp.Navigate(base+"/procurement"), has("baba-2025", "Budget burn", "Progress by county", "Progress by product", "Qinglong"),
		chartDrawn("burn-chart"), chartDrawn("county-chart"), chartDrawn("product-chart"), noErrors)

	// The statement downloads as CSV.
	res, err := http.Get(base + "/farmers/XW-001/statement.csv")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(string(b), "row,sequence,posted_at") || !strings.Contains(string(b), "closing,") {
		t.Errorf("statement.csv: %d\n%s", res.StatusCode, b)
	}
	t.Logf("screenshots in %s", shots)
}

func waitSettled(ctx context.Context, t *testing.T, ledger ledgerv1.LedgerServiceClient, id string) {
	t.Helper()
	for {
		res, err := ledger.GetPayout(ctx, &ledgerv1.GetPayoutRequest{PayoutId: id})
		if err == nil && res.GetPayout().GetStatus() == ledgerv1.PayoutStatus_PAYOUT_STATUS_SETTLED {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("payout %s never settled: %v %v", id, res.GetPayout(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
