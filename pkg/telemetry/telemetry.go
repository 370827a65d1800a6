// Package telemetry wires OpenTelemetry tracing into a Furrow process and
// carries trace context across NATS.
//
// Tracing is off unless the operator asks for it (OTEL_TRACES_EXPORTER), so
// a developer's `make run` prints nothing extra and needs no collector. Even
// when it is off the W3C propagator is installed: a trace started by a
// platform backend still passes through Furrow's gRPC calls and events, and
// logs still carry its trace id.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace/noop"
)

// Environment variables ConfigFromEnv reads; they are the OpenTelemetry
// standard ones, so operators configure Furrow like any other service.
const (
	EnvTracesExporter  = "OTEL_TRACES_EXPORTER"
	EnvMetricsExporter = "OTEL_METRICS_EXPORTER"
	EnvServiceName     = "OTEL_SERVICE_NAME"
)

// Exporter values of Config.Exporter.
const (
	ExporterNone    = "none"
	ExporterOTLP    = "otlp"
	ExporterConsole = "console"
)

// ErrConfig means the telemetry configuration is unusable.
var ErrConfig = errors.New("telemetry: bad configuration")

// Config configures Setup.
type Config struct {
	// ServiceName names the process in traces, e.g. "farmer-ledger".
	ServiceName string
	// Exporter is the value of OTEL_TRACES_EXPORTER: "otlp" sends spans over
	// gRPC to OTEL_EXPORTER_OTLP_ENDPOINT (read by the exporter itself),
	// "console" pretty-prints them, "none" or "" turns tracing off.
	Exporter string
	// MetricsExporter is the value of OTEL_METRICS_EXPORTER, with the same
	// values: metrics (appends, handler outcomes, projection lag) are off
	// unless asked for.
	MetricsExporter string
	// ConsoleWriter receives the console exporter's output; default
	// os.Stderr, keeping stdout for the program's own output.
	ConsoleWriter io.Writer
}

// ConfigFromEnv reads the configuration from the environment through
// getenv (os.Getenv in main), so that only main touches the environment.
// A binary sets ServiceName itself when OTEL_SERVICE_NAME is unset.
func ConfigFromEnv(getenv func(string) string) Config {
	return Config{
		ServiceName:     strings.TrimSpace(getenv(EnvServiceName)),
		Exporter:        strings.TrimSpace(getenv(EnvTracesExporter)),
		MetricsExporter: strings.TrimSpace(getenv(EnvMetricsExporter)),
	}
}

// Setup installs the global TracerProvider and the W3C TraceContext
// propagator according to cfg. The returned shutdown flushes and stops the
// exporter; call it once on the way out, with a deadline.
func Setup(ctx context.Context, cfg Config) (shutdown func(context.Context) error, err error) {
	if cfg.ServiceName == "" {
		return nil, fmt.Errorf("%w: a service name is required", ErrConfig)
	}
	otel.SetTextMapPropagator(propagator)
	// Built by hand rather than from resource.Default, which reads the
	// environment: only main does that.
	res, err := resource.New(ctx,
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithAttributes(semconv.ServiceName(cfg.ServiceName)),
		resource.WithTelemetrySDK(),
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	stopTraces, err := setupTraces(ctx, cfg, res)
	if err != nil {
		return nil, err
	}
	stopMetrics, err := setupMetrics(ctx, cfg, res)
	if err != nil {
		_ = stopTraces(ctx)
		return nil, err
	}
	return func(ctx context.Context) error {
		return errors.Join(stopTraces(ctx), stopMetrics(ctx))
	}, nil
}

func setupTraces(ctx context.Context, cfg Config, res *resource.Resource) (func(context.Context) error, error) {
	var exporter sdktrace.SpanExporter
	var opt func(sdktrace.SpanExporter) sdktrace.TracerProviderOption
	var err error
	switch strings.ToLower(cfg.Exporter) {
	case "", ExporterNone:
		otel.SetTracerProvider(noop.NewTracerProvider())
		return func(context.Context) error { return nil }, nil
	case ExporterOTLP:
		exporter, err = otlptracegrpc.New(ctx)
		opt = func(e sdktrace.SpanExporter) sdktrace.TracerProviderOption { return sdktrace.WithBatcher(e) }
	case ExporterConsole:
		exporter, err = stdouttrace.New(stdouttrace.WithPrettyPrint(), stdouttrace.WithWriter(consoleWriter(cfg)))
		// Synchronous: a developer watching the console sees a span as it ends.
		opt = func(e sdktrace.SpanExporter) sdktrace.TracerProviderOption { return sdktrace.WithSyncer(e) }
	default:
		return nil, fmt.Errorf("%w: %s=%q, want otlp, console or none", ErrConfig, EnvTracesExporter, cfg.Exporter)
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: %s exporter: %w", cfg.Exporter, err)
	}
	tp := sdktrace.NewTracerProvider(opt(exporter), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	return tp.Shutdown, nil
}

func consoleWriter(cfg Config) io.Writer {
	if cfg.ConsoleWriter != nil {
		return cfg.ConsoleWriter
	}
	return os.Stderr
}
