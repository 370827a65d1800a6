package prodtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/furrow/furrow/proto/furrow/admin/v1"
	brandevents "github.com/furrow/furrow/proto/furrow/brand/events/v1"
	brandv1 "github.com/furrow/furrow/proto/furrow/brand/v1"
	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"
	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
	procurementv1 "github.com/furrow/furrow/proto/furrow/procurement/v1"
	typesv1 "github.com/furrow/furrow/proto/furrow/types/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/natstest"
)

// faultsSeed seeds TestFaultsWithOracle's workload; FURROW_FAULTS_SEED
// does the same (make faults runs three seeds).
var faultsSeed = flag.Int64("faults.seed", 0, "seed of TestFaultsWithOracle's workload (default: FURROW_FAULTS_SEED, else 1)")

// seedOf returns the workload's seed: the flag, else the variable, else 1.
func seedOf(t *testing.T) int64 {
	t.Helper()
	if *faultsSeed != 0 {
		return *faultsSeed
	}
	if v := os.Getenv("FURROW_FAULTS_SEED"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("FURROW_FAULTS_SEED=%q: %v", v, err)
		}
		return n
	}
	return 1
}

// TestFaultsWithOracle runs the production shape — a 3-node JetStream
// cluster with 3-replica streams, two replicas of each service, one
// PostgreSQL schema — under a seeded workload of deliveries, branded sales
// earning premiums, and payouts, sent by clients that retry every request
// with its request id until some replica acknowledges it, and records what
// was acknowledged in an oracle. Meanwhile it injects faults one after
// another: a NATS node is SIGKILLed and restarted on its store; one replica
// of each service is SIGKILLed and restarted; a NATS node is partitioned
// from its peers for 12 s and healed. Each node runs in a network namespace
// of its own (natstest.Network), so the partition is real: the cut-off
// node keeps running and keeps its clients, but its routes carry nothing.
// Where namespaces cannot be made (not root, no ip command) or
// FURROW_FAULTS_NETNS=off, the node is frozen with SIGSTOP instead, and the
// test says so. Each fault's unavailability window
// (the longest gap between acknowledgements across it) is reported, not
// asserted. At the end: every farmer's balance equals the oracle to the
// fen, on both ledger replicas; every acknowledged payout is settled once
// and no other exists, and every simulated provider paid it with the same
// instruction; the trial balance is balanced; and every projection equals
// a rebuild of it from zero.
func TestFaultsWithOracle(t *testing.T) {
	needs(t)
	t.Parallel()
	seed := seedOf(t)
	t.Logf("workload seed %d (rerun: FURROW_FAULTS_SEED=%d go test -run TestFaultsWithOracle -count=1 ./cmd/furrow/prodtest)", seed, seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0xfa17))
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()

	dsn, _ := postgresSchema(t)
	netw, why := faultNetwork(t)
	if netw == nil {
		t.Logf("no network namespaces (%s): the partition fault is simulated by SIGSTOP of a node, which freezes it rather than partitioning it", why)
	}
	cluster := startFaultCluster(t, netw)
	js := cluster.jetStream(t)
	provisionLog(ctx, t, js, 3)

	common := []string{"--insecure-dev", "--nats-url", strings.Join(cluster.urls(), ","), "--stream-replicas", "3"}
	env := []string{"FURROW_POSTGRES_DSN=" + dsn}
	svcs := map[string]*service{}
	for _, name := range []string{"procurement", "brand-incubation", "farmer-ledger"} {
		s := &service{name: name}
		for _, r := range []string{"a", "b"} {
			args := slices.Clone(common)
			if name == "farmer-ledger" {
				dir := t.TempDir()
				s.providerDirs = append(s.providerDirs, dir)
				args = append(args, "--payment-provider", "simulated", "--simulated-provider-dir", dir)
			}
			s.args = append(s.args, args)
			s.procs = append(s.procs, start(t, name+"-"+r, binaries[name], env, args...))
		}
		for _, p := range s.procs {
			s.conns = append(s.conns, dialRetrying(t, p.grpcAddr))
		}
		svcs[name] = s
	}
	procurement, brand, ledger := svcs["procurement"], svcs["brand-incubation"], svcs["farmer-ledger"]

	w := newWorkload(ctx, seed, procurement, brand, ledger)
	w.js = js
	w.natsURLs = cluster.urls()
	if err := w.setup(); err != nil {
		t.Fatalf("set up the brand, channel, rule and farmers: %v", err)
	}
	stop := make(chan struct{})
	var workers sync.WaitGroup
	errs := make(chan error, workloadWorkers)
	for i := range workloadWorkers {
		workers.Go(func() {
			if err := w.run(i, stop); err != nil {
				errs <- fmt.Errorf("worker %d: %w", i, err)
			}
		})
	}
	// A failure stops the workers before the test's processes go.
	stopOnce := sync.OnceFunc(func() { close(stop); workers.Wait() })
	defer stopOnce()

	settle := func() { time.Sleep(5 * time.Second) }
	settle()
	var faults []faultWindow
	run := func(name string, inject func()) {
		t.Helper()
		f := faultWindow{name: name, start: time.Now()}
		inject()
		f.healed = time.Now()
		settle()
		f.end = time.Now()
		faults = append(faults, f)
		t.Logf("fault %q: injected at +%v, healed after %v", name, f.start.Sub(w.began).Round(time.Millisecond), f.healed.Sub(f.start).Round(time.Millisecond))
	}

	// (1) A NATS node dies and comes back on its store.
	victim := rng.IntN(len(cluster.nodes))
	run(fmt.Sprintf("SIGKILL NATS node n%d, restart after 5s", victim), func() {
		cluster.nodes[victim].kill(t)
		time.Sleep(5 * time.Second)
		cluster.nodes[victim].start(t)
		cluster.nodes[victim].waitHealthy(t, 90*time.Second)
	})
	// (2) One replica of each service dies mid-flight and restarts.
	run("SIGKILL one replica of each service, restart after 5s", func() {
		var killed []int
		for _, s := range []*service{procurement, brand, ledger} {
			r := rng.IntN(2)
			killed = append(killed, r)
			s.kill(t, r)
		}
		time.Sleep(5 * time.Second)
		for i, s := range []*service{procurement, brand, ledger} {
			s.restart(t, killed[i], env)
		}
	})
	// (3) A NATS node is partitioned from its peers: it keeps running, with
	// the clients connected to it, a minority that may still believe it
	// leads, until the partition heals.
	victim = rng.IntN(len(cluster.nodes))
	if netw != nil {
		run(fmt.Sprintf("partition NATS node n%d from its peers for 12s", victim), func() {
			t.Logf("n%d before the partition: %s", victim, cluster.nodes[victim].describe())
			if err := netw.Cut(victim); err != nil {
				t.Fatalf("partition n%d: %v", victim, err)
			}
			time.Sleep(12 * time.Second)
			if err := netw.Heal(victim); err != nil {
				t.Fatalf("heal n%d: %v", victim, err)
			}
			cluster.nodes[victim].waitHealthy(t, 90*time.Second)
		})
	} else {
		// Without namespaces: frozen, so neither its peers nor its clients
		// hear from it, then resumed with its stale view.
		run(fmt.Sprintf("SIGSTOP NATS node n%d for 12s (cut off), SIGCONT", victim), func() {
			cluster.nodes[victim].signal(t, syscall.SIGSTOP)
			time.Sleep(12 * time.Second)
			cluster.nodes[victim].signal(t, syscall.SIGCONT)
			cluster.nodes[victim].waitHealthy(t, 90*time.Second)
		})
	}

	stopOnce()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	w.report(t, faults)

	// The oracle's checks.
	w.checkBalances(t)
	w.checkPayouts(t, js)
	w.checkTrialBalance(t)
	for _, s := range []*service{procurement, brand, ledger} {
		checkRebuilds(ctx, t, s)
	}
}

