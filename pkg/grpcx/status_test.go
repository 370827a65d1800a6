package grpcx_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/grpcx"
	"github.com/furrow/furrow/pkg/money"
)

// An overflow is never an opaque Internal error: a total that does not fit
// is a failed precondition with its message, unless the code that found it
// classified it otherwise.
func TestStatusOfOverflow(t *testing.T) {
	t.Parallel()
	_, sumErr := money.Add(1<<62, 1<<62)
	for _, tc := range []struct {
		name string
		err  error
		want codes.Code
	}{
		{"bare", fmt.Errorf("statement of F1: %w", sumErr), codes.FailedPrecondition},
		{"classified as overflow", failure.Overflow(sumErr, "farmer F1's balance would overflow"), codes.FailedPrecondition},
		{"classified as invalid", &failure.Error{Kind: failure.KindInvalid, Field: "amount_fen", Msg: "too large", Err: sumErr}, codes.InvalidArgument},
	} {
		err := grpcx.Status(context.Background(), slog.New(slog.DiscardHandler), tc.err)
		st := status.Convert(err)
		if st.Code() != tc.want || !strings.Contains(st.Message(), "overflow") {
			t.Errorf("%s: %v, want %s naming the overflow", tc.name, err, tc.want)
		}
	}
}

// TestStatusOfAnUnreachableLog: when a NATS node dies, an append can go
// unanswered (no response from the stream, a timeout, no responders) while
// the cluster elects a new leader. The write may or may not have happened,
// and a retry with the same request id is safe: the client must be told
// UNAVAILABLE, the code clients (and gRPC retry policies) retry, not
// INTERNAL. TestFaultsWithOracle saw INTERNAL for these.
func TestStatusOfAnUnreachableLog(t *testing.T) {
	for _, cause := range []error{jetstream.ErrNoStreamResponse, nats.ErrTimeout, nats.ErrNoResponders, nats.ErrConnectionClosed, nats.ErrConnectionReconnecting, eventstore.ErrReplicaLag} {
		err := grpcx.Status(context.Background(), slog.New(slog.DiscardHandler), fmt.Errorf("append to procurement.delivery.D1.>: %w", cause))
		if got := status.Code(err); got != codes.Unavailable {
			t.Errorf("%v: %v (%v), want Unavailable", cause, got, err)
		}
	}
}
