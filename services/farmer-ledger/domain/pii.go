package domain

import (
	"encoding/base64"
	"strings"

	ledgerevents "github.com/furrow/furrow/proto/furrow/ledger/events/v1"

	"github.com/furrow/furrow/pkg/failure"
)

// Personal data. A farmer's name, phone number and payout account are
// personal data: the ledger writes them into its events only sealed under
// the farmer's data key (ledgerevents.Sealed), so that destroying the key
// erases every copy (crypto-shredding). The domain never sees a key and
// never decrypts: it carries each value as text, either the sealed form
// (SealedText: "sealed:v1:<key id>:<ciphertext>") or, for events written
// before encryption, the clear value, or Erased once the farmer was
// erased. The application decrypts for the few readers that need a value
// (package app: Reveal) and masks what it answers (Mask).

// The personal fields, as named in the additional data of their ciphertext
// (a sealed value cannot be moved to another field or farmer).
const (
	FieldName          = "name"
	FieldPhone         = "phone"
	FieldPayoutAccount = "payout_account"
)

// Erased is what a personal value reads once its farmer was erased.
const Erased = "[erased]"

// Unreadable is what a personal value reads when its ciphertext cannot be
// opened with the farmer's key (damaged, or sealed under another key).
const Unreadable = "[unreadable]"

// KindErased is the kind (last subject token) of FarmerErased.
const KindErased = "farmer_erased"

// sealedPrefix starts the text form of a sealed value.
const sealedPrefix = "sealed:v1:"

// SealedText returns the text form of a sealed value ("" for nil), which
// the aggregate and the read models keep in place of the clear value.
func SealedText(s *ledgerevents.Sealed) string {
	if s == nil {
		return ""
	}
	return sealedPrefix + s.GetKeyId() + ":" + base64.RawURLEncoding.EncodeToString(s.GetCiphertext())
}

// ParseSealed returns the sealed value a text holds, and false when the
// text is not in the sealed form (a clear value of an old event, Erased,
// or empty).
func ParseSealed(text string) (*ledgerevents.Sealed, bool) {
	rest, ok := strings.CutPrefix(text, sealedPrefix)
	if !ok {
		return nil, false
	}
	keyID, ct, ok := strings.Cut(rest, ":")
	if !ok || keyID == "" {
		return nil, false
	}
	b, err := base64.RawURLEncoding.DecodeString(ct)
	if err != nil {
		return nil, false
	}
	return &ledgerevents.Sealed{KeyId: keyID, Ciphertext: b}, true
}

// PersonalText is the text the aggregate and the read models keep for a
// personal field of an event: the sealed form when the event sealed it,
// the clear value of an old event otherwise.
func PersonalText(clear string, sealed *ledgerevents.Sealed) string {
	if sealed != nil {
		return SealedText(sealed)
	}
	return clear
}

// splitPersonal turns a personal text back into an event's pair of fields:
// the sealed field for a sealed value, the clear one for an old clear
// value.
func splitPersonal(text string) (string, *ledgerevents.Sealed) {
	if s, ok := ParseSealed(text); ok {
		return "", s
	}
	return text, nil
}

// CheckPersonalInput refuses a clear value a caller gives for a personal
// field that would read as something else: the sealed form or a marker.
func CheckPersonalInput(field, value string) error {
	if strings.HasPrefix(value, sealedPrefix) || value == Erased || value == Unreadable {
		return failure.Invalid(field, "is not a valid value")
	}
	return nil
}

// Mask shows only the last four characters of a number ("••••0101"), or
// only the mask when it is that short. Empty values and the markers
// (Erased, Unreadable) are returned as they are.
func Mask(v string) string {
	if v == "" || v == Erased || v == Unreadable {
		return v
	}
	r := []rune(v)
	if len(r) <= 4 {
		return "••••"
	}
	return "••••" + string(r[len(r)-4:])
}

// Erased reports whether the farmer's personal data was erased.
func (f *Farmer) Erased() bool { return f.erased }

// KeyID returns the id of the data key the farmer's personal values are
// sealed under ("" when none is: the farmer's events predate encryption).
func (f *Farmer) KeyID() string {
	for _, t := range []string{f.name, f.phone, f.payoutAccount} {
		if s, ok := ParseSealed(t); ok {
			return s.GetKeyId()
		}
	}
	return ""
}

// Erase decides the erasure of the farmer's personal data. It refuses an
// unknown farmer, one already erased, and one with a payout in flight
// (requested or sent): the payout's account must stay readable until the
// provider completed it.
func (f *Farmer) Erase() (*ledgerevents.FarmerErased, error) {
	if !f.registered {
		return nil, failure.NotFound("farmer_id", "farmer %s is not registered", f.id)
	}
	if f.erased {
		return nil, failure.FailedPrecondition("farmer %s was already erased", f.id)
	}
	for id, p := range f.payouts.All() {
		if !p.Status.Final() {
			return nil, failure.FailedPrecondition("farmer %s has payout %s in flight (%s): erase once it settled or failed", f.id, id, p.Status)
		}
	}
	return &ledgerevents.FarmerErased{FarmerId: f.id, KeyId: f.KeyID()}, nil
}

// applyErased folds FarmerErased into the farmer: every personal value it
// had reads Erased from now on, whatever the events before held (old
// events may hold clear values, which the stream keeps).
func (f *Farmer) applyErased() {
	f.erased = true
	for _, v := range []*string{&f.name, &f.phone, &f.payoutAccount} {
		if *v != "" {
			*v = Erased
		}
	}
}