// workloadWorkers is how many clients send commands at once; each owns
// farmersPerWorker farmers, so its sequence of commands depends on the
// seed only, not on how the others are scheduled.
const (
	workloadWorkers  = 4
	farmersPerWorker = 2
)

// faultWindow is one injected fault: when it started, when it was healed
// (the process back and ready), and when the settling time after it ended.
type faultWindow struct {
	name               string
	start, healed, end time.Time
}

// service is the replicas of one service binary.
type service struct {
	name         string
	args         [][]string
	procs        []*proc
	conns        []*grpc.ClientConn
	providerDirs []string // the ledger's simulated providers, by replica
}

// kill SIGKILLs replica r and waits until it is gone.
func (s *service) kill(t *testing.T, r int) {
	t.Helper()
	p := s.procs[r]
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL %s: %v", p.name, err)
	}
	err := <-p.done
	p.done <- err
}

// restart starts replica r again on its addresses, with its flags.
func (s *service) restart(t *testing.T, r int, env []string) {
	t.Helper()
	old := s.procs[r]
	s.procs[r] = startAt(t, old.name, binaries[s.name], old.grpcAddr, old.opsAddr, env, s.args[r]...)
}

// dialRetrying connects to addr with a short reconnect backoff, so that a
// restarted replica is used again within a second or so.
func dialRetrying(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: 2 * time.Second,
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// workload sends the commands and keeps the oracle: what was acknowledged.
type workload struct {
	ctx                        context.Context
	js                         jetstream.JetStream
	natsURLs                   []string // the cluster's nodes, to diagnose a failed read
	seed                       int64
	procurement, brand, ledger *service
	began                      time.Time

	mu       sync.Mutex
	acks     map[string][]time.Time // acknowledgement times by kind
	retries  map[string]int         // failed attempts by gRPC code
	farmers  map[string]*farmerBook
	sales    map[string]map[string]int64 // acknowledged premiums by farmer, then sale id
	payouts  map[string]payoutRecord     // by payout id
	last     map[string]uint64           // highest acknowledged position by stream
	attempts int
}

// farmerBook is what the oracle holds for one farmer.
type farmerBook struct {
	purchases, premiums, payouts int64
}

// payoutRecord is an acknowledged payout.
type payoutRecord struct {
	farmer string
	amount int64
}

func newWorkload(ctx context.Context, seed int64, procurement, brand, ledger *service) *workload {
	return &workload{ctx: ctx, seed: seed, procurement: procurement, brand: brand, ledger: ledger, began: time.Now(),
		acks: map[string][]time.Time{}, retries: map[string]int{}, farmers: map[string]*farmerBook{}, sales: map[string]map[string]int64{},
		payouts: map[string]payoutRecord{}, last: map[string]uint64{}}
}

func farmerID(worker, n int) string { return fmt.Sprintf("F%d-%d", worker, n) }

// The brand, channel and rule every sale is rated against.
const (
	faultBrand    = "xunwu-navel"
	faultChannel  = "hema"
	faultRule     = "hema-2020"
	faultRateFen  = 150 // per kg
	faultValidDay = "2020-01-01"
)

// call sends one command until a replica of s acknowledges it: each
// attempt goes to the next replica, with a backoff between attempts. A
// refusal that cannot change by retrying (INVALID_ARGUMENT, ALREADY_EXISTS,
// …) is returned; everything else is retried, since the same request id
// makes a retry safe (FAILED_PRECONDITION and NOT_FOUND included: a payout
// waits for its deliveries' postings, a farmer for the read model).
func (w *workload) call(s *service, kind string, first int, fn func(ctx context.Context, conn *grpc.ClientConn) (*typesv1.Position, error)) error {
	var last error
	for attempt := 0; ; attempt++ {
		if w.ctx.Err() != nil {
			return fmt.Errorf("%s not acknowledged before the test's deadline (last error: %w)", kind, last)
		}
		conn := s.conns[(first+attempt)%len(s.conns)]
		actx, cancel := context.WithTimeout(w.ctx, 10*time.Second)
		pos, err := fn(actx, conn)
		cancel()
		w.mu.Lock()
		w.attempts++
		if err == nil {
			w.acks[kind] = append(w.acks[kind], time.Now())
			if pos != nil && pos.GetSequence() > w.last[pos.GetStream()] {
				w.last[pos.GetStream()] = pos.GetSequence()
			}
			w.mu.Unlock()
			return nil
		}
		code := status.Code(err)
		w.retries[code.String()]++
		w.mu.Unlock()
		switch code {
		case codes.InvalidArgument, codes.AlreadyExists, codes.PermissionDenied, codes.Unauthenticated, codes.Unimplemented, codes.OutOfRange:
			return fmt.Errorf("%s: %w", kind, err)
		}
		last = err
		time.Sleep(min(50*time.Millisecond<<min(attempt, 6), 2*time.Second))
	}
}

// setup registers the brand, its channel and rule, and every farmer,
// enrolled in the brand.
func (w *workload) setup() error {
	steps := []struct {
		s    *service
		kind string
		fn   func(ctx context.Context, conn *grpc.ClientConn) (*typesv1.Position, error)
	}{
		{w.brand, "setup", func(ctx context.Context, conn *grpc.ClientConn) (*typesv1.Position, error) {
			res, err := brandv1.NewBrandServiceClient(conn).RegisterBrand(ctx, &brandv1.RegisterBrandRequest{
				RequestId: "brand-1", BrandId: faultBrand, Kind: brandv1.BrandKind_BRAND_KIND_REGIONAL_PRODUCT,
				Name: "Xunwu navel oranges", County: "Xunwu", RegisteredOn: faultValidDay,
			})
			return res.GetPosition(), err
		}},
		{w.brand, "setup", func(ctx context.Context, conn *grpc.ClientConn) (*typesv1.Position, error) {
			res, err := brandv1.NewBrandServiceClient(conn).RegisterChannel(ctx, &brandv1.RegisterChannelRequest{
				RequestId: "channel-1", ChannelId: faultChannel, Name: "Hema Fresh",
			})
			return res.GetPosition(), err
		}},
		{w.brand, "setup", func(ctx context.Context, conn *grpc.ClientConn) (*typesv1.Position, error) {
			res, err := brandv1.NewBrandServiceClient(conn).SetPremiumRule(ctx, &brandv1.SetPremiumRuleRequest{
				RequestId: "rule-1", BrandId: faultBrand, Channel: faultChannel, RuleId: faultRule,
				FenPerKg: faultRateFen, EffectiveFrom: faultValidDay,
			})
			return res.GetPosition(), err
		}},
	}
	for i := range workloadWorkers {
		for n := range farmersPerWorker {
			id := farmerID(i, n)
			w.farmers[id] = &farmerBook{}
			steps = append(steps, struct {
				s    *service
				kind string
				fn   func(ctx context.Context, conn *grpc.ClientConn) (*typesv1.Position, error)
			}{w.ledger, "setup", func(ctx context.Context, conn *grpc.ClientConn) (*typesv1.Position, error) {
				res, err := ledgerv1.NewLedgerServiceClient(conn).RegisterFarmer(ctx, &ledgerv1.RegisterFarmerRequest{
					RequestId: "reg-" + id, FarmerId: id, Name: "Farmer " + id, County: "Xunwu",
					Cooperative: "Xunwu Navel Orange Co-op", PayoutAccount: "62220200" + strconv.Itoa(1000+i*10+n),
				})
				return res.GetPosition(), err
			}})
		}
	}
	for i, st := range steps {
		if err := w.call(st.s, st.kind, i, st.fn); err != nil {
			return err
		}
	}
	// Enrolment needs the registrations in brand incubation's read model:
	// NOT_FOUND until then, which call retries.
	for id := range w.farmers {
		err := w.call(w.brand, "setup", 0, func(ctx context.Context, conn *grpc.ClientConn) (*typesv1.Position, error) {
			res, err := brandv1.NewBrandServiceClient(conn).EnrolFarmer(ctx, &brandv1.EnrolFarmerRequest{
				RequestId: "enrol-" + id, BrandId: faultBrand, FarmerId: id, EnrolledFrom: faultValidDay,
			})
			return res.GetPosition(), err
		})
		if err != nil {
			return err
		}
	}
	w.began = time.Now()
	return nil
}

// run is one client: until stop, a seeded sequence of deliveries (60%),
// sales reports (25%) and payouts (15%) for the worker's own farmers.
func (w *workload) run(worker int, stop <-chan struct{}) error {
	rng := rand.New(rand.NewPCG(uint64(w.seed), uint64(worker)))
	// The worker's own view of its farmers: what was acknowledged.
	credited := map[string]int64{}
	paid := map[string]int64{}
	for op := 0; ; op++ {
		select {
		case <-stop:
			return nil
		default:
		}
		farmer := farmerID(worker, rng.IntN(farmersPerWorker))
		switch p := rng.IntN(100); {
		case p < 60:
			req := &procurementv1.RecordDeliveryRequest{
				RequestId: fmt.Sprintf("d-%d-%d", worker, op), FarmerId: farmer, Product: "xunwu-navel-orange",
				Grade: "A", NetGrams: 1000 + rng.Int64N(50000), PriceFenPerKg: 300 + rng.Int64N(600),
			}
			var amount int64
			err := w.call(w.procurement, "delivery", worker+op, func(ctx context.Context, conn *grpc.ClientConn) (*typesv1.Position, error) {
				res, err := procurementv1.NewProcurementServiceClient(conn).RecordDelivery(ctx, req)
				amount = res.GetAmountFen()
				return res.GetPosition(), err
			})
			if err != nil {
				return err
			}
			credited[farmer] += amount
			w.book(farmer, func(b *farmerBook) { b.purchases += amount })
		case p < 85:
			req := &brandv1.ReportSalesRequest{ReportId: fmt.Sprintf("r-%d-%d", worker, op), Revision: 1, Channel: faultChannel}
			sold := timestamppb.New(time.Now().Add(-time.Minute))
			for l := range 1 + rng.IntN(3) {
				req.Lines = append(req.Lines, &brandv1.SaleLine{
					LineId: fmt.Sprintf("l%d", l), BrandId: faultBrand, FarmerId: farmerID(worker, rng.IntN(farmersPerWorker)),
					Grams: 500 + rng.Int64N(20000), SoldAt: sold,
				})
			}
			var lines []*brandv1.SaleOutcome
			err := w.call(w.brand, "sales", worker+op, func(ctx context.Context, conn *grpc.ClientConn) (*typesv1.Position, error) {
				res, err := brandv1.NewBrandServiceClient(conn).ReportSales(ctx, req)
				lines = res.GetLines()
				return res.GetPosition(), err
			})
			if err != nil {
				return err
			}
			for _, l := range lines {
				if l.GetPremiumFen() == 0 {
					return fmt.Errorf("sale %s/%s earned nothing (withheld: %v): the workload expects every sale to earn", req.ReportId, l.GetLineId(), l.GetWithheldReason())
				}
				credited[l.GetFarmerId()] += l.GetPremiumFen()
				w.book(l.GetFarmerId(), func(b *farmerBook) { b.premiums += l.GetPremiumFen() })
				w.mu.Lock()
				if w.sales[l.GetFarmerId()] == nil {
					w.sales[l.GetFarmerId()] = map[string]int64{}
				}
				w.sales[l.GetFarmerId()][req.ReportId+"/"+l.GetLineId()] += l.GetPremiumFen()
				w.mu.Unlock()
			}
		default:
			amount := min(100+rng.Int64N(5000), credited[farmer]-paid[farmer])
			if amount <= 0 {
				continue
			}
			req := &ledgerv1.RequestPayoutRequest{
				RequestId: fmt.Sprintf("p-%d-%d", worker, op), FarmerId: farmer,
				Amount: &ledgerv1.RequestPayoutRequest_AmountFen{AmountFen: amount},
			}
			var payout *ledgerv1.Payout
			err := w.call(w.ledger, "payout", worker+op, func(ctx context.Context, conn *grpc.ClientConn) (*typesv1.Position, error) {
				res, err := ledgerv1.NewLedgerServiceClient(conn).RequestPayout(ctx, req)
				payout = res.GetPayout()
				return res.GetPosition(), err
			})
			if err != nil {
				return err
			}
			if payout.GetAmountFen() != amount || payout.GetFarmerId() != farmer {
				return fmt.Errorf("payout %s acknowledged as %d fen to %s; asked %d fen to %s", req.RequestId, payout.GetAmountFen(), payout.GetFarmerId(), amount, farmer)
			}
			paid[farmer] += amount
			w.mu.Lock()
			if prev, dup := w.payouts[payout.GetPayoutId()]; dup {
				w.mu.Unlock()
				return fmt.Errorf("payout id %s acknowledged for two requests (%+v, then %s %d fen)", payout.GetPayoutId(), prev, farmer, amount)
			}
			w.payouts[payout.GetPayoutId()] = payoutRecord{farmer: farmer, amount: amount}
			w.mu.Unlock()
			w.book(farmer, func(b *farmerBook) { b.payouts += amount })
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (w *workload) book(farmer string, f func(*farmerBook)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f(w.farmers[farmer])
}

// gap is the longest time between two consecutive acknowledgements
// among acks across [from, to]: from the last one before from to the first
// one after to.
func gap(acks []time.Time, from, to time.Time) time.Duration {
	acks = slices.Clone(acks)
	slices.SortFunc(acks, func(a, b time.Time) int { return a.Compare(b) })
	lo := 0
	for i, a := range acks {
		if a.Before(from) {
			lo = i
		}
	}
	var longest time.Duration
	prev := time.Time{}
	for _, a := range acks[lo:] {
		if a.After(to) {
			// The next fault starts at to: only the part of this gap
			// before it is this fault's.
			if !prev.IsZero() {
				longest = max(longest, to.Sub(prev))
			}
			prev = a
			break
		}
		if !prev.IsZero() {
			longest = max(longest, a.Sub(prev))
		}
		prev = a
	}
	if prev.Before(to) { // nothing acknowledged after the fault at all
		longest = max(longest, to.Sub(prev))
	}
	return longest
}

// report logs each fault's unavailability windows, per kind of command
// and overall, and what the clients saw.
func (w *workload) report(t *testing.T, faults []faultWindow) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	kinds := []string{"delivery", "sales", "payout"}
	var all []time.Time
	for _, k := range kinds {
		all = append(all, w.acks[k]...)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "unavailability windows (longest gap between acknowledgements across the fault), seed %d:\n", w.seed)
	fmt.Fprintf(&b, "  %-55s %9s %9s %9s %9s %9s\n", "fault", "healed", "any", "delivery", "sales", "payout")
	for _, f := range faults {
		fmt.Fprintf(&b, "  %-55s %9s %9s", f.name, f.healed.Sub(f.start).Round(100*time.Millisecond), gap(all, f.start, f.end).Round(100*time.Millisecond))
		for _, k := range kinds {
			fmt.Fprintf(&b, " %9s", gap(w.acks[k], f.start, f.end).Round(100*time.Millisecond))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "acknowledged: %d deliveries, %d sales reports, %d payouts in %v; %d attempts; retried attempts by code: %v",
		len(w.acks["delivery"]), len(w.acks["sales"]), len(w.acks["payout"]), time.Since(w.began).Round(time.Second), w.attempts, w.retries)
	t.Log(b.String())
}

// positions are the highest acknowledged positions, one per stream.
func (w *workload) positions() []*typesv1.Position {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []*typesv1.Position
	for _, s := range []string{"PROCUREMENT", "BRAND", "LEDGER"} {
		if seq := w.last[s]; seq > 0 {
			out = append(out, &typesv1.Position{Stream: s, Sequence: seq})
		}
	}
	return out
}

// checkBalances compares every farmer's balance on both ledger replicas
// with the oracle, once the reads reflect every acknowledged position and
// the payouts in flight have settled.
func (w *workload) checkBalances(t *testing.T) {
	t.Helper()
	stopped := time.Now()
	for r, conn := range w.ledger.conns {
		client := ledgerv1.NewLedgerServiceClient(conn)
		// The handlers may still be working through the backlog: each
		// read waits at most 10s, so ask again, for up to 3 minutes.
		for _, pos := range w.positions() {
			deadline := time.Now().Add(3 * time.Minute)
			for {
				ctx, cancel := context.WithTimeout(w.ctx, 30*time.Second)
				_, err := client.GetFarmerBalance(ctx, &ledgerv1.GetFarmerBalanceRequest{FarmerId: farmerID(0, 0), MinPosition: pos})
				cancel()
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("ledger replica %d: GetFarmerBalance at %v: %v\nprojections on that replica:\n%s\n%s", r, pos, err,
						projectionStates(conn), dumpConsumers(w.js, "PROCUREMENT", "BRAND", "LEDGER"))
				}
				time.Sleep(time.Second)
			}
		}
		t.Logf("ledger replica %d reflects every acknowledged position %v after the workload stopped", r, time.Since(stopped).Round(100*time.Millisecond))
		for id, want := range w.farmers {
			deadline := time.Now().Add(90 * time.Second)
			for {
				ctx, cancel := context.WithTimeout(w.ctx, 30*time.Second)
				got, err := client.GetFarmerBalance(ctx, &ledgerv1.GetFarmerBalanceRequest{FarmerId: id})
				cancel()
				ok := err == nil && got.GetHeldFen() == 0 && got.GetPurchasesFen() == want.purchases &&
					got.GetPremiumsFen() == want.premiums && got.GetPaidFen() == want.payouts &&
					got.GetAvailableFen() == want.purchases+want.premiums-want.payouts
				if ok {
					break
				}
				if time.Now().After(deadline) {
					t.Errorf("ledger replica %d, farmer %s: balance %v (err %v); the oracle says purchases %d, premiums %d, paid %d, held 0, available %d",
						r, id, got, err, want.purchases, want.premiums, want.payouts, want.purchases+want.premiums-want.payouts)
					if got.GetPremiumsFen() != want.premiums {
						t.Logf("farmer %s's premiums, sale by sale:\n%s", id, w.explainPremiums(id))
					}
					break
				}
				time.Sleep(250 * time.Millisecond)
			}
		}
	}
}

// simPayment is a line of a simulated provider's journal (the fields the
// check reads).
type simPayment struct {
	Instruction struct {
		PayoutID  string `json:"PayoutID"`
		FarmerID  string `json:"FarmerID"`
		AmountFen int64  `json:"AmountFen"`
		Account   string `json:"Account"`
	} `json:"instruction"`
	Status string `json:"status"`
}

// checkPayouts compares the ledger's payouts with the acknowledged ones
// (each settled, once, for its amount; no other) and with what the
// simulated providers recorded.
func (w *workload) checkPayouts(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	client := ledgerv1.NewLedgerServiceClient(w.ledger.conns[0])
	seen := map[string]int{}
	token := ""
	for {
		ctx, cancel := context.WithTimeout(w.ctx, 30*time.Second)
		res, err := client.ListPayouts(ctx, &ledgerv1.ListPayoutsRequest{PageSize: 500, PageToken: token})
		cancel()
		if err != nil {
			t.Fatalf("ListPayouts: %v", err)
		}
		for _, p := range res.GetPayouts() {
			seen[p.GetPayoutId()]++
			want, ok := w.payouts[p.GetPayoutId()]
			switch {
			case !ok:
				t.Errorf("payout %s (%s, %d fen, %v) was never acknowledged to a client", p.GetPayoutId(), p.GetFarmerId(), p.GetAmountFen(), p.GetStatus())
			case p.GetStatus() != ledgerv1.PayoutStatus_PAYOUT_STATUS_SETTLED || p.GetAmountFen() != want.amount || p.GetFarmerId() != want.farmer:
				t.Errorf("payout %s: %v, %d fen to %s; want settled, %d fen to %s", p.GetPayoutId(), p.GetStatus(), p.GetAmountFen(), p.GetFarmerId(), want.amount, want.farmer)
			}
		}
		token = res.GetNextPageToken()
		if token == "" {
			break
		}
	}
	for id := range w.payouts {
		if seen[id] != 1 {
			t.Errorf("payout %s is listed %d times; want once", id, seen[id])
		}
	}
	// The LEDGER stream: one PayoutSettled event per payout.
	settled := countSettled(t, js, w.natsURLs)
	for id := range w.payouts {
		if settled[id] != 1 {
			t.Errorf("payout %s: %d settlement events in LEDGER; want 1", id, settled[id])
		}
	}
	for id, n := range settled {
		if _, ok := w.payouts[id]; !ok {
			t.Errorf("payout %s settled %d times but never acknowledged", id, n)
		}
	}
	// The providers: every payout paid, each time with the instruction the
	// ledger acknowledged. Each replica has a simulator of its own (as in
	// deploy/README.md), so a payout one replica sent and another re-sent
	// after the first died reaches two simulators; a real provider is one
	// party deduplicating by payout id, so that counts as one payment if
	// the instructions agree.
	paidBy := map[string]int{}
	for r, dir := range w.ledger.providerDirs {
		f, err := os.Open(filepath.Join(dir, "payments.jsonl"))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		latest := map[string]simPayment{}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var p simPayment
			if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
				t.Errorf("provider of ledger replica %d: journal line %q: %v", r, sc.Text(), err)
				continue
			}
			latest[p.Instruction.PayoutID] = p
		}
		f.Close()
		for id, p := range latest {
			want, ok := w.payouts[id]
			if !ok || p.Instruction.AmountFen != want.amount || p.Instruction.FarmerID != want.farmer || p.Status != "settled" {
				t.Errorf("provider of ledger replica %d paid %s: %+v, %s; the oracle has %+v (known: %v)", r, id, p.Instruction, p.Status, want, ok)
			}
			paidBy[id]++
		}
	}
	twice := 0
	for id := range w.payouts {
		switch paidBy[id] {
		case 0:
			t.Errorf("payout %s: no provider has it", id)
		case 1:
		default:
			twice++
		}
	}
	t.Logf("payouts: %d acknowledged, all settled once in the ledger; %d reached both replicas' simulated providers (re-sent after a replica died, same instruction)", len(w.payouts), twice)
}

// countSettled counts the PayoutSettled events per payout id in the
// LEDGER stream, read with an ordered consumer.
func countSettled(t *testing.T, js jetstream.JetStream, urls []string) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := js.Stream(ctx, "LEDGER")
	if err != nil {
		t.Fatal(err)
	}
	last := st.CachedInfo().State.LastSeq
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for seq := uint64(0); seq < last; {
		msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			// The ordered consumer recreates itself after an error.
			if ctx.Err() != nil {
				t.Fatalf("read LEDGER at %d of %d (connected to %s): %v; read LEDGER %d node by node:\n%s", seq, last,
					js.Conn().ConnectedServerName(), err, seq+1, readVia(urls, "LEDGER", seq+1))
			}
			time.Sleep(200 * time.Millisecond)
			continue
		}
		meta, err := msg.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		seq = meta.Sequence.Stream
		if strings.HasSuffix(msg.Subject(), ".payout_settled") {
			var ev ledgerevents.PayoutSettled
			if err := proto.Unmarshal(msg.Data(), &ev); err != nil {
				t.Fatalf("LEDGER %d (%s): %v", seq, msg.Subject(), err)
			}
			out[ev.GetPayoutId()]++
		}
	}
	return out
}

