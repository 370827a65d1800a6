package domain_test

import (
	"math"
	"testing"

	"github.com/furrow/furrow/pkg/failure"

	"github.com/furrow/furrow/services/brand-incubation/domain"
)

func TestPremium(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		grams, rate, want int64
	}{
		{1_234_567, 100, 123_457}, // the navel-orange story: 123,456.7 fen
		{1_234_567, 120, 148_148}, // 148,148.04
		{1_500, 1, 2},             // 1.5 → 2 (half to even)
		{2_500, 1, 2},             // 2.5 → 2
		{3_500, 1, 4},             // 3.5 → 4
		{999, 0, 0},
	} {
		got, err := domain.Premium("grams", tc.grams, tc.rate)
		if err != nil || got != tc.want {
			t.Errorf("Premium(%d g, %d fen/kg) = %d, %v; want %d", tc.grams, tc.rate, got, err, tc.want)
		}
	}
	_, err := domain.Premium("lines[0].grams", math.MaxInt64, math.MaxInt64)
	wantFailure(t, err, failure.KindInvalid, "lines[0].grams")
}

func TestEffectiveRate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		premium, grams, want int64
	}{
		{123_457, 1_234_567, 100}, // 100.0003
		{0, 1000, 0},
		{5, 0, 0},
		{1, 2000, 0}, // 0.5 → 0
		{3, 2000, 2}, // 1.5 → 2
		{150, 1000, 150},
		{math.MaxInt64, 1, math.MaxInt64}, // saturates instead of wrapping
	} {
		if got := domain.EffectiveRate(tc.premium, tc.grams); got != tc.want {
			t.Errorf("EffectiveRate(%d fen, %d g) = %d, want %d", tc.premium, tc.grams, got, tc.want)
		}
	}
}
