package adapters

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/furrow/furrow/services/farmer-ledger/app"
)

// KeyBucket is the JetStream KV bucket holding the farmers' data keys,
// each wrapped by the key-encryption key (KEK). Its key for farmer F is
// "farmer.F"; "kek.dev" holds the development KEK (DevKEK) when there is
// one.
const KeyBucket = "LEDGER_KEYS"

// KeyBucketConfig is the key bucket's configuration: one value per key
// (no history, so a destroyed key leaves no older revision behind), file
// storage, replicated like the streams.
func KeyBucketConfig(replicas int) jetstream.KeyValueConfig {
	if replicas < 1 {
		replicas = 1
	}
	return jetstream.KeyValueConfig{
		Bucket:      KeyBucket,
		Description: "farmer-ledger: farmers' data keys, wrapped by the key-encryption key (personal data, crypto-shredding)",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	}
}

// EnsureKeyBucket creates the key bucket unless it exists, and leaves an
// existing one as it is (never lowering its replicas); it reports whether
// it created it. It is the one place that creates the bucket: the admin
// step (`furrow admin streams apply`, package provision) runs it with the
// streams, and furrow dev through the same step. The ledger only opens it
// (OpenKVKeys) and refuses to start without it; its NATS user may read and
// write the bucket's keys, not create or change the bucket.
func EnsureKeyBucket(ctx context.Context, js jetstream.JetStream, replicas int) (bool, error) {
	if _, err := js.KeyValue(ctx, KeyBucket); err == nil {
		return false, nil
	} else if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return false, fmt.Errorf("key bucket %s: %w", KeyBucket, err)
	}
	if _, err := js.CreateKeyValue(ctx, KeyBucketConfig(replicas)); err != nil {
		if errors.Is(err, jetstream.ErrBucketExists) {
			return false, nil
		}
		return false, fmt.Errorf("create key bucket %s: %w", KeyBucket, err)
	}
	return true, nil
}

// KEK is the key-encryption key: it wraps the data keys the key store
// keeps, so that a copy of the key bucket (a backup, a stream any NATS
// user can read) reveals no data key. LocalKEK holds it in memory; a KMS
// would hold it outside the process and wrap remotely.
type KEK interface {
	// ID names the KEK (recorded beside each wrapped key).
	ID() string
	// Wrap encrypts a data key; aad binds it to its farmer and key id.
	Wrap(dek, aad []byte) ([]byte, error)
	// Unwrap decrypts a wrapped data key.
	Unwrap(wrapped, aad []byte) ([]byte, error)
}

// KEKSize is the size of a KEK and of a data key: AES-256.
const KEKSize = 32

// LocalKEK is a KEK held in the process (AES-256-GCM), read from a file
// (LoadKEKFile) or, in development, from the key bucket (DevKEK).
type LocalKEK struct {
	id   string
	aead cipher.AEAD
}

var _ KEK = (*LocalKEK)(nil)

// NewLocalKEK returns a KEK over a 32-byte key. Its id is derived from the
// key, so wrapped keys name the KEK that can unwrap them.
func NewLocalKEK(key []byte) (*LocalKEK, error) {
	if len(key) != KEKSize {
		return nil, fmt.Errorf("key-encryption key: %d bytes, want %d", len(key), KEKSize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("key-encryption key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("key-encryption key: %w", err)
	}
	sum := sha256.Sum256(append([]byte("furrow.ledger.kek-id:"), key...))
	return &LocalKEK{id: "kek-" + hex.EncodeToString(sum[:4]), aead: aead}, nil
}

// LoadKEKFile reads a KEK from a file holding 32 random bytes, base64
// encoded (`head -c 32 /dev/urandom | base64`), as a secret mount would.
func LoadKEKFile(path string) (*LocalKEK, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key-encryption key: %w", err)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("key-encryption key %s: want 32 bytes in base64: %w", path, err)
	}
	return NewLocalKEK(key)
}

// devKEKKey is where DevKEK keeps its key in the key bucket.
const devKEKKey = "kek.dev"

// DevKEK returns the development KEK, kept in the key bucket itself and
// made on first use. Development only: whoever can read the bucket can
// unwrap every data key, so it protects nothing against a reader of the
// bucket. Erasure still works (it destroys the wrapped data key). A
// production deployment gives the ledger its KEK from a secret
// (LoadKEKFile) or a KMS.
func DevKEK(ctx context.Context, js jetstream.JetStream) (*LocalKEK, error) {
	kv, err := js.KeyValue(ctx, KeyBucket)
	if err != nil {
		return nil, fmt.Errorf("development key-encryption key: %w", err)
	}
	for range 2 {
		e, err := kv.Get(ctx, devKEKKey)
		if err == nil {
			return NewLocalKEK(e.Value())
		}
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, fmt.Errorf("development key-encryption key: %w", err)
		}
		key := make([]byte, KEKSize)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		if _, err := kv.Create(ctx, devKEKKey, key); err == nil {
			return NewLocalKEK(key)
		} else if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, fmt.Errorf("development key-encryption key: %w", err)
		}
		// Another process made it first: read theirs.
	}
	return nil, errors.New("development key-encryption key: made and lost twice")
}

