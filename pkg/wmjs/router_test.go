package wmjs_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/wmjs"
)

func newRouter(t testing.TB, js jetstream.JetStream) *message.Router {
	t.Helper()
	r, err := wmjs.NewRouter(testLogger(t), wmjs.DeadLetterConfig{
		JS: js, Subject: "deadletter.test", MaxRetries: 2, RetryInitialInterval: 5 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// runRouter runs r until the test ends.
func runRouter(t testing.TB, r *message.Router) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background()) }()
	select {
	case <-r.Running():
	case err := <-done:
		t.Fatalf("router stopped at start: %v", err)
	}
	t.Cleanup(func() {
		_ = r.Close()
		if err := <-done; err != nil {
			t.Errorf("router: %v", err)
		}
	})
}

func deadLetters(t testing.TB, js jetstream.JetStream) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := context.Background()
	st, err := js.Stream(ctx, wmjs.DefaultDeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// A message whose handler keeps failing (error or panic) is retried
// MaxRetries times, parked in the dead-letter stream with the reason and its
// origin, and acked at the source; the next message is then processed.
func TestPoisonMessageIsDeadLettered(t *testing.T) {
	t.Parallel()
	js := startJS(t)
	r := newRouter(t, js)
	sub := newSubscriber(t, js, wmjs.Config{Stream: testStream, Durable: "poison", FilterSubjects: []string{"test.d.>"}})
	var mu sync.Mutex
	attempts := map[string]int{}
	processed := make(chan string, 10)
	r.AddConsumerHandler("PostEntryOnTestRecorded", testStream, sub, func(m *message.Message) error {
		mu.Lock()
		attempts[m.UUID]++
		mu.Unlock()
		switch m.UUID {
		case "bad":
			return errors.New("ledger account missing")
		case "panics":
			panic("boom\nsecond line")
		}
		processed <- m.UUID
		return nil
	})
	runRouter(t, r)

	// The expected-stream header is stored with the event; copied into the
	// dead letter it would make that publish fail.
	badSeq := publish(t, js, "test.d.1.recorded", "bad", map[string]string{jetstream.ExpectedStreamHeader: testStream})
	panicSeq := publish(t, js, "test.d.2.recorded", "panics", nil)
	goodSeq := publish(t, js, "test.d.3.recorded", "good", nil)

	select {
	case id := <-processed:
		if id != "good" {
			t.Fatalf("processed %s, want good", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the message after the poison ones was not processed")
	}
	eventually(t, "all three acked at the source", func() bool {
		info := consumerInfo(t, js, "poison")
		return info.AckFloor.Stream == goodSeq && info.NumAckPending == 0
	})

	dls := deadLetters(t, js)
	if len(dls) != 2 {
		t.Fatalf("%d dead letters, want 2", len(dls))
	}
	for i, tc := range []struct {
		id, subject, reason string
		seq                 uint64
	}{
		{"bad", "test.d.1.recorded", "ledger account missing", badSeq},
		{"panics", "test.d.2.recorded", "boom", panicSeq},
	} {
		dl := dls[i]
		want := map[string]string{
			"subject":                      "deadletter.test",
			eventstore.HeaderEventID:       tc.id,
			eventstore.HeaderEventType:     "test.v1.Happened",
			wmjs.HeaderDeadLetterHandler:   "PostEntryOnTestRecorded",
			wmjs.HeaderDeadLetterStream:    testStream,
			wmjs.HeaderDeadLetterSequence:  strconv.FormatUint(tc.seq, 10),
			wmjs.HeaderDeadLetterSubject:   tc.subject,
			wmjs.HeaderDeadLetterDelivered: "1",
			jetstream.ExpectedStreamHeader: "",
			"payload":                      "payload of " + tc.id,
		}
		got := map[string]string{"subject": dl.Subject, "payload": string(dl.Data)}
		for k := range want {
			if _, ok := got[k]; !ok {
				got[k] = dl.Header.Get(k)
			}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("dead letter %s (-want +got):\n%s", tc.id, diff)
		}
		reason := dl.Header.Get(wmjs.HeaderDeadLetterReason)
		if !strings.Contains(reason, tc.reason) || strings.ContainsAny(reason, "\r\n") {
			t.Errorf("dead letter %s: reason %q, want one line containing %q", tc.id, reason, tc.reason)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff(map[string]int{"bad": 3, "panics": 3, "good": 1}, attempts); diff != "" {
		t.Errorf("handler calls, MaxRetries 2 (-want +got):\n%s", diff)
	}
}

// Closing the router while a handler is blocked neither acks nor parks the
// message: a restarted handler gets it again.
func TestRouterShutdownMidHandlerLosesNothing(t *testing.T) {
	t.Parallel()
	js := startJS(t)
	r := newRouter(t, js)
	cfg := wmjs.Config{Stream: testStream, Durable: "shutdown", AckWait: 500 * time.Millisecond}
	started := make(chan struct{})
	var once sync.Once
	r.AddConsumerHandler("Blocks", testStream, newSubscriber(t, js, cfg), func(m *message.Message) error {
		once.Do(func() { close(started) })
		<-m.Context().Done()
		return m.Context().Err()
	})
	runRouter(t, r)
	seq := publish(t, js, "test.s.1.recorded", "e1", nil)
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("handler not called")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if dls := deadLetters(t, js); len(dls) != 0 {
		t.Fatalf("%d dead letters after shutdown, want 0", len(dls))
	}
	if info := consumerInfo(t, js, "shutdown"); info.AckFloor.Stream != 0 {
		t.Fatalf("ack floor %d after shutdown mid-handler, want 0", info.AckFloor.Stream)
	}

	ch, err := newSubscriber(t, js, cfg).Subscribe(context.Background(), testStream)
	if err != nil {
		t.Fatal(err)
	}
	again := receive(t, ch)
	if again.UUID != "e1" || seqOf(t, again) != seq {
		t.Fatalf("after restart got %s seq %d, want e1 seq %d", again.UUID, seqOf(t, again), seq)
	}
	again.Ack()
}

// A handler's span continues the producer's trace from the traceparent
// header, and the messages it produces carry its trace and the correlation
// id. Not parallel: it replaces the global TracerProvider.
func TestRouterTracingAndCorrelation(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() {
		otel.SetTracerProvider(prev)
		_ = tp.Shutdown(context.Background())
	})

	js := startJS(t)
	r := newRouter(t, js)
	pub, err := wmjs.NewPublisher(js)
	if err != nil {
		t.Fatal(err)
	}
	const handler = "EarnPremiumOnSaleReported"
	seen := make(chan trace.SpanContext, 1)
	r.AddHandler(handler, testStream,
		newSubscriber(t, js, wmjs.Config{Stream: testStream, Durable: "trace", FilterSubjects: []string{"test.sale.>"}}),
		"test.premium.P1.earned", pub,
		func(m *message.Message) ([]*message.Message, error) {
			seen <- trace.SpanContextFromContext(m.Context())
			out := message.NewMessage("premium-1", []byte("earned"))
			out.Metadata.Set(eventstore.HeaderEventID, "premium-1")
			return []*message.Message{out}, nil
		})
	runRouter(t, r)

	const (
		traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
		spanID  = "00f067aa0ba902b7"
	)
	publish(t, js, "test.sale.S1.reported", "sale-1", map[string]string{
		eventstore.HeaderTraceParent:   "00-" + traceID + "-" + spanID + "-01",
		eventstore.HeaderCorrelationID: "corr-1",
	})

	var inHandler trace.SpanContext
	select {
	case inHandler = <-seen:
	case <-time.After(10 * time.Second):
		t.Fatal("handler not called")
	}
	if inHandler.TraceID().String() != traceID {
		t.Fatalf("handler context trace id %s, want %s", inHandler.TraceID(), traceID)
	}

	var span sdktrace.ReadOnlySpan
	eventually(t, "handler span ended", func() bool {
		for _, s := range rec.Ended() {
			if s.Name() == "process "+testStream && consumerGroup(s) == handler {
				span = s
				return true
			}
		}
		return false
	})
	got := map[string]string{
		"parent trace": span.Parent().TraceID().String(),
		"parent span":  span.Parent().SpanID().String(),
		"span":         span.SpanContext().SpanID().String(),
		"kind":         span.SpanKind().String(),
	}
	want := map[string]string{
		"parent trace": traceID,
		"parent span":  spanID,
		"span":         inHandler.SpanID().String(),
		"kind":         trace.SpanKindConsumer.String(),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("handler span (-want +got):\n%s", diff)
	}

	var produced *jetstream.RawStreamMsg
	eventually(t, "produced message stored", func() bool {
		st, err := js.Stream(context.Background(), testStream)
		if err != nil {
			t.Fatal(err)
		}
		produced, err = st.GetLastMsgForSubject(context.Background(), "test.premium.P1.earned")
		return err == nil
	})
	gotHeaders := map[string]string{
		eventstore.HeaderCorrelationID: produced.Header.Get(eventstore.HeaderCorrelationID),
		eventstore.HeaderCausationID:   produced.Header.Get(eventstore.HeaderCausationID),
		eventstore.HeaderTraceParent:   produced.Header.Get(eventstore.HeaderTraceParent),
		jetstream.MsgIDHeader:          produced.Header.Get(jetstream.MsgIDHeader),
		wmjs.MetaSequence:              produced.Header.Get(wmjs.MetaSequence),
	}
	wantHeaders := map[string]string{
		eventstore.HeaderCorrelationID: "corr-1",
		eventstore.HeaderCausationID:   "sale-1",
		eventstore.HeaderTraceParent:   "00-" + traceID + "-" + span.SpanContext().SpanID().String() + "-01",
		jetstream.MsgIDHeader:          "premium-1",
		wmjs.MetaSequence:              "", // per-delivery metadata is not a header
	}
	if diff := cmp.Diff(wantHeaders, gotHeaders); diff != "" {
		t.Fatalf("produced message headers (-want +got):\n%s", diff)
	}
}

func TestNewRouterValidates(t *testing.T) {
	t.Parallel()
	js := startJS(t)
	for _, subject := range []string{"", "deadletter.*", "deadletter.>", "dead..letter"} {
		if _, err := wmjs.NewRouter(nil, wmjs.DeadLetterConfig{JS: js, Subject: subject}); err == nil {
			t.Errorf("NewRouter with subject %q succeeded", subject)
		}
	}
	if _, err := wmjs.NewRouter(nil, wmjs.DeadLetterConfig{Subject: "deadletter.x"}); err == nil {
		t.Error("NewRouter without JetStream succeeded")
	}
}

// A subject outside the stream's subjects is added; existing ones are kept.
func TestEnsureDeadLetterStreamAddsSubject(t *testing.T) {
	t.Parallel()
	js := startJS(t)
	ctx := context.Background()
	for _, subject := range []string{"deadletter.ledger", "deadletter.premium", "poison.ledger"} {
		if err := wmjs.EnsureDeadLetterStream(ctx, wmjs.DeadLetterConfig{JS: js, Subject: subject}); err != nil {
			t.Fatal(err)
		}
	}
	st, err := js.Stream(ctx, wmjs.DefaultDeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	if diff := cmp.Diff([]string{"deadletter.>", "poison.ledger"}, cfg.Subjects); diff != "" {
		t.Fatalf("subjects (-want +got):\n%s", diff)
	}
	if cfg.Storage != jetstream.FileStorage {
		t.Fatalf("storage %v, want file", cfg.Storage)
	}
}

// A handler that fails only because a dependency is down (a transient
// error) is not dead-lettered when its retries run out: the message is
// nacked, redelivered later, and handled once the outage ends.
func TestTransientFailureIsRedeliveredNotParked(t *testing.T) {
	t.Parallel()
	js := startJS(t)
	r := newRouter(t, js) // MaxRetries 2: three calls per delivery
	sub := newSubscriber(t, js, wmjs.Config{Stream: testStream, Durable: "transient", NakDelay: 20 * time.Millisecond})
	var mu sync.Mutex
	calls := 0
	done := make(chan string, 1)
	r.AddConsumerHandler("PostEntryOnTestRecorded", testStream, sub, func(m *message.Message) error {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		if n <= 4 { // the whole first delivery and the first call of the second
			return wmjs.Transient(errors.New("ledger database unreachable"))
		}
		done <- m.Metadata.Get(wmjs.MetaDelivered)
		return nil
	})
	runRouter(t, r)
	seq := publish(t, js, "test.t.1.recorded", "outage", nil)

	select {
	case delivered := <-done:
		if delivered != "2" {
			t.Errorf("handled on delivery %s, want 2 (after one nack)", delivered)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("message never handled after the outage")
	}
	eventually(t, "acked at the source", func() bool {
		info := consumerInfo(t, js, "transient")
		return info.AckFloor.Stream == seq && info.NumAckPending == 0
	})
	st, err := js.Stream(context.Background(), wmjs.DefaultDeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Msgs; n != 0 {
		t.Errorf("%d dead letters for a transient failure, want 0", n)
	}
	for _, err := range []error{
		wmjs.Transient(errors.New("x")),
		fmt.Errorf("append: %w", nats.ErrConnectionClosed),
		fmt.Errorf("append: %w", nats.ErrTimeout),
	} {
		if !wmjs.IsTransient(err) {
			t.Errorf("IsTransient(%v) = false", err)
		}
	}
	if wmjs.IsTransient(errors.New("ledger account missing")) || wmjs.IsTransient(nil) {
		t.Error("IsTransient says a plain error is transient")
	}
}

// consumerGroup is a span's messaging.consumer.group.name.
func consumerGroup(s sdktrace.ReadOnlySpan) string {
	for _, kv := range s.Attributes() {
		if kv.Key == "messaging.consumer.group.name" {
			return kv.Value.AsString()
		}
	}
	return ""
}
