package admin_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	adminv1 "github.com/furrow/furrow/proto/furrow/admin/v1"
	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"

	"github.com/furrow/furrow/pkg/admin"
	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/grpcx"
	"github.com/furrow/furrow/pkg/natstest"
	"github.com/furrow/furrow/pkg/projection"
	"github.com/furrow/furrow/pkg/wmjs"
)

const testStream = "TEST"

// notes is a Versioned projection of farmer registrations that fails on a
// farmer named "poison" while broken is set: a bug to fix and redrive. It
// waits at a farmer named "hold" while hold holds an open channel, until
// that channel is closed: a rebuild caught in the middle.
type notes struct {
	broken *atomic.Bool
	hold   *atomic.Pointer[chan struct{}]
}

func (notes) Name() string       { return "notes" }
func (notes) Stream() string     { return testStream }
func (notes) Subjects() []string { return nil }
func (notes) Tables() []string   { return []string{"notes"} }

func (notes) Migrate(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+projection.Table(ctx, "notes")+` (
		farmer_id TEXT PRIMARY KEY, name TEXT NOT NULL)`)
	return err
}

func (n notes) Apply(ctx context.Context, tx *sql.Tx, ev eventstore.Recorded) error {
	msg, err := eventstore.Decode(ev)
	if err != nil {
		return err
	}
	r, ok := msg.(*ledgerevents.FarmerRegistered)
	if !ok {
		return nil
	}
	if r.GetName() == "poison" && n.broken.Load() {
		return errors.New("name column too short for this farmer")
	}
	if ch := n.hold.Load(); r.GetName() == "hold" && ch != nil {
		select {
		case <-*ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO `+projection.Table(ctx, "notes")+` (farmer_id, name) VALUES ($1, $2)`, r.GetFarmerId(), r.GetName())
	return err
}

type fixture struct {
	js      jetstream.JetStream
	client  adminv1.AdminServiceClient
	runner  *projection.Runner
	broken  *atomic.Bool
	hold    *atomic.Pointer[chan struct{}]
	mu      sync.Mutex
	handled []string // farmer ids the handler processed
}

// start runs the notes projection and a handler behind an AdminService
// on a real JetStream and SQLite; opts, if any, adjust the runner's options.
func start(t *testing.T, opts ...func(*projection.Options)) *fixture {
	t.Helper()
	js := natstest.Embedded(t).JetStream(t)
	ctx := context.Background()
	if err := eventstore.EnsureStreams(ctx, js, eventstore.StreamSpec{Name: testStream, Subjects: []string{"test.>"}}); err != nil {
		t.Fatal(err)
	}
	db, err := projection.OpenSQLite(filepath.Join(t.TempDir(), "read.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	f := &fixture{js: js, broken: &atomic.Bool{}, hold: &atomic.Pointer[chan struct{}]{}}
	f.broken.Store(true)
	ropts := projection.Options{MaxRetries: 1, IdleWait: 20 * time.Millisecond, Logger: log}
	for _, o := range opts {
		o(&ropts)
	}
	f.runner, err = projection.NewRunner(db, js, notes{f.broken, f.hold}, ropts)
	if err != nil {
		t.Fatal(err)
	}

	router, err := wmjs.NewRouter(log, wmjs.DeadLetterConfig{JS: js, Subject: "deadletter.handlers", MaxRetries: 1, RetryInitialInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := wmjs.NewSubscriber(js, wmjs.Config{Stream: testStream, Durable: "welcome", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	router.AddConsumerHandler("WelcomeOnFarmerRegistered", testStream, sub, func(m *message.Message) error {
		rec, err := wmjs.Recorded(m)
		if err != nil {
			return err
		}
		msg, err := eventstore.Decode(rec)
		if err != nil {
			return err
		}
		r := msg.(*ledgerevents.FarmerRegistered)
		if r.GetName() == "poison" && f.broken.Load() {
			return errors.New("welcome template missing")
		}
		f.mu.Lock()
		f.handled = append(f.handled, r.GetFarmerId())
		f.mu.Unlock()
		return nil
	})

	adm, err := admin.New(js, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := adm.AddProjections("test", f.runner); err != nil {
		t.Fatal(err)
	}
	adm.SetHandlers(router.Handlers())
	gs, _ := grpcx.NewServer(log, grpcx.Limits{})
	adminv1.RegisterAdminServiceServer(gs, adm)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	runCtx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = f.runner.Run(runCtx) })
	wg.Go(func() { _ = router.Run(runCtx) })
	t.Cleanup(func() { cancel(); _ = router.Close(); wg.Wait() })
	<-router.Running()

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	f.client = adminv1.NewAdminServiceClient(conn)
	return f
}

func (f *fixture) register(t *testing.T, id, name string) uint64 {
	t.Helper()
	ev, err := eventstore.NewEvent("test.farmer."+id+".farmer_registered", &ledgerevents.FarmerRegistered{FarmerId: id, Name: name, County: "Xunwu"},
		eventstore.Metadata{Actor: "test", CorrelationID: "corr-" + id})
	if err != nil {
		t.Fatal(err)
	}
	res, err := eventstore.New(f.js).Append(context.Background(), eventstore.AppendRequest{
		Stream: testStream, Aggregate: "test.farmer." + id + ".>", Events: []eventstore.Event{ev},
	})
	if err != nil {
		t.Fatal(err)
	}
	return res.Last
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func code(err error) codes.Code { return status.Code(err) }

// The acceptance path for dead letters through the operators' API: a
// poison event is parked by the projection and by the handler after their
// retries, the projection's stall shows in its status, a redrive before the
// fix fails and changes nothing, a redrive after it applies the event once
// and resolves the dead letter.
func TestDeadLettersThroughAdminService(t *testing.T) {
	t.Parallel()
	f := start(t)
	ctx := context.Background()
	f.register(t, "F1", "Wang Fang")
	poisonSeq := f.register(t, "F2", "poison")
	f.register(t, "F3", "Li Wei")

	var p *adminv1.Projection
	eventually(t, "projection blocked", func() bool {
		res, err := f.client.GetProjection(ctx, &adminv1.GetProjectionRequest{Name: "notes"})
		if err != nil {
			t.Fatal(err)
		}
		p = res.GetProjection()
		return p.GetState() == adminv1.ProjectionState_PROJECTION_STATE_BLOCKED
	})
	if p.GetHealthy() || p.GetFailingSequence() != poisonSeq || p.GetCheckpoint() != poisonSeq-1 || p.GetLagEvents() != 2 ||
		!strings.Contains(p.GetReason(), "name column too short") || p.GetDeadLetter() == 0 {
		t.Fatalf("blocked projection = %v", p)
	}
	var letters []*adminv1.DeadLetter
	eventually(t, "two dead letters", func() bool {
		res, err := f.client.ListDeadLetters(ctx, &adminv1.ListDeadLettersRequest{})
		if err != nil {
			t.Fatal(err)
		}
		letters = res.GetDeadLetters()
		return len(letters) == 2
	})
	byKind := map[string]*adminv1.DeadLetter{}
	for _, l := range letters {
		byKind[l.GetKind()] = l
		if l.GetSourceStream() != testStream || l.GetSourceSequence() != poisonSeq || l.GetStatus() != "parked" {
			t.Errorf("dead letter = %v", l)
		}
	}
	proj, handler := byKind["projection"], byKind["handler"]
	if proj == nil || handler == nil || proj.GetConsumer() != "notes" || handler.GetConsumer() != "WelcomeOnFarmerRegistered" ||
		proj.GetSequence() != p.GetDeadLetter() {
		t.Fatalf("dead letters = %v", letters)
	}
	shown, err := f.client.GetDeadLetter(ctx, &adminv1.GetDeadLetterRequest{Sequence: proj.GetSequence()})
	if err != nil {
		t.Fatal(err)
	}
	if ev := shown.GetDeadLetter().GetEvent(); ev.GetType() != "furrow.ledger.events.v1.FarmerRegistered" ||
		!strings.Contains(ev.GetPayloadJson(), `"name":"••••ison"`) || ev.GetCorrelationId() != "corr-F2" {
		t.Errorf("parked event = %v", ev)
	}

	for _, l := range []*adminv1.DeadLetter{proj, handler} {
		if _, err := f.client.RedriveDeadLetter(ctx, &adminv1.RedriveDeadLetterRequest{Sequence: l.GetSequence()}); code(err) != codes.Aborted {
			t.Errorf("redrive of %s before the fix = %v, want Aborted", l.GetKind(), err)
		}
	}
	f.broken.Store(false) // the fix
	for _, l := range []*adminv1.DeadLetter{proj, handler} {
		res, err := f.client.RedriveDeadLetter(ctx, &adminv1.RedriveDeadLetterRequest{Sequence: l.GetSequence()})
		if err != nil {
			t.Fatalf("redrive of %s: %v", l.GetKind(), err)
		}
		if res.GetDeadLetter().GetStatus() == "parked" || res.GetDeadLetter().GetResolvedAt() == nil {
			t.Errorf("after redrive: %v", res.GetDeadLetter())
		}
		if _, err := f.client.RedriveDeadLetter(ctx, &adminv1.RedriveDeadLetterRequest{Sequence: l.GetSequence()}); code(err) != codes.FailedPrecondition {
			t.Errorf("second redrive of %s = %v, want FailedPrecondition", l.GetKind(), err)
		}
	}
	eventually(t, "projection caught up", func() bool {
		res, err := f.client.GetProjection(ctx, &adminv1.GetProjectionRequest{Name: "notes"})
		if err != nil {
			t.Fatal(err)
		}
		p = res.GetProjection()
		return p.GetState() == adminv1.ProjectionState_PROJECTION_STATE_IDLE && p.GetCheckpoint() == poisonSeq+1
	})
	res, err := f.client.ListDeadLetters(ctx, &adminv1.ListDeadLettersRequest{})
	if err != nil || len(res.GetDeadLetters()) != 0 {
		t.Errorf("parked after the redrives: %v, %v", res.GetDeadLetters(), err)
	}
	all, err := f.client.ListDeadLetters(ctx, &adminv1.ListDeadLettersRequest{All: true})
	if err != nil || len(all.GetDeadLetters()) != 2 {
		t.Errorf("all dead letters after the redrives: %v, %v", all.GetDeadLetters(), err)
	}
	f.mu.Lock()
	handled := append([]string(nil), f.handled...)
	f.mu.Unlock()
	if diff := cmp.Diff([]string{"F1", "F3", "F2"}, handled); diff != "" {
		t.Errorf("handler saw (-want +got):\n%s", diff)
	}
}

// TestEventsMaskPersonalData: an event written before the ledger sealed
// personal data holds a phone and an account number in clear; what the
// operators' API shows of it (the decoded JSON and the raw payload) holds
// them masked, and the rest of the event as it is.
func TestEventsMaskPersonalData(t *testing.T) {
	t.Parallel()
	f := start(t)
	ctx := context.Background()
	ev, err := eventstore.NewEvent("test.farmer.F9.farmer_registered", &ledgerevents.FarmerRegistered{
		FarmerId: "F9", Name: "Wang Fang", County: "Xunwu", Phone: "13800000201", PayoutAccount: "6222020000000201"},
		eventstore.Metadata{Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eventstore.New(f.js).Append(ctx, eventstore.AppendRequest{
		Stream: testStream, Aggregate: "test.farmer.F9.>", Events: []eventstore.Event{ev},
	}); err != nil {
		t.Fatal(err)
	}
	list, err := f.client.ListEvents(ctx, &adminv1.ListEventsRequest{Aggregate: "F9"})
	if err != nil || len(list.GetEvents()) != 1 {
		t.Fatalf("events of F9 = %v, %v", list.GetEvents(), err)
	}
	got := list.GetEvents()[0]
	for _, clear := range []string{"13800000201", "6222020000000201", "Wang Fang"} {
		if strings.Contains(got.GetPayloadJson(), clear) || bytes.Contains(got.GetPayload(), []byte(clear)) {
			t.Errorf("the event shows %q in clear: %s", clear, got.GetPayloadJson())
		}
	}
	for _, want := range []string{`"phone":"••••0201"`, `"payout_account":"••••0201"`, `"county":"Xunwu"`} {
		if !strings.Contains(got.GetPayloadJson(), want) {
			t.Errorf("the event lacks %s: %s", want, got.GetPayloadJson())
		}
	}
}

// Streams and events through the operators' API, decoded.
func TestStreamsAndEvents(t *testing.T) {
	t.Parallel()
	f := start(t)
	ctx := context.Background()
	f.register(t, "F1", "Wang Fang")
	f.register(t, "F2", "Li Wei")
	third := f.register(t, "F3", "Zhao Min")

	streams, err := f.client.ListStreams(ctx, &adminv1.ListStreamsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range streams.GetStreams() {
		names = append(names, s.GetName())
	}
	if !strings.Contains(strings.Join(names, ","), testStream) {
		t.Errorf("streams = %v", names)
	}
	info, err := f.client.GetStream(ctx, &adminv1.GetStreamRequest{Stream: testStream, SubjectsLimit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if info.GetStream().GetMessages() != 3 || len(info.GetSubjects()) != 2 || !info.GetStream().GetDenyDelete() || len(info.GetConsumers()) == 0 {
		t.Errorf("stream info = %v", info)
	}
	if _, err := f.client.GetStream(ctx, &adminv1.GetStreamRequest{Stream: "NOPE"}); code(err) != codes.NotFound {
		t.Errorf("unknown stream = %v, want NotFound", err)
	}

	list, err := f.client.ListEvents(ctx, &adminv1.ListEventsRequest{Aggregate: "F2"})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetEvents()) != 1 || list.GetEvents()[0].GetSubject() != "test.farmer.F2.farmer_registered" ||
		!strings.Contains(list.GetEvents()[0].GetPayloadJson(), `"name":"•••• Wei"`) {
		t.Errorf("events of F2 = %v", list.GetEvents())
	}
	page, err := f.client.ListEvents(ctx, &adminv1.ListEventsRequest{Stream: testStream, Limit: 2})
	if err != nil || len(page.GetEvents()) != 2 || !page.GetTruncated() {
		t.Errorf("first page = %v (truncated %t), %v", page.GetEvents(), page.GetTruncated(), err)
	}
	if _, err := f.client.ListEvents(ctx, &adminv1.ListEventsRequest{Aggregate: "F.*"}); code(err) != codes.InvalidArgument {
		t.Errorf("aggregate with wildcards = %v, want InvalidArgument", err)
	}
	got, err := f.client.GetEvent(ctx, &adminv1.GetEventRequest{Stream: testStream, Sequence: third})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetEvent().GetActor() != "test" || got.GetEvent().GetHeaders()[eventstore.HeaderEventType] == "" {
		t.Errorf("event = %v", got.GetEvent())
	}

	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	tail, err := f.client.TailEvents(tctx, &adminv1.TailEventsRequest{Stream: testStream, Last: 2})
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for len(seqs) < 3 {
		if len(seqs) == 2 {
			f.register(t, "F4", "Sun Li") // appended while tailing
		}
		res, err := tail.Recv()
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, res.GetEvent().GetSequence())
	}
	if diff := cmp.Diff([]uint64{2, 3, 4}, seqs); diff != "" {
		t.Errorf("tail --last 2 (-want +got):\n%s", diff)
	}
	cancel()
	if _, err := tail.Recv(); err == nil || errors.Is(err, io.EOF) {
		t.Logf("tail after cancel: %v", err)
	}
}

// Rebuild, diff, swap and drop through the operators' API.
func TestRebuildThroughAdminService(t *testing.T) {
	t.Parallel()
	f := start(t)
	f.broken.Store(false)
	ctx := context.Background()
	for _, id := range []string{"F1", "F2", "F3"} {
		f.register(t, id, "farmer "+id)
	}
	if _, err := f.client.DiffProjection(ctx, &adminv1.DiffProjectionRequest{Name: "notes"}); code(err) != codes.FailedPrecondition {
		t.Errorf("diff without a shadow = %v, want FailedPrecondition", err)
	}
	rb, err := f.client.RebuildProjection(ctx, &adminv1.RebuildProjectionRequest{Name: "notes"})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "shadow caught up", func() bool {
		res, err := f.client.GetProjection(ctx, &adminv1.GetProjectionRequest{Name: "notes"})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range res.GetProjection().GetCopies() {
			if c.GetVersion() == rb.GetVersion() {
				return c.GetCaughtUp() && c.GetLagEvents() == 0 && c.GetApplied() == 3
			}
		}
		return false
	})
	d, err := f.client.DiffProjection(ctx, &adminv1.DiffProjectionRequest{Name: "notes"})
	if err != nil {
		t.Fatal(err)
	}
	if !d.GetEmpty() || !d.GetAligned() || d.GetTables()[0].GetLiveRows() != 3 {
		t.Errorf("diff = %v", d)
	}
	sw, err := f.client.SwapProjection(ctx, &adminv1.SwapProjectionRequest{Name: "notes"})
	if err != nil {
		t.Fatal(err)
	}
	if sw.GetLiveVersion() != 2 || sw.GetRetiredVersion() != 1 {
		t.Errorf("swap = %v", sw)
	}
	if _, err := f.client.DropProjectionCopy(ctx, &adminv1.DropProjectionCopyRequest{Name: "notes", Version: 2}); code(err) != codes.FailedPrecondition {
		t.Errorf("drop of the live copy = %v, want FailedPrecondition", err)
	}
	if _, err := f.client.DropProjectionCopy(ctx, &adminv1.DropProjectionCopyRequest{Name: "notes", Version: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.client.DropProjectionCopy(ctx, &adminv1.DropProjectionCopyRequest{Name: "notes", Version: 1}); code(err) != codes.NotFound {
		t.Errorf("second drop = %v, want NotFound", err)
	}
	paused, err := f.client.PauseProjection(ctx, &adminv1.PauseProjectionRequest{Name: "notes", Reason: "audit"})
	if err != nil || paused.GetProjection().GetState() != adminv1.ProjectionState_PROJECTION_STATE_PAUSED {
		t.Fatalf("pause = %v, %v", paused, err)
	}
	if _, err := f.client.ResumeProjection(ctx, &adminv1.ResumeProjectionRequest{Name: "notes"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.client.GetProjection(ctx, &adminv1.GetProjectionRequest{Name: "nope"}); code(err) != codes.NotFound {
		t.Errorf("unknown projection = %v, want NotFound", err)
	}
}
