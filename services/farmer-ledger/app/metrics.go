package app

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
)

// trialBalanceDifference is Σ debits − Σ credits of the last trial balance
// this process computed: 0 while the journal balances. An alert on it
// being non-zero (deploy/grafana) pages on the one figure that must never
// move. It comes from the global MeterProvider (pkg/telemetry); the
// creation error comes with a usable no-op instrument and is dropped.
var trialBalanceDifference, _ = otel.Meter("github.com/furrow/furrow/services/farmer-ledger/app").Int64Gauge(
	"furrow.ledger.trial_balance.difference",
	metric.WithDescription("Debits minus credits of the last trial balance computed, in fen (0: balanced)"))

// recordTrialBalance records a computed trial balance's difference.
func recordTrialBalance(ctx context.Context, debitFen, creditFen int64) {
	trialBalanceDifference.Record(ctx, debitFen-creditFen)
}
