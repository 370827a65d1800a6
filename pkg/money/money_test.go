package money_test

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/furrow/furrow/pkg/money"
)

func TestAmount(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name            string
		grams, fenPerKg int64
		want            int64
		wantErr         error
	}{
		{"zero grams", 0, 1234, 0, nil},
		{"zero rate", 1234, 0, 0, nil},
		{"one kilogram", 1000, 100, 100, nil},
		{"rounds .7 up", 1_234_567, 100, 123_457, nil},
		{"rounds .3 down", 1_234_563, 100, 123_456, nil},
		{"half to even: 0.5 -> 0", 500, 1, 0, nil},
		{"half to even: 1.5 -> 2", 1500, 1, 2, nil},
		{"half to even: 2.5 -> 2", 2500, 1, 2, nil},
		{"half to even: 3.5 -> 4", 3500, 1, 4, nil},
		{"just above half rounds up", 501, 1, 1, nil},
		{"just below half rounds down", 2499, 1, 2, nil},
		{"branded orange premium: 12.345 kg at 1 yuan/kg", 12_345, 100, 1_234, nil},
		{"largest exact", math.MaxInt64, 1000, math.MaxInt64, nil},
		{"product beyond 64 bits, result fits", math.MaxInt64, 999, 9_214_148_664_817_921_031, nil},
		{"largest half below max stays even", 7_094_901_566_811_366_005, 1300, math.MaxInt64 - 1, nil},
		{"half at max (odd) rounds past max", 9_042_521_604_759_584_125, 1020, 0, money.ErrOverflow},
		{"rounding up past max", 9_204_962_112_629_516_774, 1002, 0, money.ErrOverflow},
		{"just past max", 9_214_157_878_975_800_008, 1001, 0, money.ErrOverflow},
		{"quotient beyond 64 bits", math.MaxInt64, math.MaxInt64, 0, money.ErrOverflow},
		{"negative grams", -1, 100, 0, money.ErrNegative},
		{"negative rate", 1000, -1, 0, money.ErrNegative},
		{"min int grams", math.MinInt64, 1, 0, money.ErrNegative},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := money.Amount(tc.grams, tc.fenPerKg)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Amount(%d, %d) error = %v, want %v", tc.grams, tc.fenPerKg, err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("Amount(%d, %d) = %d, want %d", tc.grams, tc.fenPerKg, got, tc.want)
			}
			if want := oracle(tc.grams, tc.fenPerKg); err == nil && (want == nil || want.Int64() != got) {
				t.Errorf("Amount(%d, %d) = %d disagrees with the big.Int oracle %v", tc.grams, tc.fenPerKg, got, want)
			}
		})
	}
}

func TestAddSub(t *testing.T) {
	t.Parallel()
	const maxI, minI = math.MaxInt64, math.MinInt64
	for _, tc := range []struct {
		name    string
		op      func(a, b int64) (int64, error)
		a, b    int64
		want    int64
		wantErr error
	}{
		{"add", money.Add, 150, 250, 400, nil},
		{"add negative", money.Add, -150, 100, -50, nil},
		{"add to max", money.Add, maxI - 1, 1, maxI, nil},
		{"add past max", money.Add, maxI, 1, 0, money.ErrOverflow},
		{"add to min", money.Add, minI + 1, -1, minI, nil},
		{"add past min", money.Add, minI, -1, 0, money.ErrOverflow},
		{"add max and min", money.Add, maxI, minI, -1, nil},
		{"sub", money.Sub, 400, 150, 250, nil},
		{"sub below zero", money.Sub, 100, 150, -50, nil},
		{"sub to min", money.Sub, minI + 1, 1, minI, nil},
		{"sub past min", money.Sub, minI, 1, 0, money.ErrOverflow},
		{"sub min from zero", money.Sub, 0, minI, 0, money.ErrOverflow},
		{"sub min from -1", money.Sub, -1, minI, maxI, nil},
		{"sub negative past max", money.Sub, maxI, -1, 0, money.ErrOverflow},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := tc.op(tc.a, tc.b)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("(%d, %d) error = %v, want %v", tc.a, tc.b, err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("(%d, %d) = %d, want %d", tc.a, tc.b, got, tc.want)
			}
		})
	}
}

