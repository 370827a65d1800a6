package stack_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
	procurementv1 "github.com/furrow/furrow/proto/furrow/procurement/v1"

	"github.com/furrow/furrow/cmd/furrow/internal/stack"
)

// startAsync runs stack.Start in a goroutine and returns what it returned,
// or fails the test when it did not return within limit. A stack that did
// start is shut down at cleanup.
func startAsync(t *testing.T, ctx context.Context, cfg stack.Config, limit time.Duration) error {
	t.Helper()
	st, err := startWithin(t, ctx, cfg, limit)
	if st != nil {
		t.Cleanup(func() { st.Shutdown(context.Background()) })
	}
	return err
}

// startWithin is startAsync that leaves a started stack to the caller.
func startWithin(t *testing.T, ctx context.Context, cfg stack.Config, limit time.Duration) (*stack.Stack, error) {
	t.Helper()
	type result struct {
		st  *stack.Stack
		err error
	}
	done := make(chan result, 1)
	go func() {
		st, err := stack.Start(ctx, cfg)
		done <- result{st, err}
	}()
	select {
	case r := <-done:
		return r.st, r.err
	case <-time.After(limit):
		t.Fatalf("stack.Start did not return within %s", limit)
		return nil, nil
	}
}

// takenAddr listens on a free port for the test's duration and returns it.
func takenAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.Addr().String()
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Issue 9, defect 1: two stacks on one data directory both appended at the
// same positions and lost acknowledged writes. The second must be refused,
// naming the holder, and the first keeps working.
func TestStartRefusesADataDirectoryInUse(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first := startStack(t, dir)
	err := startAsync(t, context.Background(), stack.Config{DataDir: dir, GRPCAddr: "127.0.0.1:0"}, 10*time.Second)
	if err == nil {
		t.Fatal("a second stack started on a data directory in use")
	}
	if want := "pid " + strconv.Itoa(os.Getpid()); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name the holder (%s)", err, want)
	}
	register(t, first, "F1")
	if n := streamMsgs(t, first, "LEDGER"); n != 1 {
		t.Errorf("LEDGER holds %d events, want 1", n)
	}
}

// Issue 9, defect 4: a NATS port in use made Start wait 30 s and then say
// "is the port in use?". It must fail at once with the real cause.
func TestStartNATSAddressInUse(t *testing.T) {
	t.Parallel()
	addr := takenAddr(t)
	err := startAsync(t, context.Background(), stack.Config{DataDir: t.TempDir(), GRPCAddr: "127.0.0.1:0", NATSAddr: addr}, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), addr) {
		t.Fatalf("Start with NATS address %s taken: %v, want \"address already in use\" naming it", addr, err)
	}
}

func TestStartGRPCAddressInUse(t *testing.T) {
	t.Parallel()
	addr := takenAddr(t)
	err := startAsync(t, context.Background(), stack.Config{DataDir: t.TempDir(), GRPCAddr: addr}, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), addr) {
		t.Fatalf("Start with gRPC address %s taken: %v, want \"address already in use\" naming it", addr, err)
	}
}

// A failed start releases the data directory: the next start succeeds.
func TestStartAfterAFailedStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := startAsync(t, context.Background(), stack.Config{DataDir: dir, GRPCAddr: takenAddr(t)}, 5*time.Second); err == nil {
		t.Fatal("Start on a taken gRPC address succeeded")
	}
	register(t, startStack(t, dir), "F1")
}

// Ctrl-C cancels ctx: Start returns promptly whatever stage it is in, and
// leaves the data directory free.
func TestStartHonoursCancellation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, after := range []time.Duration{0, time.Millisecond, 5 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond} {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(after, cancel)
		st, err := startWithin(t, ctx, stack.Config{DataDir: dir, GRPCAddr: "127.0.0.1:0"}, 5*time.Second)
		cancel()
		if st != nil {
			// Started before the cancellation.
			st.Shutdown(context.Background())
		} else if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled after %s: %v, want context.Canceled", after, err)
		}
	}
	// And while the NATS port is taken (Start waited 30 s there).
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	_ = startAsync(t, ctx, stack.Config{DataDir: t.TempDir(), GRPCAddr: "127.0.0.1:0", NATSAddr: takenAddr(t)}, 5*time.Second)
	cancel()
	register(t, startStack(t, dir), "F1")
}

// A data directory that cannot be created names the path and the cause.
func TestStartDataDirectoryNotCreatable(t *testing.T) {
	t.Parallel()
	// Under a regular file: fails for root too.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(file, "data")
	err := startAsync(t, context.Background(), stack.Config{DataDir: dir, GRPCAddr: "127.0.0.1:0"}, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("Start on %s: %v, want the path and \"not a directory\"", dir, err)
	}
}

