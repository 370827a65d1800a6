// Package money does Furrow's integer money arithmetic.
//
// Amounts are fen (1/100 yuan) in an int64, weights are grams and rates are
// fen per kilogram. Floats never touch money: a payout that is off by one fen
// cannot be explained to finance. Every operation detects overflow instead of
// wrapping, because a wrapped sum looks like a plausible (negative) balance.
package money

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strconv"
)

var (
	// ErrNegative means a weight or a rate was negative. Corrections are
	// separate events (reversal + replacement), so a negative quantity is
	// always a caller's mistake rather than a refund.
	ErrNegative = errors.New("money: negative quantity")
	// ErrOverflow means the result does not fit in an int64 number of fen.
	ErrOverflow = errors.New("money: overflow")
)

// gramsPerKg turns a per-kilogram rate into a per-gram one.
const gramsPerKg = 1000

// Amount returns the price in fen of grams at fenPerKg:
// grams × fenPerKg / 1000, rounded once, half to even.
//
// Rounding happens once, on the exact 128-bit product, so summing amounts
// of split deliveries and pricing the whole differ by at most the rounding
// of each part, never by accumulated intermediate error. Half to even
// (banker's rounding) keeps a large number of half-fen cases unbiased.
func Amount(grams, fenPerKg int64) (int64, error) {
	if grams < 0 || fenPerKg < 0 {
		return 0, fmt.Errorf("amount of %d g at %d fen/kg: %w", grams, fenPerKg, ErrNegative)
	}
	hi, lo := bits.Mul64(uint64(grams), uint64(fenPerKg))
	// Div64 panics unless the quotient fits in 64 bits, i.e. hi < divisor;
	// a larger hi means the quotient is ≥ 2^64, far beyond int64.
	if hi >= gramsPerKg {
		return 0, fmt.Errorf("amount of %d g at %d fen/kg: %w", grams, fenPerKg, ErrOverflow)
	}
	q, r := bits.Div64(hi, lo, gramsPerKg)
	// Checked before rounding too, so that q+1 below cannot wrap.
	if q > math.MaxInt64 {
		return 0, fmt.Errorf("amount of %d g at %d fen/kg: %w", grams, fenPerKg, ErrOverflow)
	}
	if r > gramsPerKg/2 || (r == gramsPerKg/2 && q%2 == 1) {
		q++
	}
	if q > math.MaxInt64 {
		return 0, fmt.Errorf("amount of %d g at %d fen/kg: %w", grams, fenPerKg, ErrOverflow)
	}
	return int64(q), nil
}

// Add returns a + b, or ErrOverflow when the sum does not fit.
func Add(a, b int64) (int64, error) {
	s := a + b
	// Overflow happened iff both operands have the same sign and the sum's
	// sign differs from it.
	if (a >= 0) == (b >= 0) && (s >= 0) != (a >= 0) {
		return 0, fmt.Errorf("add %d + %d fen: %w", a, b, ErrOverflow)
	}
	return s, nil
}

// Sub returns a − b, or ErrOverflow when the difference does not fit.
func Sub(a, b int64) (int64, error) {
	d := a - b
	// Overflow happened iff the operands have different signs and the
	// difference's sign differs from a's.
	if (a >= 0) != (b >= 0) && (d >= 0) != (a >= 0) {
		return 0, fmt.Errorf("subtract %d - %d fen: %w", a, b, ErrOverflow)
	}
	return d, nil
}

// Sum returns the sum of xs, adding from the left, or ErrOverflow as soon
// as a partial sum does not fit: a running total that left the range once
// was wrong at that moment, whatever later terms would bring it back to.
func Sum(xs ...int64) (int64, error) {
	var s int64
	for _, x := range xs {
		var err error
		if s, err = Add(s, x); err != nil {
			return 0, err
		}
	}
	return s, nil
}

// Mul returns a × b, or ErrOverflow when the product does not fit. Prices
// of weights go through Amount, which rounds once; Mul is for exact
// multiples (a count of items, a sign).
func Mul(a, b int64) (int64, error) {
	neg := (a < 0) != (b < 0)
	hi, lo := bits.Mul64(abs(a), abs(b))
	// The magnitude fits when it is below 2^63, or exactly 2^63 for a
	// negative product (math.MinInt64).
	if hi != 0 || lo > math.MaxInt64 && !(neg && lo == 1<<63) {
		return 0, fmt.Errorf("multiply %d × %d: %w", a, b, ErrOverflow)
	}
	if neg {
		return int64(-lo), nil
	}
	return int64(lo), nil
}

// abs is |x| as a uint64, which holds |math.MinInt64| too.
func abs(x int64) uint64 {
	if x < 0 {
		return -uint64(x)
	}
	return uint64(x)
}

// Format renders fen as yuan with two decimals and no grouping, e.g.
// "1234.57" or "-0.05": the form statements, CSV exports and settlement
// files expect, and one that parses back without locale rules.
func Format(fen int64) string {
	return format(fen, false)
}

// FormatGrouped renders fen as yuan with thousands separators, e.g.
// "1,234.57", for people reading a screen.
func FormatGrouped(fen int64) string {
	return format(fen, true)
}

func format(fen int64, group bool) string {
	neg := fen < 0
	// Work in uint64 so that math.MinInt64 has a magnitude.
	u := uint64(fen)
	if neg {
		u = -u
	}
	yuan := strconv.FormatUint(u/100, 10)
	if group {
		yuan = groupThousands(yuan)
	}
	cents := u % 100
	b := make([]byte, 0, len(yuan)+4)
	if neg {
		b = append(b, '-')
	}
	b = append(b, yuan...)
	b = append(b, '.', byte('0'+cents/10), byte('0'+cents%10))
	return string(b)
}

// groupThousands inserts a comma every three digits from the right.
func groupThousands(digits string) string {
	if len(digits) <= 3 {
		return digits
	}
	b := make([]byte, 0, len(digits)+(len(digits)-1)/3)
	head := len(digits) % 3
	if head == 0 {
		head = 3
	}
	b = append(b, digits[:head]...)
	for i := head; i < len(digits); i += 3 {
		b = append(b, ',')
		b = append(b, digits[i:i+3]...)
	}
	return string(b)
}
