package app

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/furrow/furrow/pkg/failure"

	"github.com/furrow/furrow/services/brand-incubation/domain"
)

func TestDashboardCountsFarmersEnrolledInEachMonth(t *testing.T) {
	t.Parallel()
	d := domain.MustDate
	m := func(s string) domain.Month { return d(s + "-01").Month() }
	periods := []EnrolmentPeriod{
		{FarmerID: "F1", From: d("2026-09-15"), Open: true},                          // Sep on
		{FarmerID: "F2", From: d("2026-10-01"), Until: d("2026-11-01")},              // October only
		{FarmerID: "F3", From: d("2026-10-10"), Until: d("2026-10-10")},              // suspended the day it started: never
		{FarmerID: "F2", From: d("2026-11-20"), Open: true},                          // F2 again
		{FarmerID: "F4", From: d("2026-12-05"), Open: true},                          // future
		{FarmerID: "F5", From: d("2026-08-01"), Until: d("2026-09-01")},              // August
		{FarmerID: "F6", From: d("2026-11-30"), Until: d("2026-12-01"), Open: false}, // the last day of November
	}
	months := []BrandMonthRow{{Month: "2026-10", Sales: 2, GramsSold: 3000, GramsEarning: 2000, PremiumFen: 200}}
	got, err := dashboard("xunwu", months, periods, 0, 0, d("2026-11-28"))
	if err != nil {
		t.Fatal(err)
	}
	want := Dashboard{BrandID: "xunwu", EnrolledNow: 2, Months: []DashboardMonth{
		{BrandMonthRow: BrandMonthRow{Month: "2026-08"}, Enrolled: 1},
		{BrandMonthRow: BrandMonthRow{Month: "2026-09"}, Enrolled: 1},
		{BrandMonthRow: months[0], Enrolled: 2},
		{BrandMonthRow: BrandMonthRow{Month: "2026-11"}, Enrolled: 3},
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("dashboard (-want +got):\n%s", diff)
	}

	got, err = dashboard("xunwu", months, periods, m("2026-12"), m("2026-12"), d("2026-11-28"))
	if err != nil || len(got.Months) != 1 || got.Months[0].Enrolled != 3 {
		t.Fatalf("December: %+v, %v", got, err)
	}
	_, err = dashboard("xunwu", nil, nil, m("2020-01"), m("2030-12"), d("2026-11-28"))
	if failure.KindOf(err) != failure.KindInvalid {
		t.Fatalf("11 years: %v, want Invalid", err)
	}
	empty, err := dashboard("new", nil, nil, 0, 0, d("2026-11-28"))
	if err != nil || len(empty.Months) != 1 || empty.Months[0].Month != "2026-11" {
		t.Fatalf("a brand without data shows the current month: %+v, %v", empty, err)
	}
}
