package wmjs_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/natstest"
	"github.com/furrow/furrow/pkg/wmjs"
)

const testStream = "TEST"

// startJS starts an in-process JetStream server with a TEST stream on test.>.
func startJS(t testing.TB) jetstream.JetStream {
	t.Helper()
	js := natstest.Embedded(t).JetStream(t)
	_, err := js.CreateStream(context.Background(), jetstream.StreamConfig{
		Name: testStream, Subjects: []string{"test.>"}, Storage: jetstream.FileStorage,
	})
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// publish stores an event-shaped message and returns its stream sequence.
func publish(t testing.TB, js jetstream.JetStream, subject, id string, extra map[string]string) uint64 {
	t.Helper()
	m := nats.NewMsg(subject)
	m.Data = []byte("payload of " + id)
	m.Header.Set(eventstore.HeaderEventType, "test.v1.Happened")
	m.Header.Set(eventstore.HeaderSchemaVersion, "1")
	m.Header.Set(eventstore.HeaderEventID, id)
	m.Header.Set(eventstore.HeaderOccurredAt, time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC).Format(time.RFC3339Nano))
	for k, v := range extra {
		m.Header.Set(k, v)
	}
	ack, err := js.PublishMsg(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func newSubscriber(t testing.TB, js jetstream.JetStream, cfg wmjs.Config) *wmjs.Subscriber {
	t.Helper()
	cfg.Logger = testLogger(t)
	sub, err := wmjs.NewSubscriber(js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	return sub
}

// receive waits for the next message.
func receive(t testing.TB, ch <-chan *message.Message) *message.Message {
	t.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatal("subscription closed")
		}
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no message within 10s")
	}
	return nil
}

// expectNone checks that nothing arrives on ch for a short while.
func expectNone(t testing.TB, ch <-chan *message.Message) {
	t.Helper()
	select {
	case m := <-ch:
		t.Fatalf("unexpected message %s while another is in flight", m.UUID)
	case <-time.After(200 * time.Millisecond):
	}
}

func seqOf(t testing.TB, m *message.Message) uint64 {
	t.Helper()
	seq, err := wmjs.Sequence(m)
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

func consumerInfo(t testing.TB, js jetstream.JetStream, durable string) *jetstream.ConsumerInfo {
	t.Helper()
	ctx := context.Background()
	c, err := js.Consumer(ctx, testStream, durable)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// eventually polls cond until it holds or 10s pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
