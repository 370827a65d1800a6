package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/natsembed"
	"github.com/furrow/furrow/pkg/natstest"
)

// env is one contract case's own stream on a shared server.
type env struct {
	s      *eventstore.Store
	stream string
	prefix string
}

// subj returns a subject under the case's own prefix.
func (e env) subj(rest string) string { return e.prefix + "." + rest }

var streamSeq atomic.Int64

func newEnv(t *testing.T, srv *natstest.Server, window time.Duration) env {
	t.Helper()
	n := streamSeq.Add(1)
	e := env{stream: fmt.Sprintf("TEST%d", n), prefix: fmt.Sprintf("test%d", n)}
	js := srv.JetStream(t)
	spec := eventstore.StreamSpec{Name: e.stream, Subjects: []string{e.prefix + ".>"}, Replicas: srv.Replicas, DuplicateWindow: window}
	if err := eventstore.EnsureStreams(context.Background(), js, spec); err != nil {
		t.Fatal(err)
	}
	e.s = eventstore.New(js)
	return e
}

func ev(subject, data string) eventstore.Event {
	return eventstore.Event{Subject: subject, Type: "test.v1.Happened", Data: []byte(data)}
}

// TestContract runs the event store's contract against every deployment
// shape: an embedded server, a standalone nats-server process, and a
// three-node cluster with replicated streams (where a retried append comes
// back as a duplicate rather than as a wrong-last-sequence error).
func TestContract(t *testing.T) {
	t.Parallel()
	shapes := []func(testing.TB) *natstest.Server{natstest.Embedded}
	if !testing.Short() {
		shapes = append(shapes, natstest.Standalone, natstest.Cluster)
	}
	for _, start := range shapes {
		srv := start(t)
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			for _, c := range []struct {
				name string
				run  func(*testing.T, *natstest.Server)
			}{
				{"append and load round trip", testRoundTrip},
				{"conflicts", testConflict},
				{"retries are idempotent", testRetryIdempotent},
				{"concurrent appends have one winner", testConcurrentOneWinner},
				{"load many events", testLoadMany},
				{"group commit coalesces concurrent appends", testGroupCommitCoalesces},
				{"a conflict in a group fails alone", testGroupConflictFailsAlone},
				{"retries in a group resolve as duplicates", testGroupIdempotentRetry},
				{"multi-event appends in a group stay atomic", testGroupMultiEventAtomic},
				{"appends to one aggregate never share a batch", testGroupSameAggregate},
				{"unchecked appends to one aggregate share a batch", testGroupUncheckedShareABatch},
				{"a held-back append holds back what follows it", testGroupKeepsOrder},
				{"last events of many filters", testLasts},
				{"a group waits for a batch slot", testGroupWaitsForBatchSlot},
			} {
				t.Run(c.name, func(t *testing.T) { c.run(t, srv) })
			}
		})
	}
}