func TestFormat(t *testing.T) {
	t.Parallel()
	type row struct{ Plain, Grouped string }
	for _, tc := range []struct {
		fen  int64
		want row
	}{
		{0, row{"0.00", "0.00"}},
		{5, row{"0.05", "0.05"}},
		{-5, row{"-0.05", "-0.05"}},
		{100, row{"1.00", "1.00"}},
		{99_999, row{"999.99", "999.99"}},
		{123_457, row{"1234.57", "1,234.57"}},
		{-123_457, row{"-1234.57", "-1,234.57"}},
		{100_000_000_000, row{"1000000000.00", "1,000,000,000.00"}},
		{math.MaxInt64, row{"92233720368547758.07", "92,233,720,368,547,758.07"}},
		{math.MinInt64, row{"-92233720368547758.08", "-92,233,720,368,547,758.08"}},
	} {
		got := row{money.Format(tc.fen), money.FormatGrouped(tc.fen)}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("format %d (-want +got):\n%s", tc.fen, diff)
		}
	}
}

// oracle computes Amount with math/big: nil when the result does not fit
// in an int64.
func oracle(grams, fenPerKg int64) *big.Int {
	p := new(big.Int).Mul(big.NewInt(grams), big.NewInt(fenPerKg))
	q, r := new(big.Int).QuoRem(p, big.NewInt(1000), new(big.Int))
	switch r.Cmp(big.NewInt(500)) {
	case 1:
		q.Add(q, big.NewInt(1))
	case 0:
		if q.Bit(0) == 1 {
			q.Add(q, big.NewInt(1))
		}
	}
	if !q.IsInt64() {
		return nil
	}
	return q
}

func FuzzAmount(f *testing.F) {
	for _, seed := range [][2]int64{
		{0, 0}, {500, 1}, {1500, 1}, {2500, 1}, {1_234_567, 100},
		{math.MaxInt64, 1000}, {math.MaxInt64, 1001}, {math.MaxInt64, math.MaxInt64},
		{9_042_521_604_759_584_125, 1020}, {-1, 1}, {1, -1}, {math.MinInt64, math.MinInt64},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, grams, fenPerKg int64) {
		got, err := money.Amount(grams, fenPerKg)
		switch {
		case grams < 0 || fenPerKg < 0:
			if !errors.Is(err, money.ErrNegative) {
				t.Fatalf("Amount(%d, %d) = %d, %v; want ErrNegative", grams, fenPerKg, got, err)
			}
			return
		case oracle(grams, fenPerKg) == nil:
			if !errors.Is(err, money.ErrOverflow) {
				t.Fatalf("Amount(%d, %d) = %d, %v; want ErrOverflow", grams, fenPerKg, got, err)
			}
			return
		}
		if want := oracle(grams, fenPerKg).Int64(); err != nil || got != want {
			t.Fatalf("Amount(%d, %d) = %d, %v; want %d", grams, fenPerKg, got, err, want)
		}
	})
}

func FuzzAddSub(f *testing.F) {
	f.Add(int64(1), int64(2))
	f.Add(int64(math.MaxInt64), int64(1))
	f.Add(int64(math.MinInt64), int64(-1))
	f.Add(int64(0), int64(math.MinInt64))
	f.Fuzz(func(t *testing.T, a, b int64) {
		for _, op := range []struct {
			name string
			f    func(a, b int64) (int64, error)
			big  func(z, x, y *big.Int) *big.Int
		}{
			{"Add", money.Add, (*big.Int).Add},
			{"Sub", money.Sub, (*big.Int).Sub},
		} {
			got, err := op.f(a, b)
			want := op.big(new(big.Int), big.NewInt(a), big.NewInt(b))
			if !want.IsInt64() {
				if !errors.Is(err, money.ErrOverflow) {
					t.Fatalf("%s(%d, %d) = %d, %v; want ErrOverflow", op.name, a, b, got, err)
				}
				continue
			}
			if err != nil || got != want.Int64() {
				t.Fatalf("%s(%d, %d) = %d, %v; want %d", op.name, a, b, got, err, want)
			}
		}
	})
}

