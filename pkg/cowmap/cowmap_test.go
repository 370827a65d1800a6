package cowmap_test

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/furrow/furrow/pkg/cowmap"
)

// contents returns m as a plain map, through All, checking Len and Get.
func contents(t *testing.T, m *cowmap.Map[int, int]) map[int]int {
	t.Helper()
	got := map[int]int{}
	for k, v := range m.All() {
		if _, dup := got[k]; dup {
			t.Fatalf("All yielded %d twice", k)
		}
		got[k] = v
		if w, ok := m.Get(k); !ok || w != v {
			t.Fatalf("Get(%d) = %d, %v; All yielded %d", k, w, ok, v)
		}
	}
	if m.Len() != len(got) {
		t.Fatalf("Len() = %d, All yielded %d keys", m.Len(), len(got))
	}
	return got
}

// TestMapMatchesAPlainMap: random writes (new keys and overwrites) to a
// family of copies, each taken at a random moment from another, leave each
// copy exactly like a plain map that saw the same writes — across many
// merges.
func TestMapMatchesAPlainMap(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	type pair struct {
		m    *cowmap.Map[int, int]
		want map[int]int
	}
	family := []pair{{&cowmap.Map[int, int]{}, map[int]int{}}}
	for step := range 20_000 {
		p := family[rng.IntN(len(family))]
		switch r := rng.IntN(100); {
		case r < 1 && len(family) < 16:
			c := p.m.Clone()
			family = append(family, pair{&c, maps.Clone(p.want)})
		default:
			k, v := rng.IntN(5_000), step
			p.m.Set(k, v)
			p.want[k] = v
		}
	}
	if len(family) < 8 {
		t.Fatalf("only %d copies made", len(family))
	}
	for i, p := range family {
		if diff := cmp.Diff(p.want, contents(t, p.m)); diff != "" {
			t.Fatalf("copy %d (-want +got):\n%s", i, diff)
		}
		if p.m.Has(-1) {
			t.Fatal("Has(-1) on a key never set")
		}
		if _, ok := p.m.Get(-1); ok {
			t.Fatal("Get(-1) found a key never set")
		}
	}
}

func TestZeroMap(t *testing.T) {
	t.Parallel()
	var m cowmap.Map[int, int]
	if m.Len() != 0 || m.Has(1) {
		t.Fatal("zero Map is not empty")
	}
	c := m.Clone()
	c.Set(1, 1)
	if m.Len() != 0 || m.Has(1) || c.Len() != 1 {
		t.Fatal("setting a clone of the zero Map changed it")
	}
}

// TestCopiesChangeConcurrently: copies of one map, taken and written by
// goroutines at once (with merges), share nothing that is written (run
// with -race), and each ends with its own writes only.
func TestCopiesChangeConcurrently(t *testing.T) {
	t.Parallel()
	var orig cowmap.Map[string, int]
	for i := range 1_000 {
		orig.Set(fmt.Sprint("k", i), i)
	}
	var wg sync.WaitGroup
	copies := make([]cowmap.Map[string, int], 4)
	for g := range copies {
		wg.Go(func() {
			c := orig.Clone()
			for i := range 500 {
				c.Set(fmt.Sprint("k", i), -g)        // overwrite
				c.Set(fmt.Sprint("g", g, "-", i), g) // new
			}
			copies[g] = c
		})
	}
	wg.Wait()
	for g := range copies {
		c := &copies[g]
		if c.Len() != 1_500 {
			t.Fatalf("copy %d has %d keys, want 1500", g, c.Len())
		}
		for i := range 1_000 {
			want := i
			if i < 500 {
				want = -g
			}
			if v, _ := c.Get(fmt.Sprint("k", i)); v != want {
				t.Fatalf("copy %d: k%d = %d, want %d", g, i, v, want)
			}
		}
		for other := range copies {
			if other != g && c.Has(fmt.Sprint("g", other, "-0")) {
				t.Fatalf("copy %d holds copy %d's key", g, other)
			}
		}
	}
	if orig.Len() != 1_000 {
		t.Fatalf("original has %d keys after its copies changed, want 1000", orig.Len())
	}
	for i := range 1_000 {
		if v, _ := orig.Get(fmt.Sprint("k", i)); v != i {
			t.Fatalf("original: k%d = %d, want %d", i, v, i)
		}
	}
}

// BenchmarkClone compares copying a grown Map with copying a plain map of
// the same size: what a cached aggregate's load pays per copy.
func BenchmarkClone(b *testing.B) {
	for _, n := range []int{2_000, 20_000, 200_000} {
		var m cowmap.Map[string, struct{}]
		plain := map[string]struct{}{}
		for i := range n {
			k := fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)
			m.Set(k, struct{}{})
			plain[k] = struct{}{}
		}
		b.Run(fmt.Sprintf("cowmap/n=%d", n), func(b *testing.B) {
			for b.Loop() {
				c := m.Clone()
				c.Set("one more", struct{}{})
			}
		})
		b.Run(fmt.Sprintf("map/n=%d", n), func(b *testing.B) {
			for b.Loop() {
				c := maps.Clone(plain)
				c["one more"] = struct{}{}
			}
		})
	}
}
