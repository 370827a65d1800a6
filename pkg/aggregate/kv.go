package aggregate

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/snapshot"
)

// KVSnapshots keeps snapshots in a JetStream key-value bucket, one key per
// aggregate ("<kind>.<id>"). A snapshot larger than a message may be
// (a farmer with a long history) is split into parts: the key holds the
// number of parts, the slot ('a' or 'b') of the others and the first part;
// "<key>.<slot>1", "<key>.<slot>2", … hold the rest, and are written
// before the key. A write uses the slot the key does not name, so a
// reader who read the key finds the parts it names intact unless two
// writes of the same aggregate have happened since. Should parts of two
// snapshots meet all the same (two writers racing), the snapshot's
// checksum fails and the Loader replays the aggregate instead.
type KVSnapshots struct {
	kv   jetstream.KeyValue
	part int
}

var _ SnapshotStore = (*KVSnapshots)(nil)

// maxSnapshotPart bounds a part, well within NATS's default 1 MiB
// max_payload with room for headers.
const maxSnapshotPart = 512 << 10

// NewKVSnapshots returns a store over kv. maxPayload is the connection's
// largest message (nats.Conn.MaxPayload; 0: the NATS default), which
// bounds a part.
func NewKVSnapshots(kv jetstream.KeyValue, maxPayload int64) *KVSnapshots {
	part := int64(maxSnapshotPart)
	if maxPayload > 0 {
		part = min(part, maxPayload-8<<10)
	}
	return &KVSnapshots{kv: kv, part: int(max(part, 1<<10))}
}

// GetSnapshot implements SnapshotStore.
func (s *KVSnapshots) GetSnapshot(ctx context.Context, key string) ([]byte, error) {
	head, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, ErrNoSnapshot
	}
	if err != nil {
		return nil, fmt.Errorf("get snapshot %s: %w", key, err)
	}
	parts, slot, first, err := parseHead(head.Value())
	if err != nil {
		return nil, fmt.Errorf("get snapshot %s: %w", key, err)
	}
	out := append([]byte(nil), first...)
	for i := uint64(1); i < parts; i++ {
		p, err := s.kv.Get(ctx, partKey(key, slot, i))
		if err != nil {
			return nil, fmt.Errorf("get snapshot %s part %d of %d: %w", key, i+1, parts, err)
		}
		out = append(out, p.Value()...)
	}
	return out, nil
}

// PutSnapshot implements SnapshotStore.
func (s *KVSnapshots) PutSnapshot(ctx context.Context, key string, data []byte) error {
	first := min(len(data), s.part)
	parts := 1 + (len(data)-first+s.part-1)/s.part
	slot := byte('a')
	if parts > 1 {
		// The other slot than the current snapshot's.
		if head, err := s.kv.Get(ctx, key); err == nil {
			if _, cur, _, err := parseHead(head.Value()); err == nil && cur == 'a' {
				slot = 'b'
			}
		}
	}
	for i, off := 1, first; off < len(data); i, off = i+1, off+s.part {
		if _, err := s.kv.Put(ctx, partKey(key, slot, uint64(i)), data[off:min(off+s.part, len(data))]); err != nil {
			return fmt.Errorf("put snapshot %s part %d of %d: %w", key, i+1, parts, err)
		}
	}
	head := append(binary.AppendUvarint(nil, uint64(parts)), slot)
	if _, err := s.kv.Put(ctx, key, append(head, data[:first]...)); err != nil {
		return fmt.Errorf("put snapshot %s: %w", key, err)
	}
	return nil
}

// parseHead reads a snapshot's key: part count, slot, first part.
func parseHead(v []byte) (parts uint64, slot byte, first []byte, err error) {
	parts, n := binary.Uvarint(v)
	if n <= 0 || parts == 0 || parts > 1<<16 || len(v) <= n || (v[n] != 'a' && v[n] != 'b') {
		return 0, 0, nil, fmt.Errorf("%w: bad snapshot head", snapshot.ErrCorrupt)
	}
	return parts, v[n], v[n+1:], nil
}

func partKey(key string, slot byte, i uint64) string {
	return key + "." + string(slot) + strconv.FormatUint(i, 10)
}

// SnapshotBucket is the configuration of the key-value bucket (the stream
// KV_<bucket>) that keeps a service's aggregate snapshots: file storage,
// the last value of each key only. Snapshots are derived data (a lost one
// costs a replay), so the bucket needs no more than that. It is not
// compressed: the bucket holds one value per aggregate, and decompressing
// a long history's snapshot on every load cost more than it saved.
func SnapshotBucket(bucket string, replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: "Furrow aggregate snapshots (derived; a lost one costs a replay): " + bucket,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
	}
}