// boundaries are the values where int64 arithmetic goes wrong first: the
// extremes, their neighbours, the powers of two around them, and small
// values of both signs.
var boundaries = []int64{
	math.MinInt64, math.MinInt64 + 1, math.MinInt64 + 2, math.MinInt64 / 2, math.MinInt64/2 - 1, math.MinInt64/2 + 1,
	-1 << 32, -1000, -501, -500, -499, -2, -1, 0, 1, 2, 499, 500, 501, 999, 1000, 1001, 1 << 32,
	3_037_000_499, 3_037_000_500, // around √MaxInt64
	math.MaxInt64/1000 - 1, math.MaxInt64 / 1000, math.MaxInt64/1000 + 1,
	math.MaxInt64 / 2, math.MaxInt64/2 + 1, math.MaxInt64/2 - 1, math.MaxInt64 - 2, math.MaxInt64 - 1, math.MaxInt64,
}

// samples are the boundaries and seeded random values of every magnitude.
func samples() []int64 {
	out := slices.Clone(boundaries)
	rnd := rand.New(rand.NewPCG(9, 2))
	for range 200 {
		v := int64(rnd.Uint64() >> rnd.IntN(64))
		out = append(out, v, -v)
	}
	return out
}

// checkAgainstBig fails unless got, err is want when want fits in an
// int64, and ErrOverflow when it does not.
func checkAgainstBig(t *testing.T, what string, got int64, err error, want *big.Int) {
	t.Helper()
	if !want.IsInt64() {
		if !errors.Is(err, money.ErrOverflow) {
			t.Fatalf("%s = %d, %v; want ErrOverflow (exact %v)", what, got, err, want)
		}
		return
	}
	if err != nil || got != want.Int64() {
		t.Fatalf("%s = %d, %v; want %v", what, got, err, want)
	}
}

// TestArithmeticAgainstBig checks every pair of samples: Add, Sub and Mul
// against math/big, Amount against the big.Int oracle (half to even), and
// Sum over runs of samples against a big.Int sum.
func TestArithmeticAgainstBig(t *testing.T) {
	t.Parallel()
	xs := samples()
	for _, a := range xs {
		for _, b := range xs {
			A, B := big.NewInt(a), big.NewInt(b)
			got, err := money.Add(a, b)
			checkAgainstBig(t, fmt.Sprintf("Add(%d, %d)", a, b), got, err, new(big.Int).Add(A, B))
			got, err = money.Sub(a, b)
			checkAgainstBig(t, fmt.Sprintf("Sub(%d, %d)", a, b), got, err, new(big.Int).Sub(A, B))
			got, err = money.Mul(a, b)
			checkAgainstBig(t, fmt.Sprintf("Mul(%d, %d)", a, b), got, err, new(big.Int).Mul(A, B))
			got, err = money.Amount(a, b)
			switch want := oracle(a, b); {
			case a < 0 || b < 0:
				if !errors.Is(err, money.ErrNegative) {
					t.Fatalf("Amount(%d, %d) = %d, %v; want ErrNegative", a, b, got, err)
				}
			case want == nil:
				if !errors.Is(err, money.ErrOverflow) {
					t.Fatalf("Amount(%d, %d) = %d, %v; want ErrOverflow", a, b, got, err)
				}
			case err != nil || got != want.Int64():
				t.Fatalf("Amount(%d, %d) = %d, %v; want %v", a, b, got, err, want)
			}
		}
	}
	for n := range len(xs) {
		run := xs[n:min(n+5, len(xs))]
		sum := new(big.Int)
		fits := true
		for _, x := range run {
			// Sum fails at the first partial sum that does not fit, even
			// when a later term would bring it back: a running total that
			// left the range once was wrong at that moment.
			if sum.Add(sum, big.NewInt(x)); !sum.IsInt64() {
				fits = false
			}
		}
		got, err := money.Sum(run...)
		if !fits {
			if !errors.Is(err, money.ErrOverflow) {
				t.Fatalf("Sum(%v) = %d, %v; want ErrOverflow", run, got, err)
			}
			continue
		}
		checkAgainstBig(t, fmt.Sprintf("Sum(%v)", run), got, err, sum)
	}
}

