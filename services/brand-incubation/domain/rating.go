package domain

import (
	"errors"
	"math"
	"math/bits"

	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/money"
)

// Premium is the premium for grams sold at fenPerKg: grams × fenPerKg /
// 1000, rounded once, half-to-even. An overflow is an Invalid failure
// naming field (the limits on grams and rates keep real input far from it).
func Premium(field string, grams, fenPerKg int64) (int64, error) {
	fen, err := money.Amount(grams, fenPerKg)
	if errors.Is(err, money.ErrOverflow) {
		return 0, failure.Invalid(field, "%d g at %d fen/kg overflows the premium", grams, fenPerKg)
	}
	if err != nil {
		return 0, failure.Invalid(field, "%v", err)
	}
	return fen, nil
}

// EffectiveRate is premiumFen per kilogram of grams, in whole fen,
// rounded half-to-even: premiumFen × 1000 / grams. It is 0 when nothing
// was sold, and computed in 128 bits, so it never overflows for
// non-negative inputs.
func EffectiveRate(premiumFen, grams int64) int64 {
	if grams <= 0 || premiumFen <= 0 {
		return 0
	}
	hi, lo := bits.Mul64(uint64(premiumFen), 1000)
	d := uint64(grams)
	if hi >= d { // the quotient would not fit in 64 bits
		return math.MaxInt64
	}
	q, r := bits.Div64(hi, lo, d)
	// Compare 2r with d without overflowing: r < d ≤ 2^63.
	if twice := 2 * r; twice > d || (twice == d && q%2 == 1) {
		q++
	}
	if q > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(q)
}

// Rerated is what a sale earns at the rule set's current rate.
type Rerated struct {
	Rate       Rate
	PremiumFen int64
	DeltaFen   int64
	// Covered is false when no rule covers the sale's day any more.
	Covered bool
}

// Rerate rates one earning sale (day, grams, the rate it earns at and its
// premium) against rs: it returns the new rate and premium and whether
// they differ. Re-rating and previews both use it, so that a preview
// equals what is later applied. A sale whose rule and rate stay the same
// is unchanged even when the rule's version moved (a revision to the same
// rate from an earlier day): nothing about its premium changed.
func Rerate(rs *RuleSet, day Date, grams int64, cur Rate, premiumFen int64) (Rerated, bool, error) {
	rate, ok := rs.RateOn(day)
	if !ok {
		// Rule periods never change once set, so an earning sale stays
		// covered; should that ever break, the sale stops earning rather
		// than keep a premium no rule grants.
		delta, err := money.Sub(0, premiumFen)
		return Rerated{DeltaFen: delta}, premiumFen != 0 || cur.RuleID != "", err
	}
	if rate.RuleID == cur.RuleID && rate.FenPerKg == cur.FenPerKg {
		return Rerated{Rate: cur, PremiumFen: premiumFen, Covered: true}, false, nil
	}
	fen, err := Premium("grams", grams, rate.FenPerKg)
	if err != nil {
		return Rerated{}, false, err
	}
	delta, err := money.Sub(fen, premiumFen)
	if err != nil {
		return Rerated{}, false, err
	}
	return Rerated{Rate: rate, PremiumFen: fen, DeltaFen: delta, Covered: true}, true, nil
}