// ApplySnapshotBucket creates a snapshot bucket, or brings an existing
// one to cfg (history, replicas, age limit, compression), and reports what
// it did as eventstore.ApplyStream does: a second run reports Unchanged.
// It creates a stream (KV_<bucket>), so only the admin identity runs it:
// `furrow admin streams apply` (cmd/furrow/internal/provision), which
// `furrow dev` runs too; the services only bind the bucket (BindSnapshots).
// Like ApplyStream it refuses (eventstore.ErrRefused) to lower the
// bucket's replicas unless opts allow it, and to change its storage, which
// the server cannot change in place.
func ApplySnapshotBucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig, opts eventstore.ApplyOptions) (eventstore.ApplyResult, error) {
	res := eventstore.ApplyResult{Name: "KV_" + cfg.Bucket}
	cfg.Replicas, cfg.History = max(cfg.Replicas, 1), max(cfg.History, 1) // the server's defaults
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, cfg)
		if err == nil {
			res.Change = eventstore.Created
			return res, nil
		}
		if errors.Is(err, jetstream.ErrBucketExists) { // another admin run made it meanwhile
			kv, err = js.KeyValue(ctx, cfg.Bucket)
		}
	}
	if err != nil {
		return res, fmt.Errorf("snapshot bucket %s: %w", cfg.Bucket, err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return res, fmt.Errorf("snapshot bucket %s: %w", cfg.Bucket, err)
	}
	have := st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config
	wantCompression := jetstream.NoCompression
	if cfg.Compression {
		wantCompression = jetstream.S2Compression
	}
	if have.Storage != cfg.Storage {
		return res, fmt.Errorf("%w: stream %s: storage: %v → %v cannot change in place (delete the bucket: snapshots are derived, loads replay meanwhile)",
			eventstore.ErrRefused, res.Name, have.Storage, cfg.Storage)
	}
	if have.Replicas > cfg.Replicas && !opts.AllowReplicaDecrease {
		return res, fmt.Errorf("%w: stream %s: num_replicas: would lower %d → %d; allow it explicitly",
			eventstore.ErrRefused, res.Name, have.Replicas, cfg.Replicas)
	}
	if have.MaxMsgsPerSubject != int64(cfg.History) {
		res.Fields = append(res.Fields, fmt.Sprintf("max_msgs_per_subject: %d → %d", have.MaxMsgsPerSubject, cfg.History))
	}
	if have.MaxAge != cfg.TTL {
		res.Fields = append(res.Fields, fmt.Sprintf("max_age: %v → %v", have.MaxAge, cfg.TTL))
	}
	if have.Compression != wantCompression {
		res.Fields = append(res.Fields, fmt.Sprintf("compression: %v → %v", have.Compression, wantCompression))
	}
	if have.Replicas != cfg.Replicas {
		res.Fields = append(res.Fields, fmt.Sprintf("num_replicas: %d → %d", have.Replicas, cfg.Replicas))
	}
	if len(res.Fields) == 0 {
		res.Change = eventstore.Unchanged
		return res, nil
	}
	if _, err := js.UpdateKeyValue(ctx, cfg); err != nil {
		return res, fmt.Errorf("snapshot bucket %s: %w", cfg.Bucket, err)
	}
	res.Change = eventstore.Updated
	return res, nil
}

// EnsureSnapshotBucket creates or updates a snapshot bucket, lowering its
// replicas if cfg asks: ApplySnapshotBucket for a process that
// administers its own server (tests, benchmarks).
func EnsureSnapshotBucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) error {
	_, err := ApplySnapshotBucket(ctx, js, cfg, eventstore.ApplyOptions{AllowReplicaDecrease: true})
	return err
}

// OpenSnapshots binds the snapshot bucket, or returns nil (no store, no
// error) when it does not exist: snapshots are an optimisation, and
// without them loads replay.
func OpenSnapshots(ctx context.Context, js jetstream.JetStream, bucket string) (SnapshotStore, error) {
	kv, err := js.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open snapshot bucket %s: %w", bucket, err)
	}
	return NewKVSnapshots(kv, js.Conn().MaxPayload()), nil
}

// bindTimeout bounds BindSnapshots' look-up of the bucket.
const bindTimeout = 10 * time.Second

// BindSnapshots is how a service turns snapshots on: it binds bucket and
// returns the store (nil when the bucket does not exist, or cannot be
// read: loads then replay, as without snapshots), saying which in log.
func BindSnapshots(js jetstream.JetStream, bucket string, log *slog.Logger) SnapshotStore {
	ctx, cancel := context.WithTimeout(context.Background(), bindTimeout)
	defer cancel()
	snaps, err := OpenSnapshots(ctx, js, bucket)
	switch {
	case err != nil:
		log.Warn("aggregate snapshots off: snapshot bucket unreadable", "bucket", bucket, "error", err)
	case snaps == nil:
		log.Info("aggregate snapshots off: no snapshot bucket", "bucket", bucket)
	}
	return snaps
}