// ID implements KEK.
func (k *LocalKEK) ID() string { return k.id }

// Wrap implements KEK.
func (k *LocalKEK) Wrap(dek, aad []byte) ([]byte, error) {
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(dek)+k.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return k.aead.Seal(nonce, nonce, dek, aad), nil
}

// Unwrap implements KEK.
func (k *LocalKEK) Unwrap(wrapped, aad []byte) ([]byte, error) {
	n := k.aead.NonceSize()
	if len(wrapped) < n {
		return nil, errors.New("wrapped key too short")
	}
	return k.aead.Open(nil, wrapped[:n], wrapped[n:], aad)
}

// DefaultKeyCacheTTL is how long KVKeys trusts what it read from the
// bucket: the longest another replica may still open a farmer's values
// after an erasure elsewhere (the erasing replica forgets at once).
const DefaultKeyCacheTTL = 30 * time.Second

// maxCachedKeys bounds KVKeys's cache; past it the cache starts afresh.
const maxCachedKeys = 10_000

// KVKeys is the key store (app.Keys) over the JetStream KV bucket
// KeyBucket: each farmer's data key, wrapped by the KEK, under
// "farmer.<id>". Destroy purges the key (every revision, not a delete
// marker over a readable history).
//
// What purging does not reach: a copy of the bucket made before (a
// backup) and, until NATS compacts the bucket's block files, the purged
// bytes on the servers' disks. Both hold the data key only wrapped: with
// the KEK outside the bucket (a file from a secret, a KMS), neither can be
// unwrapped once the KEK's holder refuses, which is why production must
// not use DevKEK. Back up this bucket, if at all, with a retention no
// longer than the erasure deadline you promise.
//
// Concurrency: mu guards cache; the methods may be called from any
// goroutine.
type KVKeys struct {
	kv  jetstream.KeyValue
	kek KEK
	ttl time.Duration
	now func() time.Time

	mu    sync.Mutex
	cache map[string]cachedKey
}

var _ app.Keys = (*KVKeys)(nil)

// cachedKey is a key read from the bucket, or the fact that there was
// none (ok false).
type cachedKey struct {
	key  app.DataKey
	ok   bool
	read time.Time
}

// storedKey is a data key as the bucket keeps it.
type storedKey struct {
	KeyID   string `json:"key_id"`
	KEKID   string `json:"kek_id"`
	Wrapped []byte `json:"wrapped"`
}

// OpenKVKeys returns the key store over the key bucket, which must exist
// (EnsureKeyBucket). ttl 0 means DefaultKeyCacheTTL; negative, no cache.
func OpenKVKeys(ctx context.Context, js jetstream.JetStream, kek KEK, ttl time.Duration) (*KVKeys, error) {
	kv, err := js.KeyValue(ctx, KeyBucket)
	if err != nil {
		return nil, fmt.Errorf("key store: bucket %s (`furrow admin streams apply` creates it): %w", KeyBucket, err)
	}
	if ttl == 0 {
		ttl = DefaultKeyCacheTTL
	}
	return &KVKeys{kv: kv, kek: kek, ttl: ttl, now: time.Now, cache: map[string]cachedKey{}}, nil
}

func kvKey(farmerID string) string { return "farmer." + farmerID }

func wrapAAD(farmerID, keyID string) []byte {
	return []byte("furrow.ledger.data-key:" + farmerID + ":" + keyID)
}