// Issue 9, defect 3: `nats stream rm BRAND -f` against furrow dev
// succeeded and junk published into event subjects blocked projections.
// Outside clients without credentials only read; the admin user, whose
// password Start writes into the data directory, may do anything; the
// services keep their rights.
func TestOutsideNATSClientsReadOnlyUnlessAdmin(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := freePort(t)
	st, err := stack.Start(context.Background(), stack.Config{DataDir: dir, GRPCAddr: "127.0.0.1:0", NATSAddr: addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Shutdown(context.Background()) })
	c := clientsOf(t, st)
	register(t, c, "F1")

	ctx := testCtx(t)
	url := "nats://" + addr
	// Permission violations come back as errors; keep them off stderr.
	quiet := nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})
	nc, err := nats.Connect(url, nats.Timeout(5*time.Second), quiet)
	if err != nil {
		t.Fatalf("connect without credentials: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	// Reading works: stream names, info, a message.
	var names []string
	lister := js.StreamNames(ctx)
	for name := range lister.Name() {
		names = append(names, name)
	}
	if lister.Err() != nil || len(names) < 3 {
		t.Fatalf("stream names without credentials: %v, %v", names, lister.Err())
	}
	ledger, err := js.Stream(ctx, "LEDGER")
	if err != nil {
		t.Fatalf("stream info without credentials: %v", err)
	}
	if msg, err := ledger.GetMsg(ctx, 1); err != nil || !strings.HasPrefix(msg.Subject, "ledger.farmer.F1.") {
		t.Fatalf("get message 1 without credentials: %v, %v", msg, err)
	}
	// Changing the log does not. A denied request gets no answer: bound
	// each by a short context.
	short := func() context.Context {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		t.Cleanup(cancel)
		return c
	}
	if err := js.DeleteStream(short(), "BRAND"); err == nil {
		t.Error("deleted stream BRAND without credentials")
	}
	if err := ledger.Purge(short()); err == nil {
		t.Error("purged LEDGER without credentials")
	}
	if _, err := js.Publish(short(), "ledger.farmer.X.farmer_registered", []byte("junk")); err == nil {
		t.Error("published into ledger.farmer.X without credentials")
	}
	if err := ledger.DeleteMsg(short(), 1); err == nil {
		t.Error("deleted LEDGER message 1 without credentials")
	}
	if _, err := js.CreateOrUpdateConsumer(short(), "LEDGER", jetstream.ConsumerConfig{Durable: "intruder"}); err == nil {
		t.Error("created a consumer without credentials")
	}
	if err := nc.Publish("ledger.farmer.X.farmer_registered", []byte("junk")); err != nil {
		t.Fatal(err)
	}
	_ = nc.Flush()
	if n := streamMsgs(t, c, "LEDGER"); n != 1 {
		t.Errorf("LEDGER holds %d events after junk publishes, want 1", n)
	}
	if _, err := js.Stream(ctx, "BRAND"); err != nil {
		t.Errorf("stream BRAND after a delete without credentials: %v", err)
	}
	// The services still write.
	register(t, c, "F2")

	// The admin user may do anything.
	pw, err := os.ReadFile(filepath.Join(dir, "nats-admin-password"))
	if err != nil {
		t.Fatalf("admin password file: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "nats-admin-password")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("admin password file mode: %v, %v, want 0600", fi.Mode(), err)
	}
	if got, want := st.NATSAdminURL(), "nats://admin:"+strings.TrimSpace(string(pw))+"@"+addr; got != want {
		t.Errorf("NATSAdminURL() = %q, want %q", got, want)
	}
	anc, err := nats.Connect(url, nats.UserInfo("admin", strings.TrimSpace(string(pw))), nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("connect as admin: %v", err)
	}
	defer anc.Close()
	ajs, err := jetstream.New(anc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ajs.Publish(ctx, "brand.x.junk", []byte("junk")); err != nil {
		t.Errorf("admin publish: %v", err)
	}
	if err := ajs.DeleteStream(ctx, "BRAND"); err != nil {
		t.Errorf("admin delete stream: %v", err)
	}
	if _, err := nats.Connect(url, nats.UserInfo("admin", "wrong")); err == nil {
		t.Error("connected as admin with a wrong password")
	}
	// The in-process user is not reachable from outside, whatever the password.
	if _, err := nats.Connect(url, nats.UserInfo("furrow", "")); err == nil {
		t.Error("connected as the in-process user from outside")
	}
}

// The admin password is made once and kept across restarts.
func TestNATSAdminPasswordKeptAcrossRestarts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := stack.Config{DataDir: dir, GRPCAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0"}
	st, err := stack.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	first, err := os.ReadFile(filepath.Join(dir, stack.NATSAdminPasswordFile))
	st.Shutdown(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	st, err = stack.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Shutdown(context.Background())
	if !strings.Contains(st.NATSAdminURL(), ":"+strings.TrimSpace(string(first))+"@") {
		t.Errorf("after a restart the admin URL %q does not hold the first password %q", st.NATSAdminURL(), first)
	}
}

// clientsOf dials a running stack.
func clientsOf(t testing.TB, st *stack.Stack) clients {
	t.Helper()
	conn, err := grpc.NewClient(st.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return clients{st: st, ledger: ledgerv1.NewLedgerServiceClient(conn),
		procurement: procurementv1.NewProcurementServiceClient(conn), health: healthpb.NewHealthClient(conn)}
}
