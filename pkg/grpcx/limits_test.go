package grpcx_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/furrow/furrow/pkg/devcert"
	"github.com/furrow/furrow/pkg/grpcx"
)

// serve starts a Furrow gRPC server with lim on a loopback socket and
// returns its address.
func serve(t *testing.T, lim grpcx.Limits, opts ...grpc.ServerOption) string {
	t.Helper()
	srv, hs := grpcx.NewServer(slog.New(slog.DiscardHandler), lim, opts...)
	grpcx.MarkServing(srv, hs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func dial(t *testing.T, addr string, creds credentials.TransportCredentials) healthpb.HealthClient {
	t.Helper()
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return healthpb.NewHealthClient(conn)
}

// A client that ignores SETTINGS_MAX_CONCURRENT_STREAMS and opens one
// stream more than allowed on a connection has that stream refused
// (RST_STREAM REFUSED_STREAM); the ones within the limit are served.
// Real gRPC clients read the setting and queue the extra call instead.
func TestStreamsPerConnectionAreLimited(t *testing.T) {
	t.Parallel()
	const limit = 3
	addr := serve(t, grpcx.Limits{MaxConcurrentStreams: limit})
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	// Open limit+1 health Watch streams (they stay open) at once.
	var hdr bytes.Buffer
	enc := hpack.NewEncoder(&hdr)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", healthpb.Health_Watch_FullMethodName},
		{":authority", addr}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	emptyRequest := []byte{0, 0, 0, 0, 0} // uncompressed, zero-length HealthCheckRequest
	for i := range limit + 1 {
		id := uint32(2*i + 1)
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hdr.Bytes(), EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
		if err := fr.WriteData(id, true, emptyRequest); err != nil {
			t.Fatal(err)
		}
	}
	refused := uint32(2*limit + 1)
	var advertised uint32
	served := map[uint32]bool{}
	for len(served) < limit || advertised == 0 {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading frames: %v (advertised %d, served %v)", err, advertised, served)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if v, ok := f.Value(http2.SettingMaxConcurrentStreams); ok {
				advertised = v
			}
		case *http2.RSTStreamFrame:
			if f.StreamID != refused || f.ErrCode != http2.ErrCodeRefusedStream {
				t.Fatalf("RST_STREAM %d %v, want only stream %d refused", f.StreamID, f.ErrCode, refused)
			}
			t.Logf("stream %d: RST_STREAM %v", f.StreamID, f.ErrCode)
			served[refused] = false
		case *http2.DataFrame:
			if f.StreamID == refused {
				t.Fatalf("stream %d beyond the limit of %d was served", refused, limit)
			}
			served[f.StreamID] = true
		}
		if _, ok := served[refused]; ok && len(served) == limit+1 {
			break
		}
	}
	if advertised != limit {
		t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS = %d, want %d", advertised, limit)
	}
	if s, ok := served[refused]; !ok || s {
		t.Errorf("stream %d beyond the limit was not refused (streams seen: %v)", refused, served)
	}
}

// Each identity has its own token bucket: the client certificate that
// exceeds it gets RESOURCE_EXHAUSTED, another certificate is still served.
func TestRateLimitIsPerIdentity(t *testing.T) {
	t.Parallel()
	ca, err := devcert.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	srvPair, err := ca.Server("server", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	srvCert, err := tls.X509KeyPair(srvPair.CertPEM, srvPair.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	const burst = 3
	addr := serve(t, grpcx.Limits{Rate: 0.001, Burst: burst}, grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{srvCert}, ClientCAs: pool, ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12,
	})))
	client := func(cn string) healthpb.HealthClient {
		p, err := ca.Client(cn)
		if err != nil {
			t.Fatal(err)
		}
		c, err := tls.X509KeyPair(p.CertPEM, p.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return dial(t, addr, credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{c}, RootCAs: pool, MinVersion: tls.VersionTLS12}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	alpha, beta := client("alpha"), client("beta")
	for i := range burst {
		if _, err := alpha.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("alpha's call %d within the burst: %v", i+1, err)
		}
	}
	_, err = alpha.Check(ctx, &healthpb.HealthCheckRequest{})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "cert:alpha") {
		t.Fatalf("alpha's call beyond the burst: err = %v, want RESOURCE_EXHAUSTED naming cert:alpha", err)
	}
	t.Logf("alpha refused: %v", err)
	if _, err := beta.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("beta, another identity, after alpha's burst: %v", err)
	}
}

// Health Watch needs no certificate, so the server keeps only so many open
// at once: one more is refused with RESOURCE_EXHAUSTED, and a closed one
// frees its place. Check is not affected.
func TestHealthWatchesAreCapped(t *testing.T) {
	t.Parallel()
	const most = 2
	addr := serve(t, grpcx.Limits{MaxHealthWatches: most})
	hc := dial(t, addr, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var cancels []context.CancelFunc
	for i := range most {
		wctx, wcancel := context.WithCancel(ctx)
		cancels = append(cancels, wcancel)
		w, err := hc.Watch(wctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Recv(); err != nil {
			t.Fatalf("watch %d within the cap: %v", i+1, err)
		}
	}
	w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.Recv()
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("watch %d beyond the cap of %d: err = %v, want RESOURCE_EXHAUSTED", most+1, most, err)
	}
	t.Logf("watch %d refused: %v", most+1, err)
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("Check while the watches are full: %v", err)
	}
	cancels[0]()
	deadline := time.Now().Add(5 * time.Second)
	for {
		w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
		if err == nil {
			if _, err = w.Recv(); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("a watch after one closed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, c := range cancels {
		c()
	}
}

// A request larger than the limit (4 MiB in production) is refused with
// RESOURCE_EXHAUSTED before it is decoded; one just below it is served.
func TestOversizeMessageIsRefused(t *testing.T) {
	t.Parallel()
	lim := grpcx.DefaultLimits()
	if lim.MaxRecvMsgSize != 4<<20 {
		t.Fatalf("DefaultLimits().MaxRecvMsgSize = %d, want 4 MiB as documented", lim.MaxRecvMsgSize)
	}
	addr := serve(t, lim)
	hc := dial(t, addr, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: strings.Repeat("x", lim.MaxRecvMsgSize-64)})
	if status.Code(err) != codes.NotFound { // unknown service: decoded and answered
		t.Fatalf("a request just below the limit: err = %v, want NOT_FOUND (unknown service)", err)
	}
	_, err = hc.Check(ctx, &healthpb.HealthCheckRequest{Service: strings.Repeat("x", lim.MaxRecvMsgSize+1)})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a request over the limit: err = %v, want RESOURCE_EXHAUSTED", err)
	}
	t.Logf("over the limit: %v", err)
}