// readVia reads message seq of stream through each node in turn, on a
// connection of its own, by a direct get and by an ordered consumer, and
// says what each gave: whether a failed read depends on the node.
func readVia(urls []string, stream string, seq uint64) string {
	var b strings.Builder
	for _, u := range urls {
		fmt.Fprintf(&b, "  via %s: ", u)
		nc, err := nats.Connect(u, nats.MaxReconnects(0))
		if err != nil {
			fmt.Fprintf(&b, "connect: %v\n", err)
			continue
		}
		func() {
			defer nc.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			js, err := jetstream.New(nc)
			if err != nil {
				fmt.Fprintf(&b, "%v\n", err)
				return
			}
			st, err := js.Stream(ctx, stream)
			if err != nil {
				fmt.Fprintf(&b, "stream info: %v\n", err)
				return
			}
			_, err = st.GetMsg(ctx, seq)
			fmt.Fprintf(&b, "get: %v; ", err)
			cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: seq})
			if err != nil {
				fmt.Fprintf(&b, "ordered consumer: %v\n", err)
				return
			}
			_, err = cons.Next(jetstream.FetchMaxWait(5 * time.Second))
			fmt.Fprintf(&b, "ordered consumer next: %v\n", err)
		}()
	}
	return b.String()
}

// checkTrialBalance asks for the trial balance at the last acknowledged
// LEDGER position: it must balance.
func (w *workload) checkTrialBalance(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(w.ctx, 30*time.Second)
	defer cancel()
	var at *typesv1.Position
	for _, p := range w.positions() {
		if p.GetStream() == "LEDGER" {
			at = p
		}
	}
	res, err := ledgerv1.NewLedgerServiceClient(w.ledger.conns[1]).GetTrialBalance(ctx, &ledgerv1.GetTrialBalanceRequest{MinPosition: at})
	if err != nil {
		t.Fatalf("GetTrialBalance: %v", err)
	}
	if !res.GetBalanced() || res.GetTotalDebitFen() != res.GetTotalCreditFen() || res.GetTotalDebitFen() == 0 {
		t.Errorf("trial balance: debits %d, credits %d, balanced %v; want equal and non-zero", res.GetTotalDebitFen(), res.GetTotalCreditFen(), res.GetBalanced())
	}
	t.Logf("trial balance: %d entries, debits = credits = %d fen", res.GetEntries(), res.GetTotalDebitFen())
}

