package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/natstest"
)

// one is a single-event request on aggregate agg of e's stream.
func (e env) one(agg, key string, expect eventstore.Expectation) eventstore.AppendRequest {
	return eventstore.AppendRequest{Stream: e.stream, Aggregate: e.subj(agg + ".>"), Expect: expect,
		IdempotencyKey: key, Fingerprint: "fp-" + key, Events: []eventstore.Event{ev(e.subj(agg+".x"), key)}}
}

// checkWritten loads what res says req wrote and compares it with req.
func (e env) checkWritten(t *testing.T, req eventstore.AppendRequest, res eventstore.AppendResult) {
	t.Helper()
	got, err := e.s.Load(context.Background(), e.stream, req.Aggregate, res.First-1)
	if err != nil {
		t.Fatal(err)
	}
	var want, have []string
	for i, ev := range req.Events {
		want = append(want, fmt.Sprintf("%d %s %s", res.First+uint64(i), ev.Subject, ev.Data))
	}
	for _, r := range got {
		if r.Sequence > res.Last {
			break
		}
		have = append(have, fmt.Sprintf("%d %s %s", r.Sequence, r.Subject, r.Data))
	}
	if diff := cmp.Diff(want, have); diff != "" {
		t.Fatalf("%s: events at %d..%d (-want +got):\n%s", req.IdempotencyKey, res.First, res.Last, diff)
	}
}

// testGroupCommitCoalesces: concurrent appends to distinct aggregates all
// succeed, each where it says, in fewer publishes than appends.
func testGroupCommitCoalesces(t *testing.T, srv *natstest.Server) {
	ctx := context.Background()
	e := newEnv(t, srv, 0)
	const n = 64
	reqs := make([]eventstore.AppendRequest, n)
	results := make([]eventstore.AppendResult, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		reqs[i] = e.one(fmt.Sprintf("a.A%d", i), fmt.Sprint("k", i), eventstore.ExpectNew())
		wg.Go(func() {
			<-start
			results[i], errs[i] = e.s.Append(ctx, reqs[i])
		})
	}
	close(start)
	wg.Wait()
	seqs := map[uint64]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("append %d: %v", i, errs[i])
		}
		if seqs[results[i].First] {
			t.Fatalf("sequence %d reported twice", results[i].First)
		}
		seqs[results[i].First] = true
		e.checkWritten(t, reqs[i], results[i])
	}
	st := e.s.Stats()
	t.Logf("stats: %+v", st)
	if st.Appends != n || st.Publishes >= n || st.Groups == 0 {
		t.Fatalf("%d appends took %d publishes in %d groups; want fewer publishes than appends", st.Appends, st.Publishes, st.Groups)
	}
}

// testGroupConflictFailsAlone: a stale expectation in a group fails its own
// append only (ErrConflict); the others are written.
func testGroupConflictFailsAlone(t *testing.T, srv *natstest.Server) {
	ctx := context.Background()
	e := newEnv(t, srv, 0)
	if _, err := e.s.Append(ctx, e.one("a.A5", "first", eventstore.ExpectNew())); err != nil {
		t.Fatal(err)
	}
	var reqs []eventstore.AppendRequest
	for i := range 16 {
		reqs = append(reqs, e.one(fmt.Sprintf("a.A%d", i), fmt.Sprint("k", i), eventstore.ExpectNew()))
	}
	// A5 already has an event; A11 is expected at a version it never had.
	reqs[11].Expect = eventstore.ExpectVersion(99)
	before := e.s.Stats()
	out := e.s.AppendMany(ctx, reqs)
	for i, o := range out {
		switch i {
		case 5, 11:
			if !errors.Is(o.Err, eventstore.ErrConflict) {
				t.Fatalf("request %d: err = %v, want ErrConflict", i, o.Err)
			}
		default:
			if o.Err != nil {
				t.Fatalf("request %d: %v", i, o.Err)
			}
			e.checkWritten(t, reqs[i], o.Result)
		}
	}
	got, err := e.s.Load(ctx, e.stream, e.prefix+".>", 0)
	if err != nil || len(got) != 1+14 {
		t.Fatalf("stream holds %d events (%v), want 15", len(got), err)
	}
	if st := e.s.Stats(); st.Splits == before.Splits {
		t.Fatalf("no batch was split: %+v", st)
	}
}

