// Package snapshot is the small binary encoding aggregates use to save
// their state in snapshots (package aggregate stores and checks them):
// unsigned and signed varints, length-prefixed strings and bytes, in an
// order each aggregate's own encoder and decoder agree on, under a schema
// version the aggregate bumps whenever that order changes.
//
// A Reader never trusts its input: every length is checked against what
// is left, an error sticks (later reads return zero values), and Done
// fails unless exactly everything was read, so a truncated, padded or
// otherwise damaged snapshot is refused, never half decoded.
package snapshot

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrCorrupt means the bytes are not a snapshot the reader can decode.
var ErrCorrupt = errors.New("snapshot: corrupt")

// Writer appends values to a buffer. The zero value is ready to use.
type Writer struct {
	buf []byte
}

// Uint writes an unsigned varint.
func (w *Writer) Uint(v uint64) { w.buf = binary.AppendUvarint(w.buf, v) }

// Int writes a signed (zig-zag) varint.
func (w *Writer) Int(v int64) { w.buf = binary.AppendVarint(w.buf, v) }

// Bool writes a bool as one byte.
func (w *Writer) Bool(b bool) {
	if b {
		w.buf = append(w.buf, 1)
	} else {
		w.buf = append(w.buf, 0)
	}
}

// String writes a length-prefixed string.
func (w *Writer) String(s string) {
	w.Uint(uint64(len(s)))
	w.buf = append(w.buf, s...)
}

// Bytes writes length-prefixed bytes.
func (w *Writer) Bytes(b []byte) {
	w.Uint(uint64(len(b)))
	w.buf = append(w.buf, b...)
}

// Data returns what was written.
func (w *Writer) Data() []byte { return w.buf }

// Reader reads values in the order a Writer wrote them.
//
// The strings Text returns share one copy of its input, made on the first
// String: an aggregate decoded from a snapshot holds thousands of ids, and
// one allocation for all of them loads it several times faster than one
// each (the copy lives as long as any of them).
type Reader struct {
	buf []byte
	err error
	// all is the whole input (buf is what is left of it) and str a copy
	// of it as a string, made on the first Text.
	str string
	all []byte
}

// NewReader returns a reader of b.
func NewReader(b []byte) *Reader { return &Reader{buf: b, all: b} }

func (r *Reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: bad %s with %d bytes left", ErrCorrupt, what, len(r.buf))
	}
	r.buf = nil
}

// Uint reads an unsigned varint.
func (r *Reader) Uint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.buf)
	if n <= 0 {
		r.fail("unsigned varint")
		return 0
	}
	r.buf = r.buf[n:]
	return v
}

// Int reads a signed varint.
func (r *Reader) Int() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.buf)
	if n <= 0 {
		r.fail("varint")
		return 0
	}
	r.buf = r.buf[n:]
	return v
}

// Bool reads a bool.
func (r *Reader) Bool() bool {
	if r.err != nil {
		return false
	}
	if len(r.buf) == 0 || r.buf[0] > 1 {
		r.fail("bool")
		return false
	}
	b := r.buf[0] == 1
	r.buf = r.buf[1:]
	return b
}

// Bytes reads length-prefixed bytes. They alias the reader's input.
func (r *Reader) Bytes() []byte {
	n := r.Uint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.buf)) {
		r.fail("length")
		return nil
	}
	b := r.buf[:n:n]
	r.buf = r.buf[n:]
	return b
}

// Text reads a length-prefixed string (Writer.String wrote it). It is not
// called String, which would make a Reader a fmt.Stringer that consumes
// its input when printed.
func (r *Reader) Text() string {
	b := r.Bytes()
	if r.err != nil || len(b) == 0 {
		return ""
	}
	if r.str == "" {
		r.str = string(r.all)
	}
	end := len(r.all) - len(r.buf)
	return r.str[end-len(b) : end]
}

// Count reads the number of items of a collection that follows, each of
// which takes at least minBytes (≥ 1): a count the rest of the input
// cannot hold is corrupt, so a damaged count never makes the caller
// allocate without bound.
func (r *Reader) Count(minBytes int) int {
	n := r.Uint()
	if r.err != nil {
		return 0
	}
	if n > uint64(len(r.buf)/max(minBytes, 1)) {
		r.fail("count")
		return 0
	}
	return int(n)
}

// Fail makes the reader fail with reason (a value that decoded but makes
// no sense), unless it already failed.
func (r *Reader) Fail(reason string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", ErrCorrupt, reason)
	}
	r.buf = nil
}

// Err returns the first error.
func (r *Reader) Err() error { return r.err }

// Done returns the first error, or ErrCorrupt if input is left unread.
func (r *Reader) Done() error {
	if r.err == nil && len(r.buf) > 0 {
		r.err = fmt.Errorf("%w: %d bytes left over", ErrCorrupt, len(r.buf))
	}
	return r.err
}
