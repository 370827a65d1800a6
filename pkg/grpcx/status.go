// Package grpcx holds Furrow's gRPC server plumbing: the one place where
// errors become status codes, and the server options every service shares.
package grpcx

import (
	"context"
	"errors"
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/money"
)

// Status converts an application error into a gRPC status error. Classified
// failures keep their message (it names the field); anything unclassified is
// logged and reported as Internal without leaking details.
func Status(ctx context.Context, log *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok && !isWrapped(err) {
		return err
	}
	var code codes.Code
	switch {
	case errors.Is(err, eventstore.ErrConflict):
		code = codes.Aborted
	case errors.Is(err, eventstore.ErrIdempotencyMismatch):
		code = codes.AlreadyExists
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case failure.KindOf(err) == 0 && errors.Is(err, money.ErrOverflow):
		// A total that does not fit in an int64 (a sum read from a read
		// model, a statement's running balance): the state does not allow
		// an exact answer, and a wrong one is never given.
		code = codes.FailedPrecondition
	case failure.KindOf(err) == 0 && logUnreachable(err):
		// The log did not answer (a NATS node died, a leader is being
		// elected): the write may or may not have happened, and a retry
		// with the same request id is safe. Clients retry UNAVAILABLE.
		log.WarnContext(ctx, "event log unavailable", "err", err)
		return status.Error(codes.Unavailable, "the event log is unavailable; retry with the same request id")
	default:
		code = kindCode(failure.KindOf(err))
	}
	if code == codes.Internal {
		log.ErrorContext(ctx, "request failed", "err", err)
		return status.Error(codes.Internal, "internal error")
	}
	st := status.New(code, err.Error())
	var fe *failure.Error
	if errors.As(err, &fe) && fe.Kind == failure.KindInvalid && fe.Field != "" {
		if d, derr := st.WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: fe.Field, Description: fe.Msg},
		}}); derr == nil {
			st = d
		}
	}
	return st.Err()
}

func kindCode(k failure.Kind) codes.Code {
	switch k {
	case failure.KindInvalid:
		return codes.InvalidArgument
	case failure.KindNotFound:
		return codes.NotFound
	case failure.KindFailedPrecondition:
		return codes.FailedPrecondition
	case failure.KindAlreadyExists:
		return codes.AlreadyExists
	case failure.KindConflict:
		return codes.Aborted
	}
	return codes.Internal
}

// logUnreachable reports whether err says NATS did not answer: no
// response from the stream, a request timeout, no responders, or the
// connection closed or reconnecting.
func logUnreachable(err error) bool {
	return errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrConnectionClosed) ||
		errors.Is(err, nats.ErrConnectionReconnecting) || errors.Is(err, eventstore.ErrReplicaLag)
}

// isWrapped reports whether err is more than a bare status error.
func isWrapped(err error) bool {
	_, ok := err.(interface{ GRPCStatus() *status.Status })
	return !ok
}

// UnaryErrors maps handler errors to status codes for every unary method.
func UnaryErrors(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		resp, err := h(ctx, req)
		if err != nil {
			return nil, Status(ctx, log, err)
		}
		return resp, nil
	}
}

// StreamErrors maps handler errors to status codes for every streaming method.
func StreamErrors(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		return Status(ss.Context(), log, h(srv, ss))
	}
}