// checkRebuilds rebuilds every projection of s from zero beside the live
// copy, on replica 0, and requires the diff to be empty; each live copy
// must be healthy.
func checkRebuilds(ctx context.Context, t *testing.T, s *service) {
	t.Helper()
	admin := adminv1.NewAdminServiceClient(s.conns[0])
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	list, err := admin.ListProjections(lctx, &adminv1.ListProjectionsRequest{})
	cancel()
	if err != nil {
		t.Fatalf("%s: ListProjections: %v", s.name, err)
	}
	var names []string
	for _, p := range list.GetProjections() {
		if p.GetService() != s.name {
			continue
		}
		if !p.GetHealthy() {
			t.Errorf("%s: projection %s is not healthy: %v %s (last error %s)", s.name, p.GetName(), p.GetState(), p.GetReason(), p.GetLastError())
		}
		if !p.GetVersioned() {
			t.Errorf("%s: projection %s cannot be rebuilt beside itself", s.name, p.GetName())
			continue
		}
		names = append(names, p.GetName())
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		res, err := admin.RebuildProjection(rctx, &adminv1.RebuildProjectionRequest{Name: p.GetName()})
		cancel()
		if err != nil {
			t.Errorf("%s: rebuild %s: %v", s.name, p.GetName(), err)
			continue
		}
		version := res.GetVersion()
		deadline := time.Now().Add(2 * time.Minute)
		for caught := false; !caught; {
			gctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			st, err := admin.GetProjection(gctx, &adminv1.GetProjectionRequest{Name: p.GetName()})
			cancel()
			if err != nil {
				t.Fatalf("%s: GetProjection %s: %v", s.name, p.GetName(), err)
			}
			for _, c := range st.GetProjection().GetCopies() {
				if c.GetVersion() == version && c.GetCaughtUp() {
					caught = true
				}
			}
			if !caught && time.Now().After(deadline) {
				t.Fatalf("%s: the rebuild of %s has not caught up in 2 minutes: %v", s.name, p.GetName(), st.GetProjection())
			}
			time.Sleep(200 * time.Millisecond)
		}
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		diff, err := admin.DiffProjection(dctx, &adminv1.DiffProjectionRequest{Name: p.GetName(), Version: version})
		cancel()
		if err != nil {
			t.Errorf("%s: diff %s: %v", s.name, p.GetName(), err)
			continue
		}
		if !diff.GetEmpty() {
			t.Errorf("%s: projection %s differs from its rebuild from zero: %s\n%v", s.name, p.GetName(), diff.GetSummary(), diff.GetTables())
		}
		xctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if _, err := admin.DropProjectionCopy(xctx, &adminv1.DropProjectionCopyRequest{Name: p.GetName(), Version: version}); err != nil {
			t.Errorf("%s: drop the rebuilt copy of %s: %v", s.name, p.GetName(), err)
		}
		cancel()
	}
	if len(names) == 0 {
		t.Errorf("%s: no projection to rebuild", s.name)
	}
	t.Logf("%s: %d projections equal their rebuild from zero: %s", s.name, len(names), strings.Join(names, ", "))
}

