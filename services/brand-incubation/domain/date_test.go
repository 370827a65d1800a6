package domain_test

import (
	"testing"
	"time"

	"github.com/furrow/furrow/pkg/failure"

	"github.com/furrow/furrow/services/brand-incubation/domain"
)

func TestParseDate(t *testing.T) {
	t.Parallel()
	got, err := domain.ParseDate("effective_from", "2026-11-28")
	if err != nil || got.String() != "2026-11-28" {
		t.Fatalf("ParseDate = %v, %v", got, err)
	}
	for _, bad := range []string{"", "2026-11-31", "2026-13-01", "28.11.2026", "2026-1-5", "1999-12-31", "2100-01-01", "2026-11-28T00:00"} {
		_, err := domain.ParseDate("effective_from", bad)
		wantFailure(t, err, failure.KindInvalid, "effective_from")
	}
}

// TestDateOfUsesChinaStandardTime pins the day boundary: a sale at 23:59
// in Shanghai is that day, one at 00:00 is the next, whatever UTC says.
func TestDateOfUsesChinaStandardTime(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		at   time.Time
		want string
	}{
		{time.Date(2026, 11, 30, 15, 59, 59, 0, time.UTC), "2026-11-30"},
		{time.Date(2026, 11, 30, 16, 0, 0, 0, time.UTC), "2026-12-01"},
		{cst("2026-12-01", "00:00"), "2026-12-01"},
		{time.Date(2026, 12, 31, 16, 30, 0, 0, time.UTC), "2027-01-01"},
	} {
		if got := domain.DateOf(tc.at).String(); got != tc.want {
			t.Errorf("DateOf(%s) = %s, want %s", tc.at, got, tc.want)
		}
	}
	if got := d("2026-12-01").Start(); !got.Equal(time.Date(2026, 11, 30, 16, 0, 0, 0, time.UTC)) {
		t.Errorf("Start = %s", got)
	}
}

func TestMonths(t *testing.T) {
	t.Parallel()
	m, err := domain.ParseMonth("month_from", "2026-02")
	if err != nil {
		t.Fatal(err)
	}
	if m.String() != "2026-02" || m.First().String() != "2026-02-01" || m.Last().String() != "2026-02-28" {
		t.Fatalf("month %s: first %s last %s", m, m.First(), m.Last())
	}
	if dec := d("2026-12-31").Month(); dec.String() != "2026-12" || (dec+1).String() != "2027-01" {
		t.Fatalf("December: %s, next %s", dec, dec+1)
	}
	if got := domain.MonthOf(time.Date(2026, 11, 30, 16, 0, 0, 0, time.UTC)).String(); got != "2026-12" {
		t.Fatalf("MonthOf(Dec 1 00:00 CST) = %s", got)
	}
	_, err = domain.ParseMonth("month_from", "2026-13")
	wantFailure(t, err, failure.KindInvalid, "month_from")
}
