package admin_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	adminv1 "github.com/furrow/furrow/proto/furrow/admin/v1"
	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/projection"
)

// registerMany appends n farmer registrations in bulk (farmer "hold" at
// position hold, 1-based; 0: none) and returns the last sequence.
func (f *fixture) registerMany(t *testing.T, n, hold int) uint64 {
	t.Helper()
	reqs := make([]eventstore.AppendRequest, n)
	for i := range n {
		id, name := fmt.Sprintf("W%05d", i+1), fmt.Sprintf("farmer %d", i+1)
		if i+1 == hold {
			name = "hold"
		}
		ev, err := eventstore.NewEvent("test.farmer."+id+".farmer_registered", &ledgerevents.FarmerRegistered{FarmerId: id, Name: name, County: "Xunwu"},
			eventstore.Metadata{Actor: "test", CorrelationID: "corr-" + id})
		if err != nil {
			t.Fatal(err)
		}
		reqs[i] = eventstore.AppendRequest{Stream: testStream, Aggregate: "test.farmer." + id + ".>", Events: []eventstore.Event{ev}}
	}
	var last uint64
	for i, o := range eventstore.New(f.js).AppendMany(context.Background(), reqs) {
		if o.Err != nil {
			t.Fatalf("append %d: %v", i, o.Err)
		}
		last = max(last, o.Result.Last)
	}
	return last
}

// copyOf returns copy version of p, nil if p has none.
func copyOf(p *adminv1.Projection, version int64) *adminv1.ProjectionCopy {
	for _, c := range p.GetCopies() {
		if c.GetVersion() == version {
			return c
		}
	}
	return nil
}

// A rebuild watched through WatchProjection: the stream reports the
// shadow's progress as it moves (caught, deterministically, in the middle
// by a farmer the projection waits at), never backwards, and ends by
// itself (until_caught_up) with the shadow caught up: every event applied.
func TestWatchProjectionStreamsRebuildProgress(t *testing.T) {
	t.Parallel()
	const events, holdAt, batch = 3000, 1501, 100
	// Small batches, so that the shadow's checkpoint moves many times.
	f := start(t, func(o *projection.Options) { o.BatchSize, o.CatchUpBatchSize = batch, batch })
	f.broken.Store(false)
	last := f.registerMany(t, events, holdAt)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := f.runner.WaitFor(ctx, last); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	f.hold.Store(&release)
	rb, err := f.client.RebuildProjection(ctx, &adminv1.RebuildProjectionRequest{Name: "notes"})
	if err != nil {
		t.Fatal(err)
	}
	watch, err := f.client.WatchProjection(ctx, &adminv1.WatchProjectionRequest{
		Name: "notes", Interval: durationpb.New(50 * time.Millisecond), UntilCaughtUp: true})
	if err != nil {
		t.Fatal(err)
	}
	var (
		applied  []uint64
		midway   bool
		final    *adminv1.ProjectionCopy
		messages int
	)
	for {
		res, err := watch.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("after %d messages: %v", messages, err)
		}
		messages++
		shadow := copyOf(res.GetProjection(), rb.GetVersion())
		if shadow == nil {
			t.Fatalf("message %d has no copy v%d: %v", messages, rb.GetVersion(), res.GetProjection())
		}
		if live := copyOf(res.GetProjection(), res.GetProjection().GetVersion()); live.GetCheckpoint() != last || live.GetRole() != "live" {
			t.Errorf("message %d: live copy %v, want checkpoint %d", messages, live, last)
		}
		if n := len(applied); n > 0 && shadow.GetApplied() < applied[n-1] {
			t.Errorf("message %d: applied went back from %d to %d", messages, applied[n-1], shadow.GetApplied())
		}
		applied = append(applied, shadow.GetApplied())
		if shadow.GetTotal() != events {
			t.Errorf("message %d: total %d, want %d", messages, shadow.GetTotal(), events)
		}
		if !midway && shadow.GetApplied() >= holdAt-batch {
			// The shadow waits at "hold", its checkpoint before the
			// batch holding it: seen half-way, let it go on.
			midway = true
			if shadow.GetApplied() >= holdAt || shadow.GetCaughtUp() || shadow.GetLagEvents() != events-shadow.GetApplied() ||
				shadow.GetState() != adminv1.ProjectionState_PROJECTION_STATE_CATCHING_UP {
				t.Errorf("half-way: %v", shadow)
			}
			close(release)
		}
		final = shadow
	}
	if !midway {
		close(release)
		t.Errorf("no message showed the rebuild waiting half-way; applied: %v", applied)
	}
	if !final.GetCaughtUp() || final.GetApplied() != events || final.GetLagEvents() != 0 || final.GetCheckpoint() != last || final.GetRole() != "shadow" {
		t.Errorf("last message: %v, want the shadow caught up with %d events applied", final, events)
	}
	t.Logf("%d messages, applied %v", messages, applied)
}

// WatchProjection refuses an unknown projection and a silly interval
// before it streams anything.
func TestWatchProjectionRefusals(t *testing.T) {
	t.Parallel()
	f := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, tc := range []struct {
		req  *adminv1.WatchProjectionRequest
		want codes.Code
	}{
		{&adminv1.WatchProjectionRequest{Name: "nope"}, codes.NotFound},
		{&adminv1.WatchProjectionRequest{Name: "notes", Interval: durationpb.New(time.Millisecond)}, codes.InvalidArgument},
		{&adminv1.WatchProjectionRequest{Name: "notes", Interval: durationpb.New(time.Hour)}, codes.InvalidArgument},
	} {
		watch, err := f.client.WatchProjection(ctx, tc.req)
		if err == nil {
			_, err = watch.Recv()
		}
		if code(err) != tc.want {
			t.Errorf("WatchProjection(%v) = %v, want %s", tc.req, err, tc.want)
		}
	}
	// Without a rebuild, until_caught_up ends after the first message.
	watch, err := f.client.WatchProjection(ctx, &adminv1.WatchProjectionRequest{Name: "notes", UntilCaughtUp: true})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := watch.Recv(); err != nil || res.GetProjection().GetName() != "notes" {
		t.Fatalf("first message = %v, %v", res, err)
	}
	if _, err := watch.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("second Recv without a rebuild = %v, want io.EOF", err)
	}
}

// watchers counts the goroutines serving a WatchProjection call.
func watchers() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return bytes.Count(buf[:n], []byte("admin.(*Server).WatchProjection("))
		}
		buf = make([]byte, 2*len(buf))
	}
}

// A watch of an idle projection stays open (heartbeats) until the client
// cancels, and then its server goroutine ends. Not parallel: it counts
// every goroutine serving a watch in the process.
func TestWatchProjectionEndsWhenClientCancels(t *testing.T) {
	f := start(t)
	f.broken.Store(false)
	f.register(t, "F1", "farmer F1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watch, err := f.client.WatchProjection(ctx, &adminv1.WatchProjectionRequest{Name: "notes", Interval: durationpb.New(50 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatal(err)
	}
	// A change is reported, and the stream stays open after it.
	seq := f.register(t, "F2", "farmer F2")
	for {
		res, err := watch.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if res.GetProjection().GetCheckpoint() >= seq {
			break
		}
	}
	if n := watchers(); n != 1 {
		t.Fatalf("%d goroutines serve a watch while one is open, want 1", n)
	}
	cancel()
	if _, err := watch.Recv(); code(err) != codes.Canceled {
		t.Errorf("Recv after cancel = %v, want Canceled", err)
	}
	eventually(t, "the watch's server goroutine to end", func() bool { return watchers() == 0 })
}
