// Package requests remembers the request ids a service's commands were
// called with, beyond the event streams' de-duplication window.
//
// Every command is idempotent by its request_id: a retry returns the first
// outcome, the same id with other content is ALREADY_EXISTS. Within a
// stream's duplicate window (2 minutes by default) JetStream's Nats-Msg-Id
// catches a request id reused anywhere in the stream; after it, each
// aggregate recognises the ids its own events were written under
// (eventstore.Requests), so an id reused for a command on *another*
// aggregate would go unnoticed. A Registry closes that gap: a JetStream
// key-value bucket per service (<STREAM>_REQUESTS) maps each request id a
// command succeeded with to the fingerprint of its request, for TTL
// (DefaultTTL, 90 days). UnaryServerInterceptor looks the id up before the
// command runs, refuses one recorded with another fingerprint
// (ALREADY_EXISTS, as the aggregates do), and records it once the command
// succeeded (a refused command records nothing: its id may be used again).
// A request that carries several commands (procurement's RecordDeliveries)
// has no request_id of its own: its service checks and records each line
// with Check and Record.
//
// The registry is a second line, never the only one: the aggregates'
// checks stay, so a lost or expired entry weakens nothing else; two
// concurrent first uses of one id on two aggregates can both pass it
// (within the duplicate window Nats-Msg-Id still catches them).
package requests

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/failure"
)

// DefaultTTL is how long a request id is remembered: far beyond any
// client's retry horizon. After it, an id reused for a command on another
// aggregate is no longer detected (on the same aggregate it always is).
const DefaultTTL = 90 * 24 * time.Hour

// Bucket is the key-value bucket of a service whose event stream is stream.
func Bucket(stream string) string { return stream + "_REQUESTS" }

// Registry is one service's record of request ids.
type Registry struct {
	kv  jetstream.KeyValue
	now func() time.Time
}

// Config is the bucket of the service whose event stream is stream, with
// replicas replicas (<= 0: 1) and ttl (<= 0: DefaultTTL).
func Config(stream string, replicas int, ttl time.Duration) jetstream.KeyValueConfig {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	if replicas <= 0 {
		replicas = 1
	}
	return jetstream.KeyValueConfig{
		Bucket:      Bucket(stream),
		Description: "request ids of " + stream + "'s commands, with their fingerprints (pkg/requests)",
		History:     1,
		TTL:         ttl,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	}
}

// Apply creates the service's bucket, or brings an existing one to cfg:
// the admin's migration step (`furrow admin streams apply`; `furrow dev`
// runs it too). It reports what it did as eventstore.ApplyStream does.
// Like eventstore.ApplyStream it refuses (eventstore.ErrRefused) to lower
// the bucket's replicas unless opts allow it.
func Apply(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig, opts eventstore.ApplyOptions) (eventstore.ApplyResult, error) {
	res := eventstore.ApplyResult{Name: "KV_" + cfg.Bucket}
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound):
		if _, err := js.CreateKeyValue(ctx, cfg); err != nil {
			return res, fmt.Errorf("bucket %s: %w", cfg.Bucket, err)
		}
		res.Change = eventstore.Created
		return res, nil
	case err != nil:
		return res, fmt.Errorf("bucket %s: %w", cfg.Bucket, err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return res, fmt.Errorf("bucket %s: %w", cfg.Bucket, err)
	}
	info := st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config
	if info.MaxAge == cfg.TTL && info.Replicas == cfg.Replicas && info.MaxMsgsPerSubject == int64(cfg.History) {
		res.Change = eventstore.Unchanged
		return res, nil
	}
	if info.MaxAge != cfg.TTL {
		res.Fields = append(res.Fields, fmt.Sprintf("max_age: %v → %v", info.MaxAge, cfg.TTL))
	}
	if info.Replicas > cfg.Replicas && !opts.AllowReplicaDecrease {
		return res, fmt.Errorf("%w: stream %s: num_replicas: would lower %d → %d (fewer copies of the request ids); allow it explicitly",
			eventstore.ErrRefused, res.Name, info.Replicas, cfg.Replicas)
	}
	if info.Replicas != cfg.Replicas {
		res.Fields = append(res.Fields, fmt.Sprintf("num_replicas: %d → %d", info.Replicas, cfg.Replicas))
	}
	if _, err := js.UpdateKeyValue(ctx, cfg); err != nil {
		return res, fmt.Errorf("bucket %s: %w", cfg.Bucket, err)
	}
	res.Change = eventstore.Updated
	return res, nil
}

