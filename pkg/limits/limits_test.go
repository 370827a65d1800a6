package limits_test

import (
	"errors"
	"math"
	"math/big"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/limits"
)

// wantInvalid fails unless err is an Invalid failure naming field whose
// message mentions each of mentions.
func wantInvalid(t testing.TB, err error, field string, mentions ...string) {
	t.Helper()
	var fe *failure.Error
	if !errors.As(err, &fe) || fe.Kind != failure.KindInvalid || fe.Field != field {
		t.Fatalf("err = %v, want invalid %s", err, field)
	}
	for _, m := range mentions {
		if !strings.Contains(err.Error(), m) {
			t.Fatalf("err = %v, want it to mention %q", err, m)
		}
	}
}

// TestProductsOfMaximaFitInt64 is the package comment's arithmetic, done
// exactly: the largest amount a value at the limits produces, and how many
// of them an int64 sum holds.
func TestProductsOfMaximaFitInt64(t *testing.T) {
	t.Parallel()
	maxInt := big.NewInt(math.MaxInt64)
	amount := func(grams, fenPerKg int64) *big.Int {
		p := new(big.Int).Mul(big.NewInt(grams), big.NewInt(fenPerKg))
		return p.Quo(p, big.NewInt(1000))
	}
	for _, tc := range []struct {
		name string
		v    *big.Int
		// fits is how many values of v an int64 sum must hold.
		fits int64
	}{
		{"delivery: grams × price", new(big.Int).Mul(big.NewInt(limits.MaxNetGrams), big.NewInt(limits.MaxPriceFenPerKg)), 9000},
		{"delivery amount", amount(limits.MaxNetGrams, limits.MaxPriceFenPerKg), 9_000_000},
		{"order value at twice the quantity", amount(2*limits.MaxOrderGrams, limits.MaxPriceFenPerKg), 40_000},
		{"sale premium", amount(limits.MaxSaleGrams, limits.MaxPremiumFenPerKg), 900_000},
		{"budget or payout", big.NewInt(limits.MaxAmountFen), 900_000},
	} {
		total := new(big.Int).Mul(tc.v, big.NewInt(tc.fits))
		if total.Cmp(maxInt) > 0 {
			t.Errorf("%s: %d of %s = %s overflow int64", tc.name, tc.fits, tc.v, total)
		}
	}
}

func TestAtMost(t *testing.T) {
	t.Parallel()
	for _, v := range []int64{math.MinInt64, -1, 0, 1, limits.MaxNetGrams} {
		if err := limits.AtMost("net_grams", v, limits.MaxNetGrams, "g"); err != nil {
			t.Errorf("AtMost(%d) = %v", v, err)
		}
	}
	for _, v := range []int64{limits.MaxNetGrams + 1, math.MaxInt64} {
		wantInvalid(t, limits.AtMost("net_grams", v, limits.MaxNetGrams, "g"), "net_grams", "100000000 g")
	}
}

func TestTextCountsCharacters(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "Wang Fang", strings.Repeat("x", limits.MaxNameLen), strings.Repeat("王", limits.MaxNameLen)} {
		if err := limits.Text("name", s, limits.MaxNameLen); err != nil {
			t.Errorf("Text(%d bytes) = %v", len(s), err)
		}
	}
	for _, s := range []string{strings.Repeat("x", limits.MaxNameLen+1), strings.Repeat("王", limits.MaxNameLen+1)} {
		wantInvalid(t, limits.Text("name", s, limits.MaxNameLen), "name", "201 characters", "at most 200")
	}
}

func TestTime(t *testing.T) {
	t.Parallel()
	if got, err := limits.Time("period_start", nil); err != nil || !got.IsZero() {
		t.Fatalf("Time(nil) = %v, %v; want the zero time", got, err)
	}
	for _, ok := range []time.Time{limits.MinTime, time.Date(2026, 11, 28, 9, 0, 0, 999_999_999, time.UTC), limits.MaxTime.Add(-time.Nanosecond)} {
		got, err := limits.Time("period_start", timestamppb.New(ok))
		if err != nil || !got.Equal(ok) {
			t.Errorf("Time(%s) = %v, %v", ok, got, err)
		}
	}
	for _, tc := range []struct {
		name     string
		ts       *timestamppb.Timestamp
		mentions []string
	}{
		{"nanos -1", &timestamppb.Timestamp{Seconds: 1_790_000_000, Nanos: -1}, []string{"not a valid timestamp"}},
		{"nanos a whole second", &timestamppb.Timestamp{Seconds: 1_790_000_000, Nanos: 1_000_000_000}, []string{"not a valid timestamp"}},
		{"year 318857", &timestamppb.Timestamp{Seconds: 10_000_000_000_000}, []string{"not a valid timestamp"}},
		{"before year 1", &timestamppb.Timestamp{Seconds: -62135596801}, []string{"not a valid timestamp"}},
		{"the epoch", &timestamppb.Timestamp{}, []string{"1970", "2000-01-01"}},
		{"just before 2000", timestamppb.New(limits.MinTime.Add(-time.Nanosecond)), []string{"2000-01-01"}},
		{"2100", timestamppb.New(limits.MaxTime), []string{"2100-01-01"}},
		{"year 9999", timestamppb.New(time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)), []string{"9999"}},
	} {
		_, err := limits.Time("period_start", tc.ts)
		wantInvalid(t, err, "period_start", tc.mentions...)
	}
}

func TestEventTime(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	if got, err := limits.EventTime("weighed_at", nil, now); err != nil || !got.IsZero() {
		t.Fatalf("EventTime(nil) = %v, %v; want the zero time (the command's default)", got, err)
	}
	for _, ok := range []time.Time{limits.MinTime, now.Add(-24 * time.Hour), now, now.Add(limits.MaxFuture)} {
		if _, err := limits.EventTime("weighed_at", timestamppb.New(ok), now); err != nil {
			t.Errorf("EventTime(%s) = %v", ok, err)
		}
	}
	_, err := limits.EventTime("weighed_at", timestamppb.New(now.Add(limits.MaxFuture+time.Second)), now)
	wantInvalid(t, err, "weighed_at", "after now")
	_, err = limits.EventTime("weighed_at", &timestamppb.Timestamp{Seconds: now.Unix(), Nanos: -1}, now)
	wantInvalid(t, err, "weighed_at", "not a valid timestamp")
	_, err = limits.EventTime("lines[3].sold_at", timestamppb.New(time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC)), now)
	wantInvalid(t, err, "lines[3].sold_at", "2000-01-01")
}
