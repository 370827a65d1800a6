// Package limits names the largest values Furrow accepts from a caller and
// checks them at the edge, in the gRPC ports, before any command runs: the
// domain maximum of every quantity, price and amount, the length of every
// free-text field, and the plausible window of every timestamp. A value
// beyond its limit is a failure.Invalid naming the field and the limit, so
// the caller gets INVALID_ARGUMENT with a google.rpc.BadRequest detail.
//
// # Why these numbers
//
// Each limit is far above anything real and far below where int64
// arithmetic gets close to overflowing (math.MaxInt64 ≈ 9.22 × 10^18):
//
//   - A weigh-in is at most MaxNetGrams = 10^8 g (100 t: a long lorry
//     carries 40 t) at most MaxPriceFenPerKg = 10^7 fen/kg (100,000 yuan
//     per kilogram, above the dearest produce there is). Their product,
//     the intermediate of amount = grams × price / 1000, is at most
//     10^15, and a delivery's amount at most 10^12 fen. Nine million such
//     deliveries would still fit one int64 sum.
//   - An order is at most MaxOrderGrams = 10^10 g (10,000 t); with the
//     largest tolerance (2×) and price its value is at most 2 × 10^14 fen,
//     and what it may reserve is bounded again by the programme's budget.
//   - A programme's budget and a payout are at most MaxAmountFen = 10^13
//     fen (100 billion yuan, a hundred times the biggest programme in
//     the design brief). 900,000 of them at the limit still sum in int64.
//   - A sales line is at most MaxSaleGrams = 10^10 g at a premium of at
//     most MaxPremiumFenPerKg = 10^6 fen/kg (10,000 yuan per kilogram): at
//     most 10^13 fen of premium a line, 5 × 10^15 for a 500-line report.
//
// The limits keep single values and their products exact; sums over many
// of them (a farmer's balance, a county's totals, the trial balance) are
// still checked for overflow where they are added (package money).
//
// Strings are counted in characters (runes), not bytes, so a name in hanzi
// gets as many characters as one in latin letters: MaxCodeLen for codes
// and short identifiers people type (grades, products, counties, phone
// numbers, payout accounts), MaxNameLen for names, MaxTextLen for reasons
// and notes. Ids that become NATS subject tokens are checked by package
// ident (at most ident.MaxLen, 64).
//
// Timestamps must be valid (google.protobuf.Timestamp's own rules: nanos
// in [0, 10^9), years 1 to 9999) and lie in [MinTime, MaxTime): years 2000
// to 2099, the same window brand incubation applies to its "YYYY-MM-DD"
// dates. An event time (when produce was weighed or sold) may in addition
// lie at most MaxFuture after now.
package limits

import (
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/furrow/furrow/pkg/failure"
)

// Quantities, prices and amounts: the most one value may be.
const (
	// MaxNetGrams is the heaviest single weigh-in: 100 t.
	MaxNetGrams int64 = 100_000_000
	// MaxOrderGrams is the largest quantity one purchase order may order:
	// 10,000 t.
	MaxOrderGrams int64 = 10_000_000_000
	// MaxSaleGrams is the largest quantity one line of a sales report may
	// hold: 10,000 t.
	MaxSaleGrams int64 = 10_000_000_000
	// MaxPriceFenPerKg is the highest purchase price: 100,000 yuan per
	// kilogram.
	MaxPriceFenPerKg int64 = 10_000_000
	// MaxPremiumFenPerKg is the highest premium a rule may pay: 10,000
	// yuan per kilogram.
	MaxPremiumFenPerKg int64 = 1_000_000
	// MaxAmountFen is the largest programme budget or payout: 100 billion
	// yuan.
	MaxAmountFen int64 = 10_000_000_000_000
)

// Free text: the most characters (runes) a field may hold.
const (
	// MaxCodeLen bounds codes and short identifiers people type: grades,
	// product codes, counties, phone numbers, payout accounts.
	MaxCodeLen = 64
	// MaxNameLen bounds names: of farmers, cooperatives, programmes,
	// brands, channels, product categories, certificates.
	MaxNameLen = 200
	// MaxTextLen bounds reasons and notes.
	MaxTextLen = 1000
)

// MaxFuture is how far after now an event time (weighed_at, sold_at) may
// lie: a year, enough for any clock or time-zone mistake to be caught
// without refusing a scale whose clock runs ahead.
const MaxFuture = 365 * 24 * time.Hour

// The window every timestamp and date must lie in: [MinTime, MaxTime).
var (
	MinTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	MaxTime = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
)

// AtMost fails naming field when v is above limit. unit names what v
// counts ("g", "fen", "fen/kg") in the message. It does not check the
// lower bound: zero and negative values are the domain's to refuse, with
// the reason that applies there.
func AtMost(field string, v, limit int64, unit string) error {
	if v > limit {
		return failure.Invalid(field, "%d %s is over the limit of %d %s", v, unit, limit, unit)
	}
	return nil
}

// Text fails naming field when s has more than limit characters.
func Text(field, s string, limit int) error {
	if n := utf8.RuneCountInString(s); n > limit {
		return failure.Invalid(field, "is %d characters long; at most %d", n, limit)
	}
	return nil
}

// Time converts a request's timestamp, failing naming field unless it is
// valid and within [MinTime, MaxTime). An unset (nil) timestamp is the
// zero time: whether the field is required, or what it defaults to, is
// the command's business.
func Time(field string, ts *timestamppb.Timestamp) (time.Time, error) {
	if ts == nil {
		return time.Time{}, nil
	}
	if err := ts.CheckValid(); err != nil {
		return time.Time{}, failure.Invalid(field, "is not a valid timestamp (seconds %d, nanos %d): %v", ts.GetSeconds(), ts.GetNanos(), err)
	}
	t := ts.AsTime()
	if t.Before(MinTime) || !t.Before(MaxTime) {
		return time.Time{}, failure.Invalid(field, "%s is outside %s to %s", t.Format(time.RFC3339Nano),
			MinTime.Format(time.RFC3339), MaxTime.Format(time.RFC3339))
	}
	return t, nil
}

// EventTime is Time for when something happened (weighed, sold): it must
// in addition lie at most MaxFuture after now.
func EventTime(field string, ts *timestamppb.Timestamp, now time.Time) (time.Time, error) {
	t, err := Time(field, ts)
	if err != nil || t.IsZero() {
		return t, err
	}
	if latest := now.Add(MaxFuture); t.After(latest) {
		return time.Time{}, failure.Invalid(field, "%s is more than a year after now (%s)", t.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return t, nil
}