// Open creates (or updates) the service's bucket and returns its registry:
// for a process that administers its own server (tests).
func Open(ctx context.Context, js jetstream.JetStream, stream string, replicas int, ttl time.Duration) (*Registry, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, Config(stream, replicas, ttl))
	if err != nil {
		return nil, fmt.Errorf("request registry %s: %w", Bucket(stream), err)
	}
	return &Registry{kv: kv, now: time.Now}, nil
}

// Bind returns the registry over the service's bucket, which an admin
// created (Apply): a production service's NATS user may not create it.
func Bind(ctx context.Context, js jetstream.JetStream, stream string) (*Registry, error) {
	kv, err := js.KeyValue(ctx, Bucket(stream))
	if err != nil {
		return nil, fmt.Errorf("request registry %s (created by `furrow admin streams apply`): %w", Bucket(stream), err)
	}
	return &Registry{kv: kv, now: time.Now}, nil
}

// record is what the registry keeps per request id.
type record struct {
	Method      string    `json:"method"`
	RequestID   string    `json:"request_id"`
	Fingerprint string    `json:"fingerprint"`
	At          time.Time `json:"at"`
}

// key is the bucket key of a command's request id: the method's short name
// and a hash of the id (request ids may hold characters keys may not).
func key(method, requestID string) string {
	sum := sha256.Sum256([]byte(method + "\x00" + requestID))
	return shortMethod(method) + "." + hex.EncodeToString(sum[:20])
}

// shortMethod is "RegisterFarmer" for "/furrow.ledger.v1.LedgerService/RegisterFarmer".
func shortMethod(full string) string { return full[strings.LastIndexByte(full, '/')+1:] }

// IsNil reports whether r is nil, for holders of a Registry through an
// interface.
func (r *Registry) IsNil() bool { return r == nil }

// Check refuses a request id recorded for method with another fingerprint.
func (r *Registry) Check(ctx context.Context, method, requestID, fingerprint string) error {
	e, err := r.kv.Get(ctx, key(method, requestID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("request id %q: %w", requestID, err)
	}
	var rec record
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return fmt.Errorf("request id %q: %w", requestID, err)
	}
	if rec.Fingerprint != fingerprint {
		return &failure.Error{Kind: failure.KindAlreadyExists, Field: "request_id",
			Msg: fmt.Sprintf("%q was already used for a different request; use a new request id", requestID),
			Err: eventstore.ErrIdempotencyMismatch}
	}
	return nil
}

// Record remembers that method succeeded with requestID and fingerprint.
// An id already recorded is left as it is (the first success stands).
func (r *Registry) Record(ctx context.Context, method, requestID, fingerprint string) error {
	data, err := json.Marshal(record{Method: shortMethod(method), RequestID: requestID, Fingerprint: fingerprint, At: r.now()})
	if err != nil {
		return err
	}
	if _, err := r.kv.Create(ctx, key(method, requestID), data); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("record request id %q: %w", requestID, err)
	}
	return nil
}

// requestIDer is a request that carries a request id.
type requestIDer interface {
	proto.Message
	GetRequestId() string
}

// UnaryServerInterceptor checks and records the request ids of the
// commands of the services registries holds (by full service name, e.g.
// "furrow.ledger.v1.LedgerService"): every unary method whose request has
// a request_id. Other methods pass through. A failure to record after a
// command succeeded is logged, not returned: the command's outcome stands,
// and the aggregates' own checks remain.
func UnaryServerInterceptor(log *slog.Logger, registries map[string]*Registry) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		r, ok := req.(requestIDer)
		if !ok || r.GetRequestId() == "" {
			return h(ctx, req)
		}
		reg := registries[serviceOf(info.FullMethod)]
		if reg == nil {
			return h(ctx, req)
		}
		fp := eventstore.Fingerprint(r)
		if err := reg.Check(ctx, info.FullMethod, r.GetRequestId(), fp); err != nil {
			return nil, err
		}
		resp, err := h(ctx, req)
		if err == nil {
			if rerr := reg.Record(ctx, info.FullMethod, r.GetRequestId(), fp); rerr != nil {
				log.WarnContext(ctx, "request id not recorded", "method", info.FullMethod, "error", rerr)
			}
		}
		return resp, err
	}
}

// serviceOf is "furrow.ledger.v1.LedgerService" for
// "/furrow.ledger.v1.LedgerService/RegisterFarmer".
func serviceOf(fullMethod string) string {
	s := strings.TrimPrefix(fullMethod, "/")
	if i := strings.IndexByte(s, '/'); i >= 0 {
		return s[:i]
	}
	return s
}
