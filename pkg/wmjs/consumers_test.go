package wmjs_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/furrow/furrow/pkg/deadletter"
	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/wmjs"
)

// TestSubscriberBinds checks a production subscriber (Bind): it never
// creates its durable consumer, refuses one whose settings drifted, naming
// the setting, and consumes (ack after success) from the one an admin
// created.
func TestSubscriberBinds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js := startJS(t)
	cfg := wmjs.Config{Stream: testStream, Durable: "bound", FilterSubjects: []string{"test.bound.>"}, Bind: true}

	// No admin yet: an error, and still no consumer.
	sub := newSubscriber(t, js, cfg)
	if _, err := sub.Subscribe(ctx, testStream); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Fatalf("Subscribe before the admin created the consumer = %v; want ErrConsumerNotFound", err)
	}
	if _, err := js.Consumer(ctx, testStream, "bound"); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Fatalf("a bound subscriber created its consumer: %v", err)
	}

	// The admin creates it, someone later changes it.
	admin := cfg
	admin.Bind = false
	if res, err := wmjs.ApplyConsumer(ctx, js, admin); err != nil || res.Change != eventstore.Created {
		t.Fatalf("ApplyConsumer = %+v, %v; want created", res, err)
	}
	want, err := admin.Consumer()
	if err != nil {
		t.Fatal(err)
	}
	drifted := want
	drifted.AckWait, drifted.MaxAckPending = 30*time.Second, 100
	if _, err := js.UpdateConsumer(ctx, testStream, drifted); err != nil {
		t.Fatal(err)
	}
	_, err = newSubscriber(t, js, cfg).Subscribe(ctx, testStream)
	if !errors.Is(err, eventstore.ErrDrift) || !strings.Contains(err.Error(), "ack_wait is 30s, want 5s") ||
		!strings.Contains(err.Error(), "max_ack_pending is 100, want 1") {
		t.Fatalf("Subscribe to a drifted consumer = %v; want ErrDrift naming ack_wait and max_ack_pending", err)
	}
	info := consumerInfo(t, js, "bound")
	if info.Config.AckWait != 30*time.Second {
		t.Fatalf("a bound subscriber changed its consumer: ack_wait %s", info.Config.AckWait)
	}

	// Repaired by the admin: it consumes and acks after success.
	if res, err := wmjs.ApplyConsumer(ctx, js, admin); err != nil || res.Change != eventstore.Updated {
		t.Fatalf("ApplyConsumer on the drifted consumer = %+v, %v; want updated", res, err)
	}
	ch, err := newSubscriber(t, js, cfg).Subscribe(ctx, testStream)
	if err != nil {
		t.Fatal(err)
	}
	seq := publish(t, js, "test.bound.one", "e1", nil)
	m := receive(t, ch)
	if got := seqOf(t, m); got != seq {
		t.Fatalf("got seq %d, want %d", got, seq)
	}
	m.Ack()
	eventually(t, "the ack", func() bool { return consumerInfo(t, js, "bound").AckFloor.Stream == seq })
}

// TestApplyConsumer checks the admin step for durables: created, then
// unchanged, then every drifted setting put back and listed.
func TestApplyConsumer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js := startJS(t)
	cfg := wmjs.Config{Stream: testStream, Durable: "applied", FilterSubjects: []string{"test.a", "test.b"}}
	if res, err := wmjs.ApplyConsumer(ctx, js, cfg); err != nil || res.Change != eventstore.Created {
		t.Fatalf("first apply = %+v, %v; want created", res, err)
	}
	if res, err := wmjs.ApplyConsumer(ctx, js, cfg); err != nil || res.Change != eventstore.Unchanged {
		t.Fatalf("second apply = %+v, %v; want unchanged", res, err)
	}
	want, err := cfg.Consumer()
	if err != nil {
		t.Fatal(err)
	}
	drifted := want
	drifted.FilterSubjects = []string{"test.a"} // a narrowed filter skips events
	drifted.MaxDeliver = 3                      // the server would drop a message after 3 tries
	if _, err := js.UpdateConsumer(ctx, testStream, drifted); err != nil {
		t.Fatal(err)
	}
	res, err := wmjs.ApplyConsumer(ctx, js, cfg)
	if err != nil || res.Change != eventstore.Updated {
		t.Fatalf("apply to the drifted consumer = %+v, %v; want updated", res, err)
	}
	wantFields := []string{`filter_subjects: ["test.a"] → ["test.a","test.b"]`, "max_deliver: 3 → -1"}
	if diff := cmp.Diff(wantFields, res.Fields); diff != "" {
		t.Errorf("fields changed (-want +got):\n%s", diff)
	}
	if _, err := wmjs.VerifyConsumer(ctx, js, cfg); err != nil {
		t.Errorf("VerifyConsumer after the repair: %v", err)
	}
}

// TestProvisionedRouterVerifiesDeadLetters checks a production router: it
// never creates or changes the dead-letter stream, and refuses one that
// lets dead letters be purged.
func TestProvisionedRouterVerifiesDeadLetters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js := startJS(t)
	dlq := wmjs.DeadLetterConfig{JS: js, Subject: "deadletter.test", Provisioned: true}
	if _, err := wmjs.NewRouter(testLogger(t), dlq); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("NewRouter without the admin's DEADLETTER = %v; want ErrStreamNotFound", err)
	}
	if _, err := js.Stream(ctx, deadletter.Stream); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("a provisioned router created DEADLETTER: %v", err)
	}

	purgeable := deadletter.StreamConfig(1)
	purgeable.DenyPurge = false
	if _, err := js.CreateStream(ctx, purgeable); err != nil {
		t.Fatal(err)
	}
	if _, err := wmjs.NewRouter(testLogger(t), dlq); !errors.Is(err, eventstore.ErrDrift) || !strings.Contains(err.Error(), "deny_purge is false") {
		t.Fatalf("NewRouter on a purgeable DEADLETTER = %v; want ErrDrift naming deny_purge", err)
	}
	if res, err := eventstore.ApplyStream(ctx, js, deadletter.StreamConfig(1), eventstore.ApplyOptions{}); err != nil || res.Change != eventstore.Updated {
		t.Fatalf("admin apply of DEADLETTER = %+v, %v", res, err)
	}
	r, err := wmjs.NewRouter(testLogger(t), dlq)
	if err != nil {
		t.Fatalf("NewRouter on the admin's DEADLETTER: %v", err)
	}
	_ = r.Close()
}
