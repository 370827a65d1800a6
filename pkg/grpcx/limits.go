package grpcx

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Limits bound what one client can take from a server, so that a caller
// without a certificate (who may call only the health service) or a
// misbehaving backend cannot exhaust its memory or its goroutines.
//
// Field lengths are not here: the ports check every field against
// pkg/limits before anything is appended (INVALID_ARGUMENT naming the
// field), which is what protovalidate annotations would do at the edge.
type Limits struct {
	// MaxRecvMsgSize is the largest request message in bytes; a larger one
	// is refused with RESOURCE_EXHAUSTED before it is decoded.
	MaxRecvMsgSize int
	// MaxConcurrentStreams is the most calls one HTTP/2 connection may have
	// open at once (SETTINGS_MAX_CONCURRENT_STREAMS): gRPC clients queue
	// further calls, and the server refuses streams beyond it
	// (RST_STREAM REFUSED_STREAM) from clients that ignore the setting.
	MaxConcurrentStreams uint32
	// KeepaliveMinTime is the shortest interval at which a client may ping;
	// a client that pings more often, or pings with no call open, is sent
	// GOAWAY ("too_many_pings") and disconnected.
	KeepaliveMinTime time.Duration
	// KeepaliveTime and KeepaliveTimeout: the server pings a connection
	// quiet for KeepaliveTime and closes it if the ping is not answered
	// within KeepaliveTimeout (dead peers, half-open connections).
	KeepaliveTime, KeepaliveTimeout time.Duration
	// MaxConnectionIdle closes a connection that has had no call open for
	// this long, so idle connections do not accumulate.
	MaxConnectionIdle time.Duration
	// Rate and Burst are each identity's token bucket: Rate calls per
	// second sustained, Burst at once. An identity is the verified client
	// certificate (PeerIdentity), or the peer's IP address without one.
	// A call beyond it is refused with RESOURCE_EXHAUSTED. Rate 0: no
	// rate limit.
	Rate  rate.Limit
	Burst int
	// MaxHealthWatches is the most health Watch streams the server keeps
	// open at once, over all connections (Watch needs no certificate, and
	// every open one holds a goroutine and buffers). Further Watch calls
	// are refused with RESOURCE_EXHAUSTED; Check is not affected.
	MaxHealthWatches int
}

// DefaultLimits are the production services' limits.
//
// 4 MiB requests are gRPC's own default made explicit: the largest valid
// request, a RecordDeliveries of 1,000 lines with every field at its
// pkg/limits bound, is about 1.5 MB; a command's events are appended in
// batches below NATS's 1 MiB payload regardless. 100 streams per
// connection is the HTTP/2 recommendation's minimum and far above what a
// backend needs (calls are short; only TailEvents and Watch stay open).
// 100 calls per second per identity with a burst of 200 leaves a platform
// backend room for a batch import while one certificate cannot starve
// the others.
func DefaultLimits() Limits {
	return Limits{
		MaxRecvMsgSize:       4 << 20,
		MaxConcurrentStreams: 100,
		KeepaliveMinTime:     20 * time.Second,
		KeepaliveTime:        time.Minute,
		KeepaliveTimeout:     20 * time.Second,
		MaxConnectionIdle:    15 * time.Minute,
		Rate:                 100,
		Burst:                200,
		MaxHealthWatches:     256,
	}
}

// options returns the server options and interceptors that enforce l.
func (l Limits) options() []grpc.ServerOption {
	var opts []grpc.ServerOption
	if l.MaxRecvMsgSize > 0 {
		opts = append(opts, grpc.MaxRecvMsgSize(l.MaxRecvMsgSize))
	}
	if l.MaxConcurrentStreams > 0 {
		opts = append(opts, grpc.MaxConcurrentStreams(l.MaxConcurrentStreams))
	}
	if l.KeepaliveMinTime > 0 {
		opts = append(opts, grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime: l.KeepaliveMinTime, PermitWithoutStream: false,
		}))
	}
	if l.KeepaliveTime > 0 || l.MaxConnectionIdle > 0 {
		opts = append(opts, grpc.KeepaliveParams(keepalive.ServerParameters{
			Time: l.KeepaliveTime, Timeout: l.KeepaliveTimeout, MaxConnectionIdle: l.MaxConnectionIdle,
		}))
	}
	rl := newRateLimiter(l.Rate, l.Burst)
	watches := &watchCap{max: int64(l.MaxHealthWatches)}
	opts = append(opts,
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := rl.allow(ctx, info.FullMethod); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := rl.allow(ss.Context(), info.FullMethod); err != nil {
				return err
			}
			if info.FullMethod == healthpb.Health_Watch_FullMethodName {
				release, err := watches.acquire()
				if err != nil {
					return err
				}
				defer release()
			}
			return h(srv, ss)
		}))
	return opts
}