// testGroupIdempotentRetry: retries of appended requests inside a group
// resolve as duplicates of the first attempt (in and after the dedup
// window, with and without an expectation); reusing a key with other
// content is still refused.
func testGroupIdempotentRetry(t *testing.T, srv *natstest.Server) {
	for _, tc := range []struct {
		name   string
		window time.Duration
	}{{"in window", 0}, {"after window", 100 * time.Millisecond}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, srv, tc.window)
			earlier := []eventstore.AppendRequest{
				e.one("a.R1", "r1", eventstore.ExpectNew()),
				{Stream: e.stream, Aggregate: e.subj("a.R3.>"), Expect: eventstore.ExpectNew(), IdempotencyKey: "r3", Fingerprint: "fp-r3",
					Events: []eventstore.Event{ev(e.subj("a.R3.x"), "1"), ev(e.subj("a.R3.y"), "2")}},
			}
			if tc.window == 0 {
				// Without an expectation only the server's window tells a
				// retry (after it, recognising one is the caller's job).
				earlier = append(earlier, e.one("a.R2", "r2", eventstore.ExpectAny))
			}
			var first []eventstore.AppendResult
			for _, req := range earlier {
				res, err := e.s.Append(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				first = append(first, res)
			}
			if tc.window > 0 {
				time.Sleep(3 * tc.window)
			}
			// Fresh requests with the retries in the middle.
			var reqs []eventstore.AppendRequest
			for i := range 12 {
				reqs = append(reqs, e.one(fmt.Sprintf("a.N%d", i), fmt.Sprint("n", i), eventstore.ExpectNew()))
			}
			reqs = append(reqs[:3], append(append([]eventstore.AppendRequest{}, earlier...), reqs[3:]...)...)
			retry := func(i int) bool { return i >= 3 && i < 3+len(earlier) }
			out := e.s.AppendMany(ctx, reqs)
			for i, o := range out {
				if !retry(i) {
					if o.Err != nil || o.Result.Duplicate {
						t.Fatalf("request %s = %+v, %v", reqs[i].IdempotencyKey, o.Result, o.Err)
					}
					e.checkWritten(t, reqs[i], o.Result)
					continue
				}
				want := first[i-3]
				if o.Err != nil || !o.Result.Duplicate || o.Result.First != want.First || o.Result.Last != want.Last {
					t.Fatalf("retry %s = %+v, %v; first = %+v", reqs[i].IdempotencyKey, o.Result, o.Err, want)
				}
				if diff := cmp.Diff(want.EventIDs, o.Result.EventIDs); diff != "" {
					t.Fatalf("retry %s event ids (-first +retry):\n%s", reqs[i].IdempotencyKey, diff)
				}
			}
			for _, req := range earlier {
				got, err := e.s.Load(ctx, e.stream, req.Aggregate, 0)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(req.Events) {
					t.Fatalf("%s holds %d events after the retries, want %d", req.Aggregate, len(got), len(req.Events))
				}
			}
			// Reusing r1's key on R1 with other content is refused.
			bad := earlier[0]
			bad.Fingerprint = "other"
			again := e.s.AppendMany(ctx, append([]eventstore.AppendRequest{bad}, e.one("a.N99", "n99", eventstore.ExpectNew())))
			if !errors.Is(again[0].Err, eventstore.ErrIdempotencyMismatch) || again[1].Err != nil {
				t.Fatalf("reuse with other content: %v, %v; want ErrIdempotencyMismatch, nil", again[0].Err, again[1].Err)
			}
		})
	}
}

