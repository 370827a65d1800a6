package app

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"

	"github.com/furrow/furrow/services/farmer-ledger/domain"
)

// DataKey is a farmer's data key: the AES-256 key its personal values are
// sealed under, and the id events name it by.
type DataKey struct {
	ID  string
	Key []byte
}

// ErrNoKey means the farmer has no data key: it was destroyed (the farmer
// was erased) or never made.
var ErrNoKey = errors.New("no data key")

// Keys is the key store port: it keeps one data key per farmer, only ever
// wrapped by a key-encryption key, and destroys it on erasure. The
// JetStream KV implementation (adapters.KVKeys) serves development and the
// production shape today; a production deployment that keeps its keys in
// a KMS (a cloud KMS, an HSM, Vault's transit engine) implements this same
// port over it, with the same contract:
//
//   - Create returns the farmer's key, making one if it has none; it never
//     replaces an existing key (several replicas may race to create one:
//     all get the same);
//   - Get returns ErrNoKey once Destroy ran, on every replica, within the
//     implementation's documented cache time;
//   - Destroy is irreversible and idempotent.
type Keys interface {
	Create(ctx context.Context, farmerID string) (DataKey, error)
	Get(ctx context.Context, farmerID string) (DataKey, error)
	Destroy(ctx context.Context, farmerID string) error
}

// seal encrypts a personal value of a farmer under its data key
// (AES-256-GCM, random nonce; the farmer id and field are the additional
// data). An empty value stays unset.
func seal(dk DataKey, farmerID, field, clear string) (*ledgerevents.Sealed, error) {
	if clear == "" {
		return nil, nil
	}
	aead, err := newAEAD(dk.Key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(clear)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal %s: %w", field, err)
	}
	return &ledgerevents.Sealed{KeyId: dk.ID, Ciphertext: aead.Seal(nonce, nonce, []byte(clear), aad(farmerID, field))}, nil
}

// open decrypts a sealed personal value.
func open(dk DataKey, farmerID, field string, s *ledgerevents.Sealed) (string, error) {
	if s.GetKeyId() != dk.ID {
		return "", fmt.Errorf("open %s: sealed under key %s, the farmer's key is %s", field, s.GetKeyId(), dk.ID)
	}
	aead, err := newAEAD(dk.Key)
	if err != nil {
		return "", err
	}
	ct := s.GetCiphertext()
	if len(ct) < aead.NonceSize() {
		return "", fmt.Errorf("open %s: ciphertext too short", field)
	}
	clear, err := aead.Open(nil, ct[:aead.NonceSize()], ct[aead.NonceSize():], aad(farmerID, field))
	if err != nil {
		return "", fmt.Errorf("open %s: %w", field, err)
	}
	return string(clear), nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("data key: %w", err)
	}
	return cipher.NewGCM(block)
}

func aad(farmerID, field string) []byte { return []byte("furrow.ledger:" + farmerID + ":" + field) }

// keyedFingerprint binds a command's fingerprint to the farmer's data key.
// A fingerprint is a hash of the request, stored in the event's headers to
// tell a retry from a reused request id; a request that carries personal
// data (a phone, an account number) would otherwise leave a hash anyone
// can test guesses against, in clear, for good. Keyed (HMAC with the data
// key), it is useless without the key, and dies with it.
func keyedFingerprint(dk DataKey, fingerprint string) string {
	m := hmac.New(sha256.New, dk.Key)
	m.Write([]byte("furrow.ledger.fingerprint:" + fingerprint))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// personalFields are a farmer's personal values in clear, as a caller may
// read them (after masking: see ports).
type personalFields struct {
	Name, Phone, PayoutAccount string
}

// Reveal returns the clear value of a farmer's personal text (see package
// domain's pii.go): a sealed value decrypted with the farmer's key, a
// clear value of an old event as it is, domain.Erased when the key is gone
// (the farmer was erased), and domain.Unreadable when the ciphertext does
// not open with the farmer's key. It fails only when the key store cannot
// be reached.
func (l *Ledger) Reveal(ctx context.Context, farmerID, field, text string) (string, error) {
	s, ok := domain.ParseSealed(text)
	if !ok {
		return text, nil
	}
	if l.keys == nil {
		return "", errors.New("reveal personal data: no key store")
	}
	dk, err := l.keys.Get(ctx, farmerID)
	if errors.Is(err, ErrNoKey) {
		return domain.Erased, nil
	}
	if err != nil {
		return "", fmt.Errorf("reveal %s of farmer %s: %w", field, farmerID, err)
	}
	clear, err := open(dk, farmerID, field, s)
	if err != nil {
		l.log.WarnContext(ctx, "personal value does not open with the farmer's key", "farmer_id", farmerID, "field", field, "err", err)
		return domain.Unreadable, nil
	}
	return clear, nil
}

// revealFarmer returns a farmer's personal values in clear.
func (l *Ledger) revealFarmer(ctx context.Context, farmerID, name, phone, account string) (personalFields, error) {
	var p personalFields
	var err error
	if p.Name, err = l.Reveal(ctx, farmerID, domain.FieldName, name); err != nil {
		return personalFields{}, err
	}
	if p.Phone, err = l.Reveal(ctx, farmerID, domain.FieldPhone, phone); err != nil {
		return personalFields{}, err
	}
	if p.PayoutAccount, err = l.Reveal(ctx, farmerID, domain.FieldPayoutAccount, account); err != nil {
		return personalFields{}, err
	}
	return p, nil
}

// sealRegistration replaces the clear personal values of a registration
// with their sealed forms.
func sealRegistration(dk DataKey, ev *ledgerevents.FarmerRegistered) error {
	id := ev.GetFarmerId()
	var err error
	if ev.SealedName, err = seal(dk, id, domain.FieldName, ev.GetName()); err != nil {
		return err
	}
	if ev.SealedPhone, err = seal(dk, id, domain.FieldPhone, ev.GetPhone()); err != nil {
		return err
	}
	if ev.SealedPayoutAccount, err = seal(dk, id, domain.FieldPayoutAccount, ev.GetPayoutAccount()); err != nil {
		return err
	}
	ev.Name, ev.Phone, ev.PayoutAccount = "", "", ""
	return nil
}

// instructionFor returns the instruction that pays p, with its account in
// clear: the provider needs the number. When the account cannot be read
// (the farmer's key was destroyed while the payout was in flight: an
// erasure that raced with the request), the payout cannot be sent, and it
// returns the outcome to record instead: failed, releasing the hold.
func (l *Ledger) instructionFor(ctx context.Context, p domain.Payout) (domain.PayoutInstruction, *domain.ProviderReceipt, error) {
	in := p.Instruction()
	account, err := l.Reveal(ctx, p.FarmerID, domain.FieldPayoutAccount, in.Account)
	if err != nil {
		return domain.PayoutInstruction{}, nil, fmt.Errorf("send payout %s: %w", p.ID, err)
	}
	if account == domain.Erased || account == domain.Unreadable {
		return domain.PayoutInstruction{}, &domain.ProviderReceipt{
			Reference: "not-sent:" + p.ID, Status: domain.ProviderFailed, At: l.now(),
			Reason: "payout account " + account + ": not sent to the provider",
		}, nil
	}
	in.Account = account
	return in, nil, nil
}