// Create implements app.Keys.
func (k *KVKeys) Create(ctx context.Context, farmerID string) (app.DataKey, error) {
	for range 2 {
		dk, err := k.Get(ctx, farmerID)
		if !errors.Is(err, app.ErrNoKey) {
			return dk, err
		}
		dk, err = k.create(ctx, farmerID)
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return dk, err
		}
		k.forget(farmerID) // another replica made it first: read theirs
	}
	return app.DataKey{}, fmt.Errorf("data key of farmer %s: made and lost twice", farmerID)
}

func (k *KVKeys) create(ctx context.Context, farmerID string) (app.DataKey, error) {
	id := make([]byte, 8)
	dek := make([]byte, KEKSize)
	if _, err := rand.Read(id); err != nil {
		return app.DataKey{}, err
	}
	if _, err := rand.Read(dek); err != nil {
		return app.DataKey{}, err
	}
	dk := app.DataKey{ID: "dk-" + hex.EncodeToString(id), Key: dek}
	wrapped, err := k.kek.Wrap(dek, wrapAAD(farmerID, dk.ID))
	if err != nil {
		return app.DataKey{}, fmt.Errorf("wrap data key of farmer %s: %w", farmerID, err)
	}
	v, err := json.Marshal(storedKey{KeyID: dk.ID, KEKID: k.kek.ID(), Wrapped: wrapped})
	if err != nil {
		return app.DataKey{}, err
	}
	if _, err := k.kv.Create(ctx, kvKey(farmerID), v); err != nil {
		return app.DataKey{}, fmt.Errorf("store data key of farmer %s: %w", farmerID, err)
	}
	k.remember(farmerID, cachedKey{key: dk, ok: true})
	return dk, nil
}

// Get implements app.Keys.
func (k *KVKeys) Get(ctx context.Context, farmerID string) (app.DataKey, error) {
	if c, ok := k.cached(farmerID); ok {
		if !c.ok {
			return app.DataKey{}, fmt.Errorf("farmer %s: %w", farmerID, app.ErrNoKey)
		}
		return c.key, nil
	}
	e, err := k.kv.Get(ctx, kvKey(farmerID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		k.remember(farmerID, cachedKey{})
		return app.DataKey{}, fmt.Errorf("farmer %s: %w", farmerID, app.ErrNoKey)
	}
	if err != nil {
		return app.DataKey{}, fmt.Errorf("data key of farmer %s: %w", farmerID, err)
	}
	var s storedKey
	if err := json.Unmarshal(e.Value(), &s); err != nil {
		return app.DataKey{}, fmt.Errorf("data key of farmer %s: %w", farmerID, err)
	}
	if s.KEKID != k.kek.ID() {
		return app.DataKey{}, fmt.Errorf("data key of farmer %s is wrapped by %s, this process has %s", farmerID, s.KEKID, k.kek.ID())
	}
	dek, err := k.kek.Unwrap(s.Wrapped, wrapAAD(farmerID, s.KeyID))
	if err != nil {
		return app.DataKey{}, fmt.Errorf("unwrap data key of farmer %s: %w", farmerID, err)
	}
	dk := app.DataKey{ID: s.KeyID, Key: dek}
	k.remember(farmerID, cachedKey{key: dk, ok: true})
	return dk, nil
}

// Destroy implements app.Keys: it purges the farmer's key from the bucket.
func (k *KVKeys) Destroy(ctx context.Context, farmerID string) error {
	k.forget(farmerID)
	if err := k.kv.Purge(ctx, kvKey(farmerID)); err != nil {
		return fmt.Errorf("purge data key of farmer %s: %w", farmerID, err)
	}
	k.remember(farmerID, cachedKey{})
	return nil
}

func (k *KVKeys) cached(farmerID string) (cachedKey, bool) {
	if k.ttl < 0 {
		return cachedKey{}, false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	c, ok := k.cache[farmerID]
	if !ok || k.now().Sub(c.read) > k.ttl {
		return cachedKey{}, false
	}
	return c, true
}

func (k *KVKeys) remember(farmerID string, c cachedKey) {
	if k.ttl < 0 {
		return
	}
	c.read = k.now()
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.cache) >= maxCachedKeys {
		clear(k.cache)
	}
	k.cache[farmerID] = c
}

func (k *KVKeys) forget(farmerID string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.cache, farmerID)
}
