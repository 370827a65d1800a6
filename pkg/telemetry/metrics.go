package telemetry

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/stdout/stdoutmetric"
	"go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
)

// consoleMetricsInterval is how often the console exporter prints: often
// enough to watch, rarely enough to read.
const consoleMetricsInterval = 15 * time.Second

// setupMetrics installs the global MeterProvider. Instruments are created
// by the packages that own what they measure (eventstore appends, handler
// outcomes, projection lag) from the global provider, so they report once
// a real provider is installed and cost nothing while metrics are off.
func setupMetrics(ctx context.Context, cfg Config, res *resource.Resource) (func(context.Context) error, error) {
	var reader sdkmetric.Reader
	switch strings.ToLower(cfg.MetricsExporter) {
	case "", ExporterNone:
		otel.SetMeterProvider(noop.NewMeterProvider())
		return func(context.Context) error { return nil }, nil
	case ExporterOTLP:
		exp, err := otlpmetricgrpc.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("telemetry: otlp metrics exporter: %w", err)
		}
		reader = sdkmetric.NewPeriodicReader(exp)
	case ExporterConsole:
		exp, err := stdoutmetric.New(stdoutmetric.WithWriter(consoleWriter(cfg)), stdoutmetric.WithPrettyPrint())
		if err != nil {
			return nil, fmt.Errorf("telemetry: console metrics exporter: %w", err)
		}
		reader = sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(consoleMetricsInterval))
	default:
		return nil, fmt.Errorf("%w: %s=%q, want otlp, console or none", ErrConfig, EnvMetricsExporter, cfg.MetricsExporter)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader), sdkmetric.WithResource(res))
	otel.SetMeterProvider(mp)
	return mp.Shutdown, nil
}
