package service

import (
	"context"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/furrow/furrow/services/farmer-ledger/adapters"
)

// KeyStore opens the ledger's key store (the farmers' data keys, under
// which their personal data is sealed) over the JetStream KV bucket
// adapters.KeyBucket, which must exist (adapters.EnsureKeyBucket). The
// key-encryption key comes from kekFile; without one it is the
// development KEK kept in the bucket itself (adapters.DevKEK), which
// furrow dev uses and production refuses.
func KeyStore(ctx context.Context, js jetstream.JetStream, kekFile string, log *slog.Logger) (*adapters.KVKeys, error) {
	var kek adapters.KEK
	var err error
	if kekFile != "" {
		kek, err = adapters.LoadKEKFile(kekFile)
	} else {
		kek, err = adapters.DevKEK(ctx, js)
		if err == nil {
			log.Warn("personal data keys are wrapped by the development key-encryption key kept beside them (give one from a secret in production)",
				"bucket", adapters.KeyBucket)
		}
	}
	if err != nil {
		return nil, err
	}
	return adapters.OpenKVKeys(ctx, js, kek, 0)
}
