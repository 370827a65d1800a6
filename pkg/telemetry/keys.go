package telemetry

// Attribute keys, defined once for logs (slog) and metric attributes, so
// that a log line, a metric series and a span name the same thing the
// same way and an operator can search by one key everywhere. Span
// attributes use the OpenTelemetry semantic conventions (package semconv)
// where one exists; these are Furrow's own.
const (
	// KeyService names the service: "procurement", "farmer-ledger", ...
	KeyService = "service"
	// KeyStream names a JetStream stream: "LEDGER".
	KeyStream = "stream"
	// KeySeq is a stream sequence.
	KeySeq = "seq"
	// KeyProjection names a projection: "ledger_balances".
	KeyProjection = "projection"
	// KeyCopy is a projection copy's version.
	KeyCopy = "copy"
	// KeyHandler names an event handler (its durable consumer).
	KeyHandler = "handler"
	// KeyOutcome is how an append or a handled message ended.
	KeyOutcome = "outcome"
	// KeyError carries an error.
	KeyError = "error"
	// KeyTraceID and KeySpanID tie a log line to its trace.
	KeyTraceID = LogKeyTraceID
	KeySpanID  = LogKeySpanID
)
