package snapshot_test

import (
	"errors"
	"math"
	"testing"

	"github.com/furrow/furrow/pkg/snapshot"
)

func TestRoundTripAndDamage(t *testing.T) {
	t.Parallel()
	var w snapshot.Writer
	w.Uint(math.MaxUint64)
	w.Int(math.MinInt64)
	w.Bool(true)
	w.String("农场")
	w.Bytes([]byte{0, 1, 2})
	w.Uint(2) // a count of two strings
	w.String("a")
	w.String("")
	data := w.Data()

	r := snapshot.NewReader(data)
	u, i, b, s, bs := r.Uint(), r.Int(), r.Bool(), r.Text(), r.Bytes()
	n := r.Count(1)
	var items []string
	for range n {
		items = append(items, r.Text())
	}
	if err := r.Done(); err != nil {
		t.Fatal(err)
	}
	if u != math.MaxUint64 || i != math.MinInt64 || !b || s != "农场" || string(bs) != "\x00\x01\x02" || len(items) != 2 || items[0] != "a" {
		t.Fatalf("read back %v %v %v %q %v %q", u, i, b, s, bs, items)
	}

	for cut := range len(data) {
		r := snapshot.NewReader(data[:cut])
		r.Uint()
		r.Int()
		r.Bool()
		r.Text()
		r.Bytes()
		for range r.Count(1) {
			r.Text()
		}
		if err := r.Done(); !errors.Is(err, snapshot.ErrCorrupt) {
			t.Errorf("cut to %d of %d bytes: Done = %v, want ErrCorrupt", cut, len(data), err)
		}
	}
	r = snapshot.NewReader(append(data, 7))
	r.Uint()
	r.Int()
	r.Bool()
	r.Text()
	r.Bytes()
	for range r.Count(1) {
		r.Text()
	}
	if err := r.Done(); !errors.Is(err, snapshot.ErrCorrupt) {
		t.Errorf("a byte left over: Done = %v, want ErrCorrupt", err)
	}
}

// A count the input cannot hold is refused before anyone allocates for it.
func TestCountBoundedByInput(t *testing.T) {
	t.Parallel()
	var w snapshot.Writer
	w.Uint(1 << 40)
	w.String("x")
	r := snapshot.NewReader(w.Data())
	if n := r.Count(1); n != 0 || !errors.Is(r.Err(), snapshot.ErrCorrupt) {
		t.Fatalf("Count = %d, %v; want 0, ErrCorrupt", n, r.Err())
	}
	r = snapshot.NewReader([]byte{2})
	if r.Bool(); !errors.Is(r.Err(), snapshot.ErrCorrupt) {
		t.Fatalf("bool byte 2: %v, want ErrCorrupt", r.Err())
	}
}