// testGroupMultiEventAtomic: multi-event appends in a group keep their
// events contiguous, and one that fails its check writes none of them.
func testGroupMultiEventAtomic(t *testing.T, srv *natstest.Server) {
	ctx := context.Background()
	e := newEnv(t, srv, 0)
	if _, err := e.s.Append(ctx, e.one("a.M3", "pre", eventstore.ExpectNew())); err != nil {
		t.Fatal(err)
	}
	var reqs []eventstore.AppendRequest
	for i := range 8 {
		agg := fmt.Sprintf("a.M%d", i)
		req := eventstore.AppendRequest{Stream: e.stream, Aggregate: e.subj(agg + ".>"), Expect: eventstore.ExpectNew(),
			IdempotencyKey: fmt.Sprint("m", i), Fingerprint: "f"}
		for j := range 1 + i%3 {
			req.Events = append(req.Events, ev(e.subj(fmt.Sprintf("%s.e%d", agg, j)), strconv.Itoa(i*10+j)))
		}
		reqs = append(reqs, req)
	}
	out := e.s.AppendMany(ctx, reqs)
	for i, o := range out {
		if i == 3 {
			if !errors.Is(o.Err, eventstore.ErrConflict) {
				t.Fatalf("M3: err = %v, want ErrConflict", o.Err)
			}
			continue
		}
		if o.Err != nil {
			t.Fatalf("M%d: %v", i, o.Err)
		}
		if n := o.Result.Last - o.Result.First + 1; n != uint64(len(reqs[i].Events)) {
			t.Fatalf("M%d spans %d sequences for %d events", i, n, len(reqs[i].Events))
		}
		e.checkWritten(t, reqs[i], o.Result)
	}
	got, err := e.s.Load(ctx, e.stream, e.subj("a.M3.>"), 0)
	if err != nil || len(got) != 1 {
		t.Fatalf("M3 holds %d events (%v): the failed append wrote some", len(got), err)
	}
}

// testGroupSameAggregate: two appends to one aggregate never share a batch
// (inside one, the server would check both against the version before
// it): of two expecting the same version the first wins and the second
// conflicts, and appends to it land in the order given.
func testGroupSameAggregate(t *testing.T, srv *natstest.Server) {
	ctx := context.Background()
	e := newEnv(t, srv, 0)
	var reqs []eventstore.AppendRequest
	for i := range 10 {
		reqs = append(reqs, e.one(fmt.Sprintf("a.S%d", i), fmt.Sprint("s", i), eventstore.ExpectNew()))
	}
	reqs = append(reqs,
		e.one("a.S0", "s0-again", eventstore.ExpectNew()),
		e.one("a.S1", "s1-any", eventstore.ExpectAny),
		// A filter covering every S aggregate overlaps them all.
		eventstore.AppendRequest{Stream: e.stream, Aggregate: e.subj("a.>"), Expect: eventstore.ExpectAny,
			Events: []eventstore.Event{ev(e.subj("a.S2.z"), "wide")}},
	)
	out := e.s.AppendMany(ctx, reqs)
	for i, o := range out {
		if i == 10 {
			if !errors.Is(o.Err, eventstore.ErrConflict) {
				t.Fatalf("second ExpectNew on S0: err = %v, want ErrConflict", o.Err)
			}
			continue
		}
		if o.Err != nil {
			t.Fatalf("request %d: %v", i, o.Err)
		}
	}
	if !(out[11].Result.First > out[1].Result.Last) {
		t.Fatalf("S1's second append at %d, not after its first at %d", out[11].Result.First, out[1].Result.Last)
	}
	if !(out[12].Result.First > out[2].Result.Last) {
		t.Fatalf("the wide append at %d, not after S2's at %d", out[12].Result.First, out[2].Result.Last)
	}
}