// watchCap counts open health Watch streams.
type watchCap struct {
	max  int64 // 0: no cap
	open atomic.Int64
}

func (w *watchCap) acquire() (release func(), err error) {
	if w.max <= 0 {
		return func() {}, nil
	}
	if w.open.Add(1) > w.max {
		w.open.Add(-1)
		return nil, status.Errorf(codes.ResourceExhausted,
			"too many health Watch streams open on this server (at most %d): use Check, or retry later", w.max)
	}
	return func() { w.open.Add(-1) }, nil
}

// rateLimiter keeps a token bucket per identity. Buckets idle for
// idleAfter are forgotten, and at most maxIdentities are kept: beyond
// that, unknown identities share one bucket, so a flood of new peer
// addresses cannot grow the map without bound.
type rateLimiter struct {
	limit rate.Limit
	burst int

	mu        sync.Mutex
	buckets   map[string]*bucket
	overflow  *rate.Limiter
	lastSweep time.Time
}

type bucket struct {
	lim  *rate.Limiter
	used time.Time
}

const (
	maxIdentities = 10_000
	idleAfter     = 10 * time.Minute
)

func newRateLimiter(limit rate.Limit, burst int) *rateLimiter {
	if limit <= 0 {
		return nil
	}
	if burst < 1 {
		burst = 1
	}
	return &rateLimiter{limit: limit, burst: burst, buckets: map[string]*bucket{},
		overflow: rate.NewLimiter(limit, burst), lastSweep: time.Now()}
}

// allow takes a token from the caller's bucket, or refuses the call.
func (r *rateLimiter) allow(ctx context.Context, method string) error {
	if r == nil {
		return nil
	}
	who := PeerIdentity(ctx)
	if !r.limiter(who).Allow() {
		return status.Errorf(codes.ResourceExhausted,
			"rate limit: %s may make %g calls per second (bursts of %d); %s refused, retry later", who, float64(r.limit), r.burst, method)
	}
	return nil
}

func (r *rateLimiter) limiter(who string) *rate.Limiter {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.lastSweep) > time.Minute {
		for k, b := range r.buckets {
			if now.Sub(b.used) > idleAfter {
				delete(r.buckets, k)
			}
		}
		r.lastSweep = now
	}
	b, ok := r.buckets[who]
	if !ok {
		if len(r.buckets) >= maxIdentities {
			return r.overflow
		}
		b = &bucket{lim: rate.NewLimiter(r.limit, r.burst)}
		r.buckets[who] = b
	}
	b.used = now
	return b.lim
}

// PeerIdentity names the caller for limits: "cert:" and its verified
// client certificate's identity (CertIdentity), else "addr:" and its IP
// address.
func PeerIdentity(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "unknown"
	}
	if info, ok := p.AuthInfo.(credentials.TLSInfo); ok &&
		len(info.State.VerifiedChains) > 0 && len(info.State.VerifiedChains[0]) > 0 {
		return "cert:" + CertIdentity(info.State.VerifiedChains[0][0])
	}
	if p.Addr == nil {
		return "unknown"
	}
	host, _, err := net.SplitHostPort(p.Addr.String())
	if err != nil {
		host = p.Addr.String()
	}
	return "addr:" + host
}

// CertIdentity names a certificate's holder: its common name, else its
// first DNS name, else its serial number. It is the actor of the calls
// the certificate makes.
func CertIdentity(cert *x509.Certificate) string {
	switch {
	case cert.Subject.CommonName != "":
		return cert.Subject.CommonName
	case len(cert.DNSNames) > 0:
		return cert.DNSNames[0]
	default:
		return "serial:" + hex.EncodeToString(cert.SerialNumber.Bytes())
	}
}

// String describes l for the start-up log.
func (l Limits) String() string {
	return fmt.Sprintf("max_recv_msg_size=%d max_concurrent_streams=%d rate=%g/s burst=%d max_health_watches=%d",
		l.MaxRecvMsgSize, l.MaxConcurrentStreams, float64(l.Rate), l.Burst, l.MaxHealthWatches)
}
