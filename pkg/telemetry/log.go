package telemetry

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// Log attribute keys that tie a log line to its trace.
const (
	LogKeyTraceID = "trace_id"
	LogKeySpanID  = "span_id"
)

// NewLogHandler wraps h so that records logged with a context holding a
// valid span context (a local span, or a remote parent from an incoming
// request or event, even with tracing off) carry trace_id and span_id: an
// operator can go from a log line to the trace and back. Use the
// *Context logging methods (InfoContext, ...) to pass the context.
//
// After WithGroup the attributes land inside the group, as every attribute
// of the record does.
func NewLogHandler(h slog.Handler) slog.Handler {
	return logHandler{next: h}
}

type logHandler struct {
	next slog.Handler
}

func (l logHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return l.next.Enabled(ctx, level)
}

func (l logHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r = r.Clone() // the caller's record may share its attribute storage
		r.AddAttrs(
			slog.String(LogKeyTraceID, sc.TraceID().String()),
			slog.String(LogKeySpanID, sc.SpanID().String()),
		)
	}
	return l.next.Handle(ctx, r)
}

func (l logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return logHandler{next: l.next.WithAttrs(attrs)}
}

func (l logHandler) WithGroup(name string) slog.Handler {
	return logHandler{next: l.next.WithGroup(name)}
}
