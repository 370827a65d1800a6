package domain_test

import (
	"testing"

	brandevents "github.com/furrow/furrow/proto/furrow/brand/events/v1"

	"github.com/furrow/furrow/pkg/failure"

	"github.com/furrow/furrow/services/brand-incubation/domain"
)

func TestEnrolmentStandingOverTime(t *testing.T) {
	t.Parallel()
	var s seq
	brand := registeredBrand(t, &s, "xunwu")
	e := enrolled(t, &s, brand, "F1", "2026-11-01")
	sus, err := e.Suspend("2026-11-10", "pesticide residue found", d("2026-11-10"))
	if err != nil {
		t.Fatal(err)
	}
	s.apply(t, e, domain.Change{Event: sus})
	again, err := e.Enrol(brand, true, "2026-11-20", "cert-2", d("2026-11-20"))
	if err != nil {
		t.Fatal(err)
	}
	s.apply(t, e, domain.Change{Event: again})

	for _, tc := range []struct {
		day   string
		want  domain.Standing
		since string
	}{
		{"2026-10-31", domain.BeforeEnrolment, "2026-11-01"},
		{"2026-11-01", domain.Enrolled, "2026-11-01"},
		{"2026-11-09", domain.Enrolled, "2026-11-01"},
		{"2026-11-10", domain.Suspended, "2026-11-10"},
		{"2026-11-19", domain.Suspended, "2026-11-10"},
		{"2026-11-20", domain.Enrolled, "2026-11-20"},
		{"2027-06-01", domain.Enrolled, "2026-11-20"},
	} {
		got, since := e.StandingOn(d(tc.day))
		if got != tc.want || since.String() != tc.since {
			t.Errorf("StandingOn(%s) = %v since %s, want %v since %s", tc.day, got, since, tc.want, tc.since)
		}
	}
	if got, _ := domain.NewEnrolment("xunwu", "F2").StandingOn(d("2026-11-01")); got != domain.NeverEnrolled {
		t.Errorf("never enrolled: %v", got)
	}
}

func TestEnrolAndSuspendRefuseBadInput(t *testing.T) {
	t.Parallel()
	var s seq
	brand := registeredBrand(t, &s, "xunwu")
	today := d("2026-11-28")
	retired := registeredBrand(t, &s, "old")
	ev, err := retired.ChangeStage(domain.StageRetired, "2026-06-01", "", today)
	if err != nil {
		t.Fatal(err)
	}
	s.apply(t, retired, domain.Change{Event: ev})

	_, err = domain.NewEnrolment("xunwu", "F1").Enrol(brand, false, "", "", today)
	wantFailure(t, err, failure.KindNotFound, "farmer_id")
	_, err = domain.NewEnrolment("nope", "F1").Enrol(domain.NewBrand("nope"), true, "", "", today)
	wantFailure(t, err, failure.KindNotFound, "brand_id")
	_, err = domain.NewEnrolment("old", "F1").Enrol(retired, true, "", "", today)
	wantFailure(t, err, failure.KindFailedPrecondition, "")
	_, err = domain.NewEnrolment("xunwu", "F1").Enrol(brand, true, "2026-02-30", "", today)
	wantFailure(t, err, failure.KindInvalid, "enrolled_from")
	_, err = domain.NewEnrolment("xunwu", "F 1").Enrol(brand, true, "", "", today)
	wantFailure(t, err, failure.KindInvalid, "farmer_id")

	e := domain.NewEnrolment("xunwu", "F1")
	_, err = e.Suspend("", "reason", today)
	wantFailure(t, err, failure.KindNotFound, "farmer_id")
	got, err := e.Enrol(brand, true, "", "cert-1", today)
	if err != nil {
		t.Fatal(err)
	}
	if got.GetEnrolledFrom() != "2026-11-28" {
		t.Fatalf("enrolled_from defaults to today: %v", got)
	}
	s.apply(t, e, domain.Change{Event: got})
	_, err = e.Enrol(brand, true, "", "", today)
	wantFailure(t, err, failure.KindAlreadyExists, "farmer_id")
	_, err = e.Suspend("", "", today)
	wantFailure(t, err, failure.KindInvalid, "reason")
	_, err = e.Suspend("2026-11-27", "r", today)
	wantFailure(t, err, failure.KindInvalid, "suspended_from")
	sus, err := e.Suspend("", "r", today)
	if err != nil {
		t.Fatal(err)
	}
	s.apply(t, e, domain.Change{Event: sus})
	_, err = e.Suspend("", "r", today)
	wantFailure(t, err, failure.KindFailedPrecondition, "")
	_, err = e.Enrol(brand, true, "2026-11-01", "", today)
	wantFailure(t, err, failure.KindInvalid, "enrolled_from")
}

func TestBrandStagesMoveForward(t *testing.T) {
	t.Parallel()
	var s seq
	today := d("2026-11-28")
	b := domain.NewBrand("xunwu")
	_, err := b.ChangeStage(domain.StageLaunched, "", "", today)
	wantFailure(t, err, failure.KindNotFound, "brand_id")
	reg, err := b.Register(&brandevents.BrandRegistered{BrandId: "xunwu", Kind: domain.KindRegionalProduct, Name: "n", County: "c"}, today)
	if err != nil {
		t.Fatal(err)
	}
	if reg.GetRegisteredOn() != "2026-11-28" {
		t.Fatalf("registered_on defaults to today: %v", reg)
	}
	s.apply(t, b, domain.Change{Event: reg})
	_, err = b.Register(reg, today)
	wantFailure(t, err, failure.KindAlreadyExists, "brand_id")

	_, err = b.ChangeStage(domain.StageIncubating, "", "", today)
	wantFailure(t, err, failure.KindInvalid, "stage")
	_, err = b.ChangeStage(domain.StageLaunched, "2026-11-27", "", today)
	wantFailure(t, err, failure.KindInvalid, "effective_on")
	launch, err := b.ChangeStage(domain.StageLaunched, "2026-12-01", "launched at Hema", today)
	if err != nil {
		t.Fatal(err)
	}
	s.apply(t, b, domain.Change{Event: launch})
	if st := b.Stage(); st.Stage != domain.StageLaunched || st.From != d("2026-12-01") {
		t.Fatalf("stage = %+v", st)
	}
	_, err = b.ChangeStage(domain.StageLaunched, "2026-12-02", "", today)
	wantFailure(t, err, failure.KindFailedPrecondition, "")
	retire, err := b.ChangeStage(domain.StageRetired, "2030-01-01", "", today)
	if err != nil {
		t.Fatal(err)
	}
	s.apply(t, b, domain.Change{Event: retire})
	if on, ok := b.RetiredOn(); !ok || on != d("2030-01-01") || len(b.Stages()) != 3 {
		t.Fatalf("retired on %s, %v; stages %v", on, ok, b.Stages())
	}

	for _, bad := range []*brandevents.BrandRegistered{
		{BrandId: "b", Kind: 9, Name: "n", County: "c"},
		{BrandId: "b", Kind: 1, County: "c"},
		{BrandId: "b", Kind: 1, Name: "n"},
		{BrandId: "b", Kind: 1, Name: "n", County: "c", RegisteredOn: "yesterday"},
	} {
		if _, err := domain.NewBrand("b").Register(bad, today); failure.KindOf(err) != failure.KindInvalid {
			t.Errorf("Register(%v) = %v, want Invalid", bad, err)
		}
	}
}
