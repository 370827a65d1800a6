package grpcx

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
)

// NewServer returns a gRPC server with Furrow's common plumbing: OpenTelemetry
// tracing, panic recovery and an access log (go-grpc-middleware), the
// limits lim (message size, streams per connection, keepalive enforcement,
// a rate limit per identity, open health Watch streams), error-to-status
// mapping, health checking and server reflection (so grpcurl can list and
// describe the API). Limits are checked before opts' interceptors
// (authentication among them) run; the access log sees every call's final
// status, refusals by the limits and by authentication included.
func NewServer(log *slog.Logger, lim Limits, opts ...grpc.ServerOption) (*grpc.Server, *health.Server) {
	rec := recovery.WithRecoveryHandlerContext(recovered(log))
	access, accessOpts := accessLogger(log), []logging.Option{logging.WithLogOnEvents(logging.FinishCall), logging.WithLevels(accessLevel)}
	base := []grpc.ServerOption{
		grpc.StatsHandler(otelgrpc.NewServerHandler()),
		// The access log outermost, so it also records a recovered panic.
		grpc.ChainUnaryInterceptor(logging.UnaryServerInterceptor(access, accessOpts...), recovery.UnaryServerInterceptor(rec)),
		grpc.ChainStreamInterceptor(logging.StreamServerInterceptor(access, accessOpts...), recovery.StreamServerInterceptor(rec)),
	}
	base = append(base, lim.options()...)
	base = append(base,
		grpc.ChainUnaryInterceptor(UnaryErrors(log)),
		grpc.ChainStreamInterceptor(StreamErrors(log)))
	opts = append(base, opts...)
	srv := grpc.NewServer(opts...)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)
	return srv, hs
}

// MarkServing sets every registered service, and the server as a whole, to
// SERVING in hs.
func MarkServing(srv *grpc.Server, hs *health.Server) {
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	for name := range srv.GetServiceInfo() {
		hs.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
}

// recovered turns a handler's panic into INTERNAL, logging it with its
// stack; the process keeps serving.
func recovered(log *slog.Logger) recovery.RecoveryHandlerFuncContext {
	return func(ctx context.Context, p any) error {
		log.ErrorContext(ctx, "panic in gRPC handler", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		return status.Error(codes.Internal, "internal error")
	}
}

// accessLogger writes the access log (one "finished call" line per call,
// with the method, code and duration) to log.
func accessLogger(log *slog.Logger) logging.Logger {
	return logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		log.Log(ctx, slog.Level(lvl), msg, fields...)
	})
}

// accessLevel is the access log's level for a call's code: successes at
// debug (a busy server makes thousands a second), answers a caller must
// act on at info, the log or a replica not answering at warn, faults at
// error.
func accessLevel(code codes.Code) logging.Level {
	switch code {
	case codes.OK:
		return logging.LevelDebug
	case codes.Unavailable, codes.DeadlineExceeded:
		return logging.LevelWarn
	case codes.Internal, codes.Unknown, codes.DataLoss, codes.Unimplemented:
		return logging.LevelError
	}
	return logging.LevelInfo
}
