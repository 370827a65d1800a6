// Package pagetoken makes and checks the page tokens of every paged list
// (next_page_token / page_token), so that each service does not invent its
// own.
//
// A token is opaque to clients (unpadded base64url) and carries a format
// version, the list's kind, a fingerprint of the request's filters and the
// cursor (the key of the last row returned). A token is accepted only by
// the list that returned it, with the same filters, so a client that
// changes a filter between pages is told (INVALID_ARGUMENT naming
// page_token) instead of silently getting another list's rows resumed at
// a foreign key. A garbled or cut token, another list's token or one of
// an unknown version is refused the same way (failure.Invalid, which
// pkg/grpcx maps).
//
// The filters are everything of the request that selects rows, in a
// fixed order per kind; not page_size (a client may change the page size
// between pages) and not min_position (a consistency bound, not a
// selection). A client can still decode a token and forge one for the
// same filters: the fingerprint protects against mistakes, not attackers,
// and needs none (a forged cursor only moves the keyset position within
// rows the caller may list anyway).
//
// The format is hand-written rather than a library's: it is a few length
// prefixes and two hashes from the standard library; what matters — which
// filters a list binds — is the caller's, and no well-kept library fits
// that better than these lines.
package pagetoken

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"hash/crc32"
	"strconv"

	"github.com/furrow/furrow/pkg/failure"
)

// Version is the token format this package writes and reads. Tokens of
// another version (none exist yet) are refused: the client starts again
// from the first page.
const Version = 1

// MaxLen bounds the token text a request may carry.
const MaxLen = 2048

// field is the request field tokens arrive in.
const field = "page_token"

const fingerprintLen = 8

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// List is one request's paged list: its kind and its filters' fingerprint.
type List struct {
	kind        string
	fingerprint [fingerprintLen]byte
}

// For binds a list kind (unique across services, e.g. "ledger.farmers")
// to a request's filters, given in a fixed order for the kind.
func For(kind string, filters ...string) List {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	for _, s := range append([]string{kind}, filters...) {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
		h.Write([]byte(s))
	}
	l := List{kind: kind}
	copy(l.fingerprint[:], h.Sum(nil))
	return l
}

// Next is the token of the page after the one whose last row's key is
// cursor.
func (l List) Next(cursor ...string) string {
	b := []byte{Version}
	b = appendString(b, l.kind)
	b = append(b, l.fingerprint[:]...)
	b = binary.AppendUvarint(b, uint64(len(cursor)))
	for _, c := range cursor {
		b = appendString(b, c)
	}
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	return base64.RawURLEncoding.EncodeToString(b)
}

// NextSeq is Next for a cursor that is a stream sequence.
func (l List) NextSeq(seq uint64) string { return l.Next(strconv.FormatUint(seq, 10)) }

// Cursor returns the n parts of the cursor token carries; for no token,
// n empty strings (the first page). A token this list did not return for
// these filters is a failure.Invalid naming page_token.
func (l List) Cursor(token string, n int) ([]string, error) {
	if token == "" {
		return make([]string, n), nil
	}
	garbled := failure.Invalid(field, "is not a token this list returned (garbled or cut short): pass next_page_token unchanged")
	if len(token) > MaxLen {
		return nil, garbled
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) < 1+4 {
		return nil, garbled
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, garbled
	}
	if body[0] != Version {
		return nil, failure.Invalid(field, "is a version %d token, this server reads version %d: list again from the first page", body[0], Version)
	}
	r := reader{b: body[1:]}
	kind := r.string()
	fp := r.bytes(fingerprintLen)
	count := r.uvarint()
	if r.bad || count > uint64(len(r.b)) {
		return nil, garbled
	}
	parts := make([]string, 0, count)
	for range count {
		parts = append(parts, r.string())
	}
	if r.bad || len(r.b) != 0 {
		return nil, garbled
	}
	switch {
	case kind != l.kind:
		return nil, failure.Invalid(field, "is a token of the %s list, not of %s", kind, l.kind)
	case [fingerprintLen]byte(fp) != l.fingerprint:
		return nil, failure.Invalid(field, "was returned for other filters: pass the first page's filters with it, or list again without page_token")
	case len(parts) != n:
		return nil, garbled
	}
	return parts, nil
}

// Seq is Cursor for a cursor that is a stream sequence; 0 for no token.
func (l List) Seq(token string) (uint64, error) {
	parts, err := l.Cursor(token, 1)
	if err != nil || token == "" {
		return 0, err
	}
	seq, err := strconv.ParseUint(parts[0], 10, 64)
	if err != nil {
		return 0, failure.Invalid(field, "is not a token this list returned (its cursor is not a sequence)")
	}
	return seq, nil
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// reader takes a token's fields from the front of b; bad records a field
// that ran past the end.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.bad = true
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes(n uint64) []byte {
	if r.bad || n > uint64(len(r.b)) {
		r.bad = true
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) string() string { return string(r.bytes(r.uvarint())) }
