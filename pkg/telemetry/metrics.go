package telemetry

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/exporters/stdout/stdoutmetric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// consoleMetricsInterval is how often the console exporter prints: often
// enough to watch, rarely enough to read.
const consoleMetricsInterval = 15 * time.Second

// One telemetry path: every metric is an OpenTelemetry instrument, created
// by the package that owns what it measures (eventstore appends, handler
// outcomes, projection lag, gRPC calls through otelgrpc) from the global
// MeterProvider. Setup installs one SDK MeterProvider per process with two
// kinds of reader: the OTel Prometheus exporter, always, whose registry
// MetricsHandler serves as /metrics on the ops listener; and a push
// exporter when OTEL_METRICS_EXPORTER asks for one (otlp, console).
//
// The provider is process-wide and installed once: OpenTelemetry's global
// provider hands the instruments created before it (package variables)
// to the first real provider only, so a second provider would silently
// miss them. A later Setup in the same process (tests start several
// stacks) reuses the first one's provider and exporters.
var metricsOnce struct {
	sync.Once
	mp       *sdkmetric.MeterProvider
	registry atomic.Pointer[prometheus.Registry]
	err      error
}

// setupMetrics installs the process's MeterProvider (once) and returns a
// function that flushes its push exporter.
func setupMetrics(ctx context.Context, cfg Config, res *resource.Resource) (func(context.Context) error, error) {
	var push sdkmetric.Reader
	switch strings.ToLower(cfg.MetricsExporter) {
	case "", ExporterNone:
	case ExporterOTLP:
		exp, err := otlpmetricgrpc.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("telemetry: otlp metrics exporter: %w", err)
		}
		push = sdkmetric.NewPeriodicReader(exp)
	case ExporterConsole:
		exp, err := stdoutmetric.New(stdoutmetric.WithWriter(consoleWriter(cfg)), stdoutmetric.WithPrettyPrint())
		if err != nil {
			return nil, fmt.Errorf("telemetry: console metrics exporter: %w", err)
		}
		push = sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(consoleMetricsInterval))
	default:
		return nil, fmt.Errorf("%w: %s=%q, want otlp, console or none", ErrConfig, EnvMetricsExporter, cfg.MetricsExporter)
	}
	installMeterProvider(res, push)
	if metricsOnce.err != nil {
		return nil, metricsOnce.err
	}
	mp := metricsOnce.mp
	// The provider outlives this Setup (see metricsOnce): flush, do not
	// shut down.
	return mp.ForceFlush, nil
}

func installMeterProvider(res *resource.Resource, push sdkmetric.Reader) {
	metricsOnce.Do(func() {
		reg := prometheus.NewRegistry()
		exp, err := otelprom.New(
			otelprom.WithRegisterer(reg),
			// service_name on every series: furrow dev serves three
			// services from one process, and dashboards group by it.
			otelprom.WithResourceAsConstantLabels(func(kv attribute.KeyValue) bool {
				return kv.Key == semconv.ServiceNameKey
			}),
		)
		if err != nil {
			metricsOnce.err = fmt.Errorf("telemetry: prometheus exporter: %w", err)
			return
		}
		opts := []sdkmetric.Option{sdkmetric.WithReader(exp), sdkmetric.WithResource(res)}
		if push != nil {
			opts = append(opts, sdkmetric.WithReader(push))
		}
		metricsOnce.mp = sdkmetric.NewMeterProvider(opts...)
		metricsOnce.registry.Store(reg)
		otel.SetMeterProvider(metricsOnce.mp)
	})
}

// MetricsHandler serves the process's metrics in the Prometheus text
// format, through the OpenTelemetry Prometheus exporter: the ops
// listeners' /metrics. Before Setup it serves an empty page.
func MetricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reg := metricsOnce.registry.Load()
		if reg == nil {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			return
		}
		promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(w, r)
	})
}