// faultCluster is a 3-node JetStream cluster whose nodes the test kills,
// restarts, partitions or freezes (natstest.Cluster's nodes live as long
// as the test).
type faultCluster struct {
	nodes []*natsNode
}

// faultNetwork makes the network namespaces the fault cluster's nodes run
// in, or returns nil and why not.
func faultNetwork(t *testing.T) (*natstest.Network, string) {
	t.Helper()
	if os.Getenv("FURROW_FAULTS_NETNS") == "off" {
		return nil, "FURROW_FAULTS_NETNS=off"
	}
	netw, err := natstest.NewNetwork(t, 3)
	if err != nil {
		return nil, err.Error()
	}
	return netw, ""
}

// natsNode is one nats-server process, restartable on its store.
type natsNode struct {
	name, bin, conf, url, monitor string
	netw                          *natstest.Network // nil: the root namespace
	index                         int               // in netw

	mu   sync.Mutex // guards cmd, done, logs
	cmd  *exec.Cmd
	done chan error
	logs strings.Builder
}

// Write collects the node's log across its runs.
func (n *natsNode) Write(b []byte) (int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.logs.Write(b)
}

// startFaultCluster starts the cluster on loopback addresses, or with
// every node in its namespace of netw when it is not nil.
func startFaultCluster(t *testing.T, netw *natstest.Network) *faultCluster {
	t.Helper()
	bin := natstest.Binary(t)
	const size = 3
	var routes []string
	ports := make([][3]string, size) // client, route, monitor
	for i := range size {
		if netw != nil {
			ports[i] = [3]string{
				net.JoinHostPort(netw.ClientHost(i), strconv.Itoa(natstest.NetworkClientPort)),
				net.JoinHostPort(netw.ClusterHost(i), strconv.Itoa(natstest.NetworkClusterPort)),
				net.JoinHostPort(netw.ClientHost(i), strconv.Itoa(natstest.NetworkMonitorPort)),
			}
		} else {
			ports[i] = [3]string{freeAddr(t), freeAddr(t), freeAddr(t)}
		}
		routes = append(routes, "nats-route://"+ports[i][1])
	}
	c := &faultCluster{}
	for i := range size {
		dir := t.TempDir()
		conf := fmt.Sprintf(`server_name: n%d
listen: %s
http: %s
jetstream {
  store_dir: %q
  sync_interval: always
}
cluster {
  name: furrow-faults
  listen: %s
  routes: [%s]
}
`, i, ports[i][0], ports[i][2], filepath.Join(dir, "js"), ports[i][1], strings.Join(routes, ", "))
		path := filepath.Join(dir, "nats.conf")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		n := &natsNode{name: fmt.Sprintf("n%d", i), bin: bin, conf: path, url: "nats://" + ports[i][0], monitor: ports[i][2], netw: netw, index: i}
		c.nodes = append(c.nodes, n)
		t.Cleanup(func() {
			n.mu.Lock()
			cmd, done := n.cmd, n.done
			n.mu.Unlock()
			if cmd != nil {
				_ = cmd.Process.Signal(syscall.SIGCONT)
				_ = cmd.Process.Signal(os.Interrupt)
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					_ = cmd.Process.Kill()
					<-done
				}
			}
			if t.Failed() {
				t.Logf("nats-server %s log:\n%s", n.name, n.logs.String())
			}
		})
		n.start(t)
	}
	for _, n := range c.nodes {
		n.waitHealthy(t, 60*time.Second)
	}
	return c
}

