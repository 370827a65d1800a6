package wmjs_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/furrow/furrow/pkg/wmjs"
)

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) records(t testing.TB) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

// TestRetriesAreWarningsGivingUpIsAnError: each retry of a failing handler
// is a WARN naming the handler and the message; only giving up (the
// message parked) is logged as ERROR.
func TestRetriesAreWarningsGivingUpIsAnError(t *testing.T) {
	t.Parallel()
	js := startJS(t)
	logs := &lockedBuffer{}
	r, err := wmjs.NewRouter(slog.New(slog.NewJSONHandler(logs, nil)), wmjs.DeadLetterConfig{
		JS: js, Subject: "deadletter.logs", MaxRetries: 2, RetryInitialInterval: 5 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	sub := newSubscriber(t, js, wmjs.Config{Stream: testStream, Durable: "logs", FilterSubjects: []string{"test.l.>"}})
	r.AddConsumerHandler("SendOnTestRecorded", testStream, sub, func(*message.Message) error {
		return errors.New("provider did not answer")
	})
	runRouter(t, r)
	seq := publish(t, js, "test.l.1.recorded", "stuck", nil)
	eventually(t, "the message parked", func() bool { return consumerInfo(t, js, "logs").AckFloor.Stream == seq })

	var warns, errs int
	for _, rec := range logs.records(t) {
		switch rec["level"] {
		case "WARN":
			if rec["msg"] == "Error occurred, retrying" {
				warns++
				if rec["handler_name"] != "SendOnTestRecorded" || rec["seq"] != "1" {
					t.Errorf("retry record does not name the handler and message: %v", rec)
				}
			}
		case "ERROR":
			errs++
			if rec["msg"] == "Error occurred, retrying" {
				t.Errorf("a retry logged as ERROR: %v", rec)
			}
		}
	}
	if warns != 2 {
		t.Errorf("%d retry warnings, want 2 (MaxRetries)", warns)
	}
	if errs == 0 {
		t.Error("giving up logged no ERROR")
	}
}