func testRoundTrip(t *testing.T, srv *natstest.Server) {
	ctx := context.Background()
	e := newEnv(t, srv, 0)
	res, err := e.s.Append(ctx, eventstore.AppendRequest{
		Stream: e.stream, Aggregate: e.subj("a.A1.>"), Expect: eventstore.ExpectNew(),
		IdempotencyKey: "req-1", Fingerprint: "f1",
		Events: []eventstore.Event{{
			Subject: e.subj("a.A1.created"), Type: "test.v1.Created", Data: []byte("x"),
			Metadata: eventstore.Metadata{CorrelationID: "c1", CausationID: "req-1", Actor: "tester"},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.First != 1 || res.Last != 1 || res.Duplicate {
		t.Fatalf("result = %+v", res)
	}
	got, err := e.s.Load(ctx, e.stream, e.subj("a.A1.>"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("loaded %d events", len(got))
	}
	r := got[0]
	if r.Type != "test.v1.Created" || r.Metadata.CorrelationID != "c1" || r.Metadata.Actor != "tester" ||
		r.IdempotencyKey != "req-1" || r.ID != res.EventIDs[0] || string(r.Data) != "x" || r.SchemaVersion != 1 {
		t.Fatalf("recorded = %+v", r)
	}
	if v, err := e.s.Version(ctx, e.stream, e.subj("a.A1.>")); err != nil || v != 1 {
		t.Fatalf("Version = %d, %v", v, err)
	}
	if v, err := e.s.Version(ctx, e.stream, e.subj("a.NOPE.>")); err != nil || v != 0 {
		t.Fatalf("Version of empty aggregate = %d, %v", v, err)
	}
}

func testConflict(t *testing.T, srv *natstest.Server) {
	ctx := context.Background()
	e := newEnv(t, srv, 0)
	req := func(key string, expect eventstore.Expectation) eventstore.AppendRequest {
		return eventstore.AppendRequest{Stream: e.stream, Aggregate: e.subj("a.A1.>"), Expect: expect,
			IdempotencyKey: key, Fingerprint: key, Events: []eventstore.Event{ev(e.subj("a.A1.x"), key)}}
	}
	if _, err := e.s.Append(ctx, req("k1", eventstore.ExpectNew())); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Append(ctx, req("k2", eventstore.ExpectNew())); !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("second ExpectNew: err = %v, want ErrConflict", err)
	}
	if _, err := e.s.Append(ctx, req("k3", eventstore.ExpectVersion(1))); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Append(ctx, req("k4", eventstore.ExpectVersion(1))); !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("stale version: err = %v, want ErrConflict", err)
	}
	// Other aggregates do not conflict.
	if _, err := e.s.Append(ctx, eventstore.AppendRequest{Stream: e.stream, Aggregate: e.subj("a.A2.>"),
		Expect: eventstore.ExpectNew(), Events: []eventstore.Event{ev(e.subj("a.A2.x"), "")}}); err != nil {
		t.Fatal(err)
	}
}

// testRetryIdempotent covers a client retry after a lost ack: inside the
// dedup window, after it (a tiny window), with and without an expectation,
// and for multi-event atomic batches.
func testRetryIdempotent(t *testing.T, srv *natstest.Server) {
	for _, tc := range []struct {
		name   string
		window time.Duration
		expect eventstore.Expectation
		events int
	}{
		{"in window, expect new", 0, eventstore.ExpectNew(), 1},
		{"in window, any", 0, eventstore.ExpectAny, 1},
		{"after window, expect new", 100 * time.Millisecond, eventstore.ExpectNew(), 1},
		{"in window, batch", 0, eventstore.ExpectNew(), 3},
		{"after window, batch", 100 * time.Millisecond, eventstore.ExpectNew(), 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, srv, tc.window)
			var evs []eventstore.Event
			for i := range tc.events {
				evs = append(evs, ev(e.subj(fmt.Sprintf("a.A1.e%d", i)), "payload"))
			}
			req := eventstore.AppendRequest{Stream: e.stream, Aggregate: e.subj("a.A1.>"), Expect: tc.expect,
				IdempotencyKey: "req-1", Fingerprint: "same", Events: evs}
			first, err := e.s.Append(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if tc.window > 0 {
				time.Sleep(3 * tc.window)
			}
			again, err := e.s.Append(ctx, req)
			if err != nil {
				t.Fatalf("retry: %v", err)
			}
			if !again.Duplicate || again.First != first.First || again.Last != first.Last {
				t.Fatalf("retry = %+v, first = %+v", again, first)
			}
			got, err := e.s.Load(ctx, e.stream, e.prefix+".>", 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.events {
				t.Fatalf("stream holds %d events, want %d", len(got), tc.events)
			}
			req.Fingerprint = "different"
			if _, err := e.s.Append(ctx, req); !errors.Is(err, eventstore.ErrIdempotencyMismatch) {
				t.Fatalf("reuse with other content: err = %v, want ErrIdempotencyMismatch", err)
			}
		})
	}
}

func testConcurrentOneWinner(t *testing.T, srv *natstest.Server) {
	ctx := context.Background()
	e := newEnv(t, srv, 0)
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			_, err := e.s.Append(ctx, eventstore.AppendRequest{Stream: e.stream, Aggregate: e.subj("a.A1.>"),
				Expect: eventstore.ExpectVersion(0), IdempotencyKey: fmt.Sprint("k", i), Fingerprint: "f",
				Events: []eventstore.Event{ev(e.subj("a.A1.x"), "")}})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	wins, conflicts := 0, 0
	for err := range errs {
		switch {
		case err == nil:
			wins++
		case errors.Is(err, eventstore.ErrConflict):
			conflicts++
		default:
			t.Fatal(err)
		}
	}
	if wins != 1 || conflicts != n-1 {
		t.Fatalf("wins=%d conflicts=%d", wins, conflicts)
	}
}

func testLoadMany(t *testing.T, srv *natstest.Server) {
	ctx := context.Background()
	e := newEnv(t, srv, 0)
	var evs []eventstore.Event
	for range 1200 {
		evs = append(evs, ev(e.subj("a.A1.x"), "p"))
	}
	// Two batches, interleaved with another aggregate's events.
	for _, chunk := range [][]eventstore.Event{evs[:700], evs[700:]} {
		if _, err := e.s.Append(ctx, eventstore.AppendRequest{Stream: e.stream, Aggregate: e.subj("a.A1.>"), Events: chunk}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.s.Append(ctx, eventstore.AppendRequest{Stream: e.stream, Aggregate: e.subj("a.B.>"), Events: []eventstore.Event{ev(e.subj("a.B.x"), "")}}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := e.s.Load(ctx, e.stream, e.subj("a.A1.>"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1200 {
		t.Fatalf("loaded %d, want 1200", len(got))
	}
	got, err = e.s.Load(ctx, e.stream, e.subj("a.A1.>"), 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1200-999 { // seq 701 is B's event
		t.Fatalf("loaded after 1000: %d", len(got))
	}
}

// TestManyConcurrentBatches appends more atomic batches at once than the
// server keeps open per stream (50): the store waits its turn instead of
// failing.
func TestManyConcurrentBatches(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, natstest.Embedded(t), 0)
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			agg := fmt.Sprintf("a.A%d", i)
			_, err := e.s.Append(ctx, eventstore.AppendRequest{Stream: e.stream, Aggregate: e.subj(agg + ".>"),
				Expect: eventstore.ExpectNew(), IdempotencyKey: fmt.Sprint("k", i),
				Events: []eventstore.Event{ev(e.subj(agg+".x"), "1"), ev(e.subj(agg+".y"), "2")}})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := e.s.Load(ctx, e.stream, e.prefix+".>", 0)
	if err != nil || len(got) != 2*n {
		t.Fatalf("stream holds %d events (%v), want %d", len(got), err, 2*n)
	}
}

// TestLoadFitsTheConnectionsSyncQueue: a load's batched direct gets answer
// through a sync subscription of the connection's queue length; a Store
// sizes its batches to fit, so a short queue (cheap: see SyncQueueLen)
// never drops answers as a slow consumer.
func TestLoadFitsTheConnectionsSyncQueue(t *testing.T) {
	t.Parallel()
	srv, err := natsembed.Start(natsembed.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect(nats.SyncQueueLen(8))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := eventstore.EnsureStreams(ctx, js, eventstore.StreamSpec{Name: "SHORTQ", Subjects: []string{"shortq.>"}}); err != nil {
		t.Fatal(err)
	}
	s := eventstore.New(js)
	evs := make([]eventstore.Event, 300)
	for i := range evs {
		evs[i] = ev("shortq.a.A1.x", strconv.Itoa(i))
	}
	if _, err := s.Append(ctx, eventstore.AppendRequest{Stream: "SHORTQ", Aggregate: "shortq.a.A1.>", Events: evs}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load(ctx, "SHORTQ", "shortq.a.A1.>", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(evs) {
		t.Fatalf("loaded %d events, want %d", len(got), len(evs))
	}
	for i, r := range got {
		if string(r.Data) != strconv.Itoa(i) || r.Sequence != uint64(i+1) {
			t.Fatalf("event %d is %q at seq %d", i, r.Data, r.Sequence)
		}
	}
	// Lasts sizes its requests to the queue too, and says so when a
	// request's filters match more subjects than fit.
	for i := range 10 {
		subj := fmt.Sprintf("shortq.b.B1.s%d", i)
		if _, err := s.Append(ctx, eventstore.AppendRequest{Stream: "SHORTQ", Aggregate: subj, Events: []eventstore.Event{ev(subj, "")}}); err != nil {
			t.Fatal(err)
		}
	}
	if lasts, err := s.Lasts(ctx, "SHORTQ", []string{"shortq.a.A1.>", "shortq.a.A2.>"}); err != nil || len(lasts) != 1 {
		t.Fatalf("Lasts = %d events, %v; want 1", len(lasts), err)
	}
	if _, err := s.Lasts(ctx, "SHORTQ", []string{"shortq.b.B1.>"}); !errors.Is(err, eventstore.ErrTooManySubjects) {
		t.Fatalf("Lasts of 10 subjects over a queue of 8: err = %v, want ErrTooManySubjects", err)
	}
}
