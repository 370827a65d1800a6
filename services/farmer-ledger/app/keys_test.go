package app_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/furrow/furrow/services/farmer-ledger/adapters"
)

// testKeys returns a key store over js's key bucket (made if missing),
// with the development KEK kept in the bucket: every store a test opens
// over the same server shares it, as replicas do.
func testKeys(t testing.TB, js jetstream.JetStream) *adapters.KVKeys {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := adapters.EnsureKeyBucket(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	kek, err := adapters.DevKEK(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := adapters.OpenKVKeys(ctx, js, kek, 0)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}