// testGroupWaitsForBatchSlot: with every atomic-batch slot of the stream
// taken (the server allows 50 open batches per stream), a group waits and
// retries (err 10210) instead of failing, and goes through once slots free.
func testGroupWaitsForBatchSlot(t *testing.T, srv *natstest.Server) {
	ctx := context.Background()
	e := newEnv(t, srv, 0)
	nc := srv.Connect(t)
	const open = 50
	for i := range open {
		m := nats.NewMsg(e.subj(fmt.Sprintf("hold.H%d.x", i)))
		m.Header.Set("Nats-Batch-Id", fmt.Sprintf("%s-hold-%d", e.stream, i))
		m.Header.Set("Nats-Batch-Sequence", "1")
		resp, err := nc.RequestMsg(m, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Data) != 0 {
			t.Fatalf("opening batch %d: %s", i, resp.Data)
		}
	}
	var reqs []eventstore.AppendRequest
	for i := range 12 {
		reqs = append(reqs, e.one(fmt.Sprintf("a.W%d", i), fmt.Sprint("w", i), eventstore.ExpectNew()))
	}
	done := make(chan []eventstore.AppendOutcome)
	go func() { done <- e.s.AppendMany(ctx, reqs) }()
	deadline := time.Now().Add(5 * time.Second)
	for e.s.Stats().Busy == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the group never met a full stream")
		}
		time.Sleep(time.Millisecond)
	}
	for i := range open {
		m := nats.NewMsg(e.subj(fmt.Sprintf("hold.H%d.y", i)))
		m.Header.Set("Nats-Batch-Id", fmt.Sprintf("%s-hold-%d", e.stream, i))
		m.Header.Set("Nats-Batch-Sequence", "2")
		m.Header.Set("Nats-Batch-Commit", "1")
		if _, err := nc.RequestMsg(m, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	for i, o := range <-done {
		if o.Err != nil {
			t.Fatalf("request %d: %v", i, o.Err)
		}
		e.checkWritten(t, reqs[i], o.Result)
	}
}

// testGroupUncheckedShareABatch: appends without an expectation to one
// aggregate may share a batch (nothing is checked), so many at once still
// coalesce, and every one is written once.
func testGroupUncheckedShareABatch(t *testing.T, srv *natstest.Server) {
	ctx := context.Background()
	e := newEnv(t, srv, 0)
	var reqs []eventstore.AppendRequest
	for i := range 32 {
		reqs = append(reqs, e.one("a.U1", fmt.Sprint("u", i), eventstore.ExpectAny))
	}
	before := e.s.Stats()
	for i, o := range e.s.AppendMany(ctx, reqs) {
		if o.Err != nil {
			t.Fatalf("request %d: %v", i, o.Err)
		}
		e.checkWritten(t, reqs[i], o.Result)
	}
	if st := e.s.Stats(); st.Publishes-before.Publishes != 1 {
		t.Fatalf("32 unchecked appends to one aggregate took %d publishes, want 1", st.Publishes-before.Publishes)
	}
}

// testGroupKeepsOrder: an append that must wait for a later batch holds
// back the appends after it that it would clash with, so an unchecked
// append never overtakes a checked one queued before it on its aggregate.
func testGroupKeepsOrder(t *testing.T, srv *natstest.Server) {
	ctx := context.Background()
	e := newEnv(t, srv, 0)
	reqs := []eventstore.AppendRequest{
		e.one("a.K1", "k0", eventstore.ExpectAny),
		e.one("a.K1", "k1", eventstore.ExpectVersion(1)), // k0 is the stream's first message
		e.one("a.K1", "k2", eventstore.ExpectAny),
	}
	var got []uint64
	for i, o := range e.s.AppendMany(ctx, reqs) {
		if o.Err != nil {
			t.Fatalf("request %d: %v", i, o.Err)
		}
		got = append(got, o.Result.First)
	}
	if diff := cmp.Diff([]uint64{1, 2, 3}, got); diff != "" {
		t.Fatalf("sequences (-want +got):\n%s", diff)
	}
}

// testLasts: Lasts answers the last event of every subject matching any of
// many filters, and nothing for filters nothing matches.
func testLasts(t *testing.T, srv *natstest.Server) {
	ctx := context.Background()
	e := newEnv(t, srv, 0)
	for _, subj := range []string{"a.L1.x", "a.L1.y", "a.L1.x", "a.L2.x", "b.L1.x"} {
		if _, err := e.s.Append(ctx, eventstore.AppendRequest{Stream: e.stream, Aggregate: e.subj(subj),
			Events: []eventstore.Event{ev(e.subj(subj), subj)}}); err != nil {
			t.Fatal(err)
		}
	}
	var filters []string
	for i := range 300 { // more than one request's worth
		filters = append(filters, e.subj(fmt.Sprintf("a.L%d.>", i)))
	}
	got, err := e.s.Lasts(ctx, e.stream, filters)
	if err != nil {
		t.Fatal(err)
	}
	var have []string
	for _, r := range got {
		have = append(have, fmt.Sprintf("%d %s", r.Sequence, r.Subject))
	}
	slices.Sort(have)
	want := []string{"2 " + e.subj("a.L1.y"), "3 " + e.subj("a.L1.x"), "4 " + e.subj("a.L2.x")}
	if diff := cmp.Diff(want, have); diff != "" {
		t.Fatalf("Lasts (-want +got):\n%s", diff)
	}
}
