// Package systemtest starts the real furrow binary and talks to it over
// gRPC, the way a farm-platform backend does: the slice, graceful shutdown,
// and SIGKILL at random points with balances checked against an oracle.
package systemtest

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
	procurementv1 "github.com/furrow/furrow/proto/furrow/procurement/v1"
	typesv1 "github.com/furrow/furrow/proto/furrow/types/v1"
)

var furrowBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "furrow-systemtest")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	furrowBin = filepath.Join(dir, "furrow")
	build := exec.Command("go", "build", "-o", furrowBin, "github.com/furrow/furrow/cmd/furrow")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build furrow:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running `furrow dev`.
type proc struct {
	cmd  *exec.Cmd
	addr string
	conn *grpc.ClientConn
	out  *strings.Builder
	done chan error
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startDev starts the binary on dataDir and waits until it is healthy.
func startDev(t testing.TB, dataDir string) *proc {
	t.Helper()
	p := &proc{addr: freeAddr(t), out: &strings.Builder{}, done: make(chan error, 1)}
	p.cmd = exec.Command(furrowBin, "dev", "--data-dir", dataDir, "--grpc-addr", p.addr, "--nats-addr", "", "--http-addr", "", "--ops-addr", "")
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = p.cmd.Stdout
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.out.WriteString(sc.Text() + "\n")
		}
		p.done <- p.cmd.Wait()
	}()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
		}
	})
	p.conn, err = grpc.NewClient(p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.conn.Close() })
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := healthpb.NewHealthClient(p.conn).Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("furrow dev not healthy after 60s: %v\n%s", err, p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *proc) ledger() ledgerv1.LedgerServiceClient { return ledgerv1.NewLedgerServiceClient(p.conn) }
func (p *proc) procurement() procurementv1.ProcurementServiceClient {
	return procurementv1.NewProcurementServiceClient(p.conn)
}

func (p *proc) wait(t testing.TB) error {
	t.Helper()
	select {
	case err := <-p.done:
		return err
	case <-time.After(60 * time.Second):
		t.Fatalf("furrow dev did not exit\n%s", p.out.String())
		return nil
	}
}

func TestGracefulShutdown(t *testing.T) {
	if testing.Short() {
		t.Skip("system test")
	}
	t.Parallel()
	dir := t.TempDir()
	p := startDev(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := p.ledger().RegisterFarmer(ctx, &ledgerv1.RegisterFarmerRequest{RequestId: "r", FarmerId: "F1", Name: "Li Wei", County: "Qinglong"}); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t); err != nil {
		t.Fatalf("exit after SIGINT: %v\n%s", err, p.out.String())
	}
	if !strings.Contains(p.out.String(), "furrow dev stopped") {
		t.Fatalf("no clean stop in output:\n%s", p.out.String())
	}
	// Everything acknowledged is still there.
	p = startDev(t, dir)
	if _, err := p.ledger().GetFarmer(ctx, &ledgerv1.GetFarmerRequest{FarmerId: "F1"}); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(t); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
}

// TestSIGKILLLeavesBalancesExact records deliveries while killing the
// process with SIGKILL at random moments. The client behaves as a real one:
// it retries every request with the same request id until acknowledged. The
// oracle is the sum of the amounts the client intended; the balance after
// the last restart must equal it to the fen.
func TestSIGKILLLeavesBalancesExact(t *testing.T) {
	if testing.Short() {
		t.Skip("system test")
	}
	t.Parallel()
	dir := t.TempDir()
	const farmers, deliveries, kills = 3, 90, 3
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	t.Logf("seed-free run; kills at random request indexes")

	p := startDev(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	for i := range farmers {
		id := fmt.Sprintf("F%d", i)
		if _, err := p.ledger().RegisterFarmer(ctx, &ledgerv1.RegisterFarmerRequest{RequestId: "reg-" + id, FarmerId: id, Name: "n", County: "Xunwu"}); err != nil {
			t.Fatal(err)
		}
	}
	oracle := map[string]int64{}
	killAt := map[int]bool{}
	for len(killAt) < kills {
		killAt[1+rng.IntN(deliveries-2)] = true
	}
	var last *typesv1.Position
	for i := range deliveries {
		farmer := fmt.Sprintf("F%d", i%farmers)
		grams := int64(500 + rng.IntN(20_000))
		price := int64(300 + rng.IntN(2_000))
		req := &procurementv1.RecordDeliveryRequest{RequestId: fmt.Sprintf("req-%d", i), FarmerId: farmer,
			Product: "xunwu-navel-orange", NetGrams: grams, PriceFenPerKg: price}
		if killAt[i] {
			// Fire the request and kill the process while it may be in flight.
			go func() {
				c, cc := context.WithTimeout(context.Background(), 2*time.Second)
				defer cc()
				_, _ = p.procurement().RecordDelivery(c, req)
			}()
			time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond)
			_ = p.cmd.Process.Kill()
			_ = p.wait(t)
			p = startDev(t, dir)
		}
		for attempt := 0; ; attempt++ {
			c, cc := context.WithTimeout(ctx, 10*time.Second)
			res, err := p.procurement().RecordDelivery(c, req)
			cc()
			if err == nil {
				oracle[farmer] += res.GetAmountFen()
				last = res.GetPosition()
				if want := (grams*price + 500) / 1000; res.GetAmountFen() < want-1 || res.GetAmountFen() > want {
					t.Fatalf("amount %d for %d g × %d", res.GetAmountFen(), grams, price)
				}
				break
			}
			if attempt > 20 {
				t.Fatalf("request %d never acknowledged: %v\n%s", i, err, p.out.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// One more kill after everything was acknowledged, then read.
	_ = p.cmd.Process.Kill()
	_ = p.wait(t)
	p = startDev(t, dir)
	for farmer, want := range oracle {
		bal, err := p.ledger().GetFarmerBalance(ctx, &ledgerv1.GetFarmerBalanceRequest{FarmerId: farmer, MinPosition: last})
		if err != nil {
			t.Fatal(err)
		}
		if bal.GetPurchasesFen() != want {
			t.Errorf("%s: balance %d fen, oracle %d fen", farmer, bal.GetPurchasesFen(), want)
		}
	}
}
