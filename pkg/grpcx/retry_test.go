package grpcx_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	procurementv1 "github.com/furrow/furrow/proto/furrow/procurement/v1"

	"github.com/furrow/furrow/pkg/grpcx"
)

// flakyProcurement answers UNAVAILABLE (a replica shutting down) the first
// failures times, NOT_FOUND after that.
type flakyProcurement struct {
	procurementv1.UnimplementedProcurementServiceServer
	calls    atomic.Int32
	failures int32
}

func (f *flakyProcurement) GetProgram(context.Context, *procurementv1.GetProgramRequest) (*procurementv1.GetProgramResponse, error) {
	if f.calls.Add(1) <= f.failures {
		return nil, status.Error(codes.Unavailable, "server is shutting down")
	}
	return nil, status.Error(codes.NotFound, "program P1 does not exist")
}

// TestRetryServiceConfig: a client dialled with the documented service
// config rides over UNAVAILABLE answers (up to four retries) and does not
// retry an answer such as NOT_FOUND.
func TestRetryServiceConfig(t *testing.T) {
	for _, tc := range []struct {
		failures  int32
		wantCode  codes.Code
		wantCalls int32
	}{
		{0, codes.NotFound, 1},
		{3, codes.NotFound, 4},
		{4, codes.NotFound, 5},
		{5, codes.Unavailable, 5}, // five attempts at most
	} {
		srv := &flakyProcurement{failures: tc.failures}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s := grpc.NewServer()
		procurementv1.RegisterProcurementServiceServer(s, srv)
		go s.Serve(lis)
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultServiceConfig(grpcx.RetryServiceConfig))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, err = procurementv1.NewProcurementServiceClient(conn).GetProgram(ctx, &procurementv1.GetProgramRequest{ProgramId: "P1"})
		cancel()
		if got := status.Code(err); got != tc.wantCode || srv.calls.Load() != tc.wantCalls {
			t.Errorf("%d UNAVAILABLE answers first: %v after %d calls, want %v after %d", tc.failures, err, srv.calls.Load(), tc.wantCode, tc.wantCalls)
		}
		conn.Close()
		s.Stop()
	}
}