func TestSumAndMul(t *testing.T) {
	t.Parallel()
	const maxI, minI = math.MaxInt64, math.MinInt64
	for _, tc := range []struct {
		name    string
		got     func() (int64, error)
		want    int64
		wantErr error
	}{
		{"sum of nothing", func() (int64, error) { return money.Sum() }, 0, nil},
		{"sum", func() (int64, error) { return money.Sum(150, 250, -100) }, 300, nil},
		{"sum to max", func() (int64, error) { return money.Sum(maxI-2, 1, 1) }, maxI, nil},
		{"sum past max", func() (int64, error) { return money.Sum(maxI, 1) }, 0, money.ErrOverflow},
		{"two max deliveries", func() (int64, error) { return money.Sum(maxI, maxI) }, 0, money.ErrOverflow},
		{"sum past max and back", func() (int64, error) { return money.Sum(maxI, 1, -1) }, 0, money.ErrOverflow},
		{"sum to min", func() (int64, error) { return money.Sum(minI+1, -1) }, minI, nil},
		{"sum past min", func() (int64, error) { return money.Sum(minI, -1) }, 0, money.ErrOverflow},
		{"mul", func() (int64, error) { return money.Mul(-12, 34) }, -408, nil},
		{"mul by zero", func() (int64, error) { return money.Mul(maxI, 0) }, 0, nil},
		{"mul to min", func() (int64, error) { return money.Mul(minI/2, 2) }, minI, nil},
		{"mul min by -1", func() (int64, error) { return money.Mul(minI, -1) }, 0, money.ErrOverflow},
		{"mul -1 by min", func() (int64, error) { return money.Mul(-1, minI) }, 0, money.ErrOverflow},
		{"mul past max", func() (int64, error) { return money.Mul(3_037_000_500, 3_037_000_500) }, 0, money.ErrOverflow},
		{"mul just below max", func() (int64, error) { return money.Mul(3_037_000_499, 3_037_000_499) }, 9_223_372_030_926_249_001, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := tc.got()
			if !errors.Is(err, tc.wantErr) || got != tc.want {
				t.Fatalf("= %d, %v; want %d, %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func FuzzMulSum(f *testing.F) {
	f.Add(int64(3_037_000_500), int64(3_037_000_500), int64(0))
	f.Add(int64(math.MinInt64), int64(-1), int64(1))
	f.Add(int64(math.MaxInt64), int64(1), int64(math.MinInt64))
	f.Fuzz(func(t *testing.T, a, b, c int64) {
		got, err := money.Mul(a, b)
		checkAgainstBig(t, fmt.Sprintf("Mul(%d, %d)", a, b), got, err, new(big.Int).Mul(big.NewInt(a), big.NewInt(b)))
		ab := new(big.Int).Add(big.NewInt(a), big.NewInt(b))
		abc := new(big.Int).Add(ab, big.NewInt(c))
		got, err = money.Sum(a, b, c)
		if !ab.IsInt64() {
			if !errors.Is(err, money.ErrOverflow) {
				t.Fatalf("Sum(%d, %d, %d) = %d, %v; want ErrOverflow (a+b leaves int64)", a, b, c, got, err)
			}
			return
		}
		checkAgainstBig(t, fmt.Sprintf("Sum(%d, %d, %d)", a, b, c), got, err, abc)
	})
}