// start runs the node (again) on its configuration and store.
func (n *natsNode) start(t *testing.T) {
	t.Helper()
	cmd := exec.Command(n.bin, "-c", n.conf)
	if n.netw != nil {
		cmd = n.netw.Command(n.index, n.bin, "-c", n.conf)
	}
	cmd.Stdout, cmd.Stderr = n, n
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	n.mu.Lock()
	n.cmd, n.done = cmd, done
	n.mu.Unlock()
}

// kill SIGKILLs the node and waits until it is gone.
func (n *natsNode) kill(t *testing.T) {
	t.Helper()
	n.signal(t, syscall.SIGKILL)
	n.mu.Lock()
	done := n.done
	n.cmd = nil
	n.mu.Unlock()
	<-done
}

func (n *natsNode) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	n.mu.Lock()
	cmd := n.cmd
	n.mu.Unlock()
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v to nats-server %s: %v", sig, n.name, err)
	}
}

// waitHealthy waits until the node's /healthz says it is up with its
// JetStream assets current.
func (n *natsNode) waitHealthy(t *testing.T, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		res, err := client.Get("http://" + n.monitor + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats-server %s not healthy after %v (last: %v)", n.name, within, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// describe says how many clients the node has and who leads the
// JetStream meta group in its view, from its monitoring endpoints.
func (n *natsNode) describe() string {
	client := &http.Client{Timeout: 2 * time.Second}
	get := func(path string, into any) error {
		res, err := client.Get("http://" + n.monitor + path)
		if err != nil {
			return err
		}
		defer res.Body.Close()
		return json.NewDecoder(res.Body).Decode(into)
	}
	var connz struct {
		NumConnections int `json:"num_connections"`
	}
	var jsz struct {
		Meta struct {
			Leader string `json:"leader"`
		} `json:"meta_cluster"`
	}
	if err := get("/connz", &connz); err != nil {
		return fmt.Sprintf("connz: %v", err)
	}
	if err := get("/jsz", &jsz); err != nil {
		return fmt.Sprintf("jsz: %v", err)
	}
	return fmt.Sprintf("%d client connections, meta leader %s", connz.NumConnections, jsz.Meta.Leader)
}

func (c *faultCluster) urls() []string {
	var out []string
	for _, n := range c.nodes {
		out = append(out, n.url)
	}
	return out
}

// jetStream connects to the cluster, reconnecting forever.
func (c *faultCluster) jetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(strings.Join(c.urls(), ","), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// projectionStates describes the projections a replica runs: checkpoint,
// stream head, state and heartbeat — what a stuck read needs explained.
func projectionStates(conn *grpc.ClientConn) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := adminv1.NewAdminServiceClient(conn).ListProjections(ctx, &adminv1.ListProjectionsRequest{})
	if err != nil {
		return fmt.Sprintf("ListProjections: %v", err)
	}
	var b strings.Builder
	for _, p := range res.GetProjections() {
		fmt.Fprintf(&b, "  %-24s checkpoint %d head %d lag %d state %v healthy %v heartbeat %s reason %q\n", p.GetName(), p.GetCheckpoint(),
			p.GetStreamHead(), p.GetLagEvents(), p.GetState(), p.GetHealthy(), p.GetHeartbeatAt().AsTime().Format(time.RFC3339Nano), p.GetReason())
	}
	return b.String()
}

// explainPremiums lists, sale by sale, where a farmer's premiums in the
// brand stream and in the ledger differ from the acknowledged ones: every
// PremiumEarned and PremiumAdjusted of the farmer in BRAND, and every
// ledger entry posted for a BRAND event.
func (w *workload) explainPremiums(farmer string) string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	type sale struct {
		acked        int64
		brand        []string
		brandFen     int64
		ledgerFen    int64
		ledgerSource []string
	}
	sales := map[string]*sale{}
	get := func(id string) *sale {
		if sales[id] == nil {
			sales[id] = &sale{}
		}
		return sales[id]
	}
	w.mu.Lock()
	for id, fen := range w.sales[farmer] {
		get(id).acked = fen
	}
	w.mu.Unlock()
	var b strings.Builder
	bySource := map[string]string{} // BRAND event id -> sale id
	read := func(stream string, subjects []string, each func(jetstream.Msg)) {
		c, err := w.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: subjects})
		if err != nil {
			fmt.Fprintf(&b, "read %s: %v\n", stream, err)
			return
		}
		info, err := c.Info(ctx)
		if err != nil {
			fmt.Fprintf(&b, "read %s: %v\n", stream, err)
			return
		}
		for n := info.NumPending; n > 0; n-- {
			m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
			if err != nil {
				fmt.Fprintf(&b, "read %s: %v\n", stream, err)
				return
			}
			each(m)
		}
	}
	read("BRAND", []string{"brand.*.*.premium_earned", "brand.*.*.premium_adjusted"}, func(m jetstream.Msg) {
		md, _ := m.Metadata()
		id := m.Headers().Get(eventstore.HeaderEventID)
		if strings.HasSuffix(m.Subject(), ".premium_earned") {
			var e brandevents.PremiumEarned
			if proto.Unmarshal(m.Data(), &e) == nil && e.GetFarmerId() == farmer {
				s := get(e.GetSaleId())
				s.brandFen += e.GetPremiumFen()
				s.brand = append(s.brand, fmt.Sprintf("earned %d @%d %s", e.GetPremiumFen(), md.Sequence.Stream, id))
				bySource[id] = e.GetSaleId()
			}
			return
		}
		var e brandevents.PremiumAdjusted
		if proto.Unmarshal(m.Data(), &e) == nil && e.GetFarmerId() == farmer {
			s := get(e.GetSaleId())
			s.brandFen += e.GetDeltaFen()
			s.brand = append(s.brand, fmt.Sprintf("adjusted %+d @%d %s", e.GetDeltaFen(), md.Sequence.Stream, id))
			bySource[id] = e.GetSaleId()
		}
	})
	read("LEDGER", []string{"ledger.farmer." + farmer + ".entry_posted"}, func(m jetstream.Msg) {
		var e ledgerevents.EntryPosted
		if proto.Unmarshal(m.Data(), &e) != nil || e.GetSource().GetStream() != "BRAND" {
			return
		}
		md, _ := m.Metadata()
		saleID, ok := bySource[e.GetSource().GetEventId()]
		if !ok {
			saleID = "(unknown BRAND event " + e.GetSource().GetEventId() + ")"
		}
		s := get(saleID)
		for _, l := range e.GetLines() {
			if l.GetAccount() == "farmer:"+farmer+":premium" {
				s.ledgerFen += l.GetCreditFen() - l.GetDebitFen()
			}
		}
		s.ledgerSource = append(s.ledgerSource, fmt.Sprintf("@%d from BRAND@%d %s", md.Sequence.Stream, e.GetSource().GetSequence(), e.GetSource().GetEventId()))
	})
	ids := make([]string, 0, len(sales))
	for id := range sales {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	differ := 0
	for _, id := range ids {
		s := sales[id]
		if s.acked == s.brandFen && s.brandFen == s.ledgerFen && len(s.brand) == 1 && len(s.ledgerSource) == 1 {
			continue
		}
		differ++
		fmt.Fprintf(&b, "  sale %s: acknowledged %d, brand %d %v, ledger %d %v\n", id, s.acked, s.brandFen, s.brand, s.ledgerFen, s.ledgerSource)
	}
	fmt.Fprintf(&b, "  %d sales, %d differ or were written more than once", len(ids), differ)
	return b.String()
}
