package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/furrow/furrow/pkg/telemetry"
)

func startSpan(t testing.TB) (context.Context, trace.SpanContext) {
	t.Helper()
	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	ctx, span := tp.Tracer("test").Start(context.Background(), "op")
	t.Cleanup(func() { span.End() })
	return ctx, span.SpanContext()
}

func TestCarrierRoundTrip(t *testing.T) {
	t.Parallel()
	ctx, sc := startSpan(t)
	h := nats.Header{}
	telemetry.Inject(ctx, h)
	if diff := cmp.Diff([]string{"traceparent"}, telemetry.HeaderCarrier(h).Keys()); diff != "" {
		t.Fatalf("header keys (-want +got):\n%s", diff)
	}
	got := trace.SpanContextFromContext(telemetry.Extract(context.Background(), h))
	if got.TraceID() != sc.TraceID() || got.SpanID() != sc.SpanID() || !got.IsRemote() {
		t.Fatalf("extracted %v, want remote %v", got, sc)
	}
}

// Headers are case-sensitive: a canonicalised "Traceparent" is not W3C.
func TestExtractIsCaseSensitive(t *testing.T) {
	t.Parallel()
	h := nats.Header{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}
	if sc := trace.SpanContextFromContext(telemetry.Extract(context.Background(), h)); sc.IsValid() {
		t.Fatalf("extracted %v from a capitalised header", sc)
	}
	h = nats.Header{"traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}
	if sc := trace.SpanContextFromContext(telemetry.Extract(context.Background(), h)); sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("extracted %v from a lowercase header", sc)
	}
}

func TestInjectWithoutSpanOrHeader(t *testing.T) {
	t.Parallel()
	h := nats.Header{}
	telemetry.Inject(context.Background(), h)
	if len(h) != 0 {
		t.Fatalf("headers %v written without a span", h)
	}
	ctx, _ := startSpan(t)
	telemetry.Inject(ctx, nil) // must not panic
}

func TestLogHandlerAddsTraceOnlyWithSpan(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := slog.New(telemetry.NewLogHandler(slog.NewJSONHandler(&buf, nil))).With(slog.String("service", "ledger"))
	ctx, sc := startSpan(t)

	log.InfoContext(context.Background(), "no span")
	log.InfoContext(ctx, "in span", slog.Int("n", 1))

	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		delete(m, "time")
		lines = append(lines, m)
	}
	want := []map[string]any{
		{"level": "INFO", "msg": "no span", "service": "ledger"},
		{"level": "INFO", "msg": "in span", "service": "ledger", "n": 1.0,
			telemetry.LogKeyTraceID: sc.TraceID().String(), telemetry.LogKeySpanID: sc.SpanID().String()},
	}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Fatalf("log lines (-want +got):\n%s", diff)
	}
}

func TestConfigFromEnv(t *testing.T) {
	t.Parallel()
	env := map[string]string{"OTEL_TRACES_EXPORTER": " otlp ", "OTEL_SERVICE_NAME": "farmer-ledger"}
	got := telemetry.ConfigFromEnv(func(k string) string { return env[k] })
	if diff := cmp.Diff(telemetry.Config{ServiceName: "farmer-ledger", Exporter: "otlp"}, got); diff != "" {
		t.Fatalf("config (-want +got):\n%s", diff)
	}
}

// Setup changes process-wide state, so these cases run one after another
// and restore it afterwards.
func TestSetup(t *testing.T) {
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	t.Cleanup(func() {
		otel.SetTracerProvider(prevTP)
		otel.SetTextMapPropagator(prevProp)
	})
	for _, tc := range []struct {
		exporter  string
		recording bool
		wantErr   bool
	}{
		{exporter: "", recording: false},
		{exporter: "none", recording: false},
		{exporter: "console", recording: true},
		{exporter: "otlp", recording: true},
		{exporter: "zipkin", wantErr: true},
	} {
		t.Run("exporter="+tc.exporter, func(t *testing.T) {
			var console bytes.Buffer
			ctx := context.Background()
			shutdown, err := telemetry.Setup(ctx, telemetry.Config{
				ServiceName: "farmer-ledger", Exporter: tc.exporter, ConsoleWriter: &console,
			})
			if tc.wantErr {
				if !errors.Is(err, telemetry.ErrConfig) || !strings.Contains(err.Error(), "OTEL_TRACES_EXPORTER") {
					t.Fatalf("Setup error %v, want ErrConfig naming OTEL_TRACES_EXPORTER", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// W3C propagation is on even when tracing is off.
			if got := otel.GetTextMapPropagator().Fields(); !cmp.Equal(got, []string{"traceparent", "tracestate"}) {
				t.Fatalf("propagator fields %v", got)
			}
			_, span := otel.Tracer("test").Start(ctx, "PostEntryOnDeliveryRecorded")
			if span.IsRecording() != tc.recording {
				t.Fatalf("span recording = %v, want %v", span.IsRecording(), tc.recording)
			}
			if tc.exporter != "otlp" { // an ended span would make shutdown look for a collector
				span.End()
			}
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if err := shutdown(sctx); err != nil {
				t.Fatal(err)
			}
			if tc.exporter == "console" {
				out := console.String()
				if !strings.Contains(out, "PostEntryOnDeliveryRecorded") || !strings.Contains(out, "farmer-ledger") {
					t.Fatalf("console output lacks the span or the service name:\n%s", out)
				}
			}
		})
	}
}

func TestSetupNeedsServiceName(t *testing.T) {
	t.Parallel()
	if _, err := telemetry.Setup(context.Background(), telemetry.Config{Exporter: "none"}); !errors.Is(err, telemetry.ErrConfig) {
		t.Fatalf("Setup without a service name: %v, want ErrConfig", err)
	}
}
