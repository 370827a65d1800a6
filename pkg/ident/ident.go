// Package ident validates the identifiers clients choose (farmer, brand,
// delivery and request ids). Ids become NATS subject tokens, so they must
// not contain '.', '*', '>' or white space.
package ident

import (
	"regexp"

	"github.com/furrow/furrow/pkg/failure"
)

// MaxLen is the longest id accepted.
const MaxLen = 64

var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Check returns an Invalid failure naming field unless id is a well-formed id.
func Check(field, id string) error {
	if id == "" {
		return failure.Invalid(field, "is required")
	}
	if !idPattern.MatchString(id) {
		return failure.Invalid(field, "%q must be 1-%d letters, digits, '-' or '_'", id, MaxLen)
	}
	return nil
}

// CheckRequestID validates a client request id, which may be longer and
// hold any printable characters (UUIDs, "platform:order:123"), since it
// never becomes a subject token.
func CheckRequestID(id string) error {
	if id == "" {
		return failure.Invalid("request_id", "is required: every command carries a client request id for idempotency")
	}
	if len(id) > 200 {
		return failure.Invalid("request_id", "is %d bytes long; at most 200", len(id))
	}
	for _, r := range id {
		if r < 0x21 || r == 0x7f {
			return failure.Invalid("request_id", "must be printable without spaces")
		}
	}
	return nil
}
