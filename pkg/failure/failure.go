// Package failure gives domain and application code a small vocabulary of
// failures (invalid input, not found, failed precondition, already exists)
// that the gRPC layer maps to status codes in one place, without the domain
// importing gRPC.
package failure

import (
	"errors"
	"fmt"
)

// Kind classifies a failure by what the caller should do about it.
type Kind int

// The kinds of failure.
const (
	// KindInvalid: the request itself is wrong; fix it before retrying.
	KindInvalid Kind = iota + 1
	// KindNotFound: something the request names does not exist.
	KindNotFound
	// KindFailedPrecondition: the request is well-formed but the system is
	// not in a state that allows it.
	KindFailedPrecondition
	// KindAlreadyExists: it exists already, or a request id was reused for
	// a different request.
	KindAlreadyExists
	// KindConflict: a concurrent change won; re-read and retry.
	KindConflict
)

func (k Kind) String() string {
	switch k {
	case KindInvalid:
		return "invalid"
	case KindNotFound:
		return "not found"
	case KindFailedPrecondition:
		return "failed precondition"
	case KindAlreadyExists:
		return "already exists"
	case KindConflict:
		return "conflict"
	}
	return "unknown"
}

// Error is a classified failure. Field names the offending request field
// (as the API spells it) where there is one.
type Error struct {
	Kind  Kind
	Field string
	Msg   string
	Err   error
}

func (e *Error) Error() string {
	msg := e.Msg
	if e.Field != "" {
		msg = e.Field + ": " + msg
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Invalid reports a bad request field.
func Invalid(field, format string, args ...any) error {
	return &Error{Kind: KindInvalid, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// NotFound reports that what field names does not exist.
func NotFound(field, format string, args ...any) error {
	return &Error{Kind: KindNotFound, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// FailedPrecondition reports a request the current state does not allow.
func FailedPrecondition(format string, args ...any) error {
	return &Error{Kind: KindFailedPrecondition, Msg: fmt.Sprintf(format, args...)}
}

// AlreadyExists reports a duplicate.
func AlreadyExists(field, format string, args ...any) error {
	return &Error{Kind: KindAlreadyExists, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Conflict reports a lost optimistic-concurrency race.
func Conflict(err error) error {
	return &Error{Kind: KindConflict, Msg: "concurrent change", Err: err}
}

// KindOf returns err's kind, or 0 when err is not a classified failure.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}

// Overflow reports a request whose effect would take a running total (a
// balance, a budget, a sum of grams) beyond what an int64 holds: the
// request may be well-formed, but the totals so far do not allow it, so it
// is a failed precondition. err is the arithmetic error (money.ErrOverflow),
// kept for errors.Is.
func Overflow(err error, format string, args ...any) error {
	return &Error{Kind: KindFailedPrecondition, Msg: fmt.Sprintf(format, args...), Err: err}
}
