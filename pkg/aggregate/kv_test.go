package aggregate_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/furrow/furrow/pkg/aggregate"
	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/natstest"
)

// TestApplySnapshotBucket checks the admin step's snapshot buckets: the
// first run creates the bucket, the second changes nothing, a drifted
// bucket is brought back setting by setting, and a storage change the
// server cannot make in place is refused without touching the bucket.
func TestApplySnapshotBucket(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js := natstest.Embedded(t).JetStream(t)
	cfg := aggregate.SnapshotBucket("APPLY_SNAPSHOTS", 1)

	for i, want := range []eventstore.Change{eventstore.Created, eventstore.Unchanged} {
		res, err := aggregate.ApplySnapshotBucket(ctx, js, cfg, eventstore.ApplyOptions{})
		if err != nil || res.Name != "KV_APPLY_SNAPSHOTS" || res.Change != want || len(res.Fields) != 0 {
			t.Fatalf("run %d = %+v, %v; want %s", i+1, res, err, want)
		}
	}

	drifted := cfg
	drifted.History, drifted.Compression = 5, true
	if _, err := js.UpdateKeyValue(ctx, drifted); err != nil {
		t.Fatal(err)
	}
	res, err := aggregate.ApplySnapshotBucket(ctx, js, cfg, eventstore.ApplyOptions{})
	if err != nil || res.Change != eventstore.Updated ||
		strings.Join(res.Fields, "; ") != "max_msgs_per_subject: 5 → 1; compression: S2 → None" {
		t.Errorf("apply to the drifted bucket = %+v, %v; want history and compression restored", res, err)
	}
	if res, err := aggregate.ApplySnapshotBucket(ctx, js, cfg, eventstore.ApplyOptions{}); err != nil || res.Change != eventstore.Unchanged {
		t.Errorf("apply after the repair = %+v, %v; want unchanged", res, err)
	}

	memory := cfg
	memory.Storage = jetstream.MemoryStorage
	_, err = aggregate.ApplySnapshotBucket(ctx, js, memory, eventstore.ApplyOptions{})
	if !errors.Is(err, eventstore.ErrRefused) || !strings.Contains(err.Error(), "storage") {
		t.Errorf("apply with memory storage = %v; want a refusal naming storage", err)
	}
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Storage; got != jetstream.FileStorage {
		t.Errorf("storage after the refused apply = %v; want file", got)
	}
}
