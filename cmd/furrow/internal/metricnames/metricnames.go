// Package metricnames lists the Prometheus series every Furrow process
// exports on its ops listener's /metrics once it has served a call,
// appended an event, handled one and run its projections: `furrow dev`
// and the production binaries alike, all from OpenTelemetry instruments
// through the OTel Prometheus exporter. The stack's and the production
// test check their /metrics against it, and deploy/grafana's test checks
// the dashboard and alert rules query only names a binary exports.
package metricnames

import "strings"

// Core are the metric families (Prometheus names, before the _bucket,
// _sum and _count suffixes of histograms).
var Core = []string{
	// gRPC server calls and latency (otelgrpc), by rpc_method and
	// rpc_response_status_code.
	"rpc_server_call_duration_seconds",
	// Event-store appends (package eventstore).
	"furrow_eventstore_appends_total",
	"furrow_eventstore_events_total",
	"furrow_eventstore_append_duration_seconds",
	// Event handler outcomes (package wmjs).
	"furrow_handler_messages_total",
	"furrow_handler_duration_seconds",
	// Projection lag and health (package projection).
	"furrow_projection_lag_events",
	"furrow_projection_lag_seconds",
	"furrow_projection_healthy",
	// Dead-letter stream size (package deadletter).
	"furrow_deadletter_letters",
	"furrow_deadletter_resolved",
}

// Families returns the metric family names found in a Prometheus text
// exposition: every sample's name, with a histogram's _bucket, _sum and
// _count reduced to the family.
func Families(exposition string) map[string]bool {
	out := map[string]bool{}
	for line := range strings.Lines(exposition) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		name, _, _ := strings.Cut(line, " ")
		name, _, _ = strings.Cut(name, "{")
		out[name] = true
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if family, ok := strings.CutSuffix(name, suffix); ok {
				out[family] = true
			}
		}
	}
	return out
}
