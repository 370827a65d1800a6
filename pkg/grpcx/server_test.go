package grpcx_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	procurementv1 "github.com/furrow/furrow/proto/furrow/procurement/v1"

	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/grpcx"
)

// panicky panics on GetProgram and refuses GetOrder as a bad request.
type panicky struct {
	procurementv1.UnimplementedProcurementServiceServer
}

func (panicky) GetProgram(context.Context, *procurementv1.GetProgramRequest) (*procurementv1.GetProgramResponse, error) {
	panic("nil map in a handler")
}

func (panicky) GetOrder(context.Context, *procurementv1.GetOrderRequest) (*procurementv1.GetOrderResponse, error) {
	return nil, failure.Invalid("order_id", "must not be empty")
}

func (panicky) GetDelivery(context.Context, *procurementv1.GetDeliveryRequest) (*procurementv1.GetDeliveryResponse, error) {
	return &procurementv1.GetDeliveryResponse{}, nil
}

// syncBuffer is a log sink the server's goroutines write while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestServerRecoversAndLogsAccess: a handler's panic is INTERNAL (logged
// with its stack) and the server keeps serving; every call leaves one
// access-log line with its method and final code, at info for an answer
// the caller must act on and at debug for a success.
func TestServerRecoversAndLogsAccess(t *testing.T) {
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv, _ := grpcx.NewServer(log, grpcx.DefaultLimits())
	procurementv1.RegisterProcurementServiceServer(srv, panicky{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := procurementv1.NewProcurementServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if _, err := c.GetProgram(ctx, &procurementv1.GetProgramRequest{ProgramId: "P1"}); status.Code(err) != codes.Internal || strings.Contains(err.Error(), "nil map") {
		t.Errorf("a panicking handler: %v, want INTERNAL without the panic's text", err)
	}
	if _, err := c.GetOrder(ctx, &procurementv1.GetOrderRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("a refused request: %v, want INVALID_ARGUMENT", err)
	}
	if _, err := c.GetDelivery(ctx, &procurementv1.GetDeliveryRequest{DeliveryId: "D1"}); err != nil {
		t.Errorf("after the panic the server still serves: %v", err)
	}
	out := logs.String()
	for _, want := range []string{
		`msg="panic in gRPC handler" panic="nil map in a handler" stack=`,
		`level=ERROR msg="finished call"`, `grpc.method=GetProgram`, `grpc.code=Internal`,
		`level=INFO msg="finished call"`, `grpc.method=GetOrder`, `grpc.code=InvalidArgument`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "grpc.method=GetDelivery") {
		t.Errorf("a success is logged at info (want debug):\n%s", out)
	}
}
