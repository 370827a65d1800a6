package domain_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	brandevents "github.com/furrow/furrow/proto/furrow/brand/events/v1"

	"github.com/furrow/furrow/pkg/failure"

	"github.com/furrow/furrow/services/brand-incubation/domain"
)

func TestSetRuleRefusesOverlapsAndBadInput(t *testing.T) {
	t.Parallel()
	var s seq
	brand := registeredBrand(t, &s, "xunwu")
	// November, and from February on (open-ended).
	rs := ruleSet(t, &s, brand, "hema",
		domain.NewRule{RuleID: "nov", FenPerKg: 100, EffectiveFrom: "2026-11-01", EffectiveTo: "2026-11-30"},
		domain.NewRule{RuleID: "spring", FenPerKg: 80, EffectiveFrom: "2027-02-01"},
	)
	retired := registeredBrand(t, &s, "old")
	ev, err := retired.ChangeStage(domain.StageRetired, "2026-06-01", "", d("2026-06-01"))
	if err != nil {
		t.Fatal(err)
	}
	s.apply(t, retired, domain.Change{Event: ev})

	for _, tc := range []struct {
		name     string
		rule     domain.NewRule
		brand    *domain.Brand
		noChan   bool
		kind     failure.Kind
		field    string
		accepted bool
	}{
		{name: "October, adjacent", rule: domain.NewRule{RuleID: "oct", FenPerKg: 90, EffectiveFrom: "2026-10-01", EffectiveTo: "2026-10-31"}, accepted: true},
		{name: "December to January, between", rule: domain.NewRule{RuleID: "winter", FenPerKg: 90, EffectiveFrom: "2026-12-01", EffectiveTo: "2027-01-31"}, accepted: true},
		{name: "zero rate", rule: domain.NewRule{RuleID: "zero", EffectiveFrom: "2026-12-01", EffectiveTo: "2026-12-01"}, accepted: true},
		{name: "overlaps the start", rule: domain.NewRule{RuleID: "x", FenPerKg: 90, EffectiveFrom: "2026-10-15", EffectiveTo: "2026-11-01"}, kind: failure.KindFailedPrecondition, field: "effective_from"},
		{name: "overlaps the end", rule: domain.NewRule{RuleID: "x", FenPerKg: 90, EffectiveFrom: "2026-11-30", EffectiveTo: "2026-12-05"}, kind: failure.KindFailedPrecondition, field: "effective_from"},
		{name: "inside", rule: domain.NewRule{RuleID: "x", FenPerKg: 90, EffectiveFrom: "2026-11-10", EffectiveTo: "2026-11-11"}, kind: failure.KindFailedPrecondition, field: "effective_from"},
		{name: "around", rule: domain.NewRule{RuleID: "x", FenPerKg: 90, EffectiveFrom: "2026-10-01", EffectiveTo: "2026-12-31"}, kind: failure.KindFailedPrecondition, field: "effective_from"},
		{name: "open-ended into a later rule", rule: domain.NewRule{RuleID: "x", FenPerKg: 90, EffectiveFrom: "2026-12-01"}, kind: failure.KindFailedPrecondition, field: "effective_from"},
		{name: "inside an open-ended rule", rule: domain.NewRule{RuleID: "x", FenPerKg: 90, EffectiveFrom: "2030-01-01", EffectiveTo: "2030-01-31"}, kind: failure.KindFailedPrecondition, field: "effective_from"},
		{name: "negative rate", rule: domain.NewRule{RuleID: "x", FenPerKg: -1, EffectiveFrom: "2026-12-01", EffectiveTo: "2026-12-02"}, kind: failure.KindInvalid, field: "fen_per_kg"},
		{name: "absurd rate", rule: domain.NewRule{RuleID: "x", FenPerKg: domain.MaxFenPerKg + 1, EffectiveFrom: "2026-12-01", EffectiveTo: "2026-12-02"}, kind: failure.KindInvalid, field: "fen_per_kg"},
		{name: "missing first day", rule: domain.NewRule{RuleID: "x", FenPerKg: 1}, kind: failure.KindInvalid, field: "effective_from"},
		{name: "bad last day", rule: domain.NewRule{RuleID: "x", FenPerKg: 1, EffectiveFrom: "2026-12-01", EffectiveTo: "2026-12-32"}, kind: failure.KindInvalid, field: "effective_to"},
		{name: "ends before it starts", rule: domain.NewRule{RuleID: "x", FenPerKg: 1, EffectiveFrom: "2026-12-02", EffectiveTo: "2026-12-01"}, kind: failure.KindInvalid, field: "effective_to"},
		{name: "bad rule id", rule: domain.NewRule{RuleID: "a.b", FenPerKg: 1, EffectiveFrom: "2026-12-01"}, kind: failure.KindInvalid, field: "rule_id"},
		{name: "rule id taken", rule: domain.NewRule{RuleID: "nov", FenPerKg: 1, EffectiveFrom: "2026-12-01", EffectiveTo: "2026-12-02"}, kind: failure.KindAlreadyExists, field: "rule_id"},
		{name: "unknown brand", brand: domain.NewBrand("xunwu"), rule: domain.NewRule{RuleID: "x", FenPerKg: 1, EffectiveFrom: "2026-12-01", EffectiveTo: "2026-12-02"}, kind: failure.KindNotFound, field: "brand_id"},
		{name: "unknown channel", noChan: true, rule: domain.NewRule{RuleID: "x", FenPerKg: 1, EffectiveFrom: "2026-12-01", EffectiveTo: "2026-12-02"}, kind: failure.KindNotFound, field: "channel"},
		{name: "retired brand", brand: retired, rule: domain.NewRule{RuleID: "x", FenPerKg: 1, EffectiveFrom: "2026-12-01", EffectiveTo: "2026-12-02"}, kind: failure.KindFailedPrecondition},
	} {
		b := brand
		if tc.brand != nil {
			b = tc.brand
		}
		target := rs
		if b != brand {
			target = domain.NewRuleSet(b.ID(), "hema")
		}
		ev, err := target.SetRule(b, !tc.noChan, tc.rule)
		if tc.accepted {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			} else if ev.GetRuleVersion() != 1 || ev.GetFenPerKg() != tc.rule.FenPerKg {
				t.Errorf("%s: event %v", tc.name, ev)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: accepted, want %v on %q", tc.name, tc.kind, tc.field)
			continue
		}
		wantFailure(t, err, tc.kind, tc.field)
	}
}

func TestRateOnFollowsRulesAndRevisions(t *testing.T) {
	t.Parallel()
	var s seq
	brand := registeredBrand(t, &s, "xunwu")
	rs := ruleSet(t, &s, brand, "hema",
		domain.NewRule{RuleID: "season", FenPerKg: 100, EffectiveFrom: "2026-11-01", EffectiveTo: "2027-01-31"})
	revise(t, &s, rs, domain.Revision{RuleID: "season", FenPerKg: 120, RevisedFrom: "2026-11-15", Reason: "hema raised shelf price"})
	revise(t, &s, rs, domain.Revision{RuleID: "season", FenPerKg: 150, RevisedFrom: "2027-01-01", Reason: "spring festival"})

	for _, tc := range []struct {
		day  string
		want domain.Rate
		ok   bool
	}{
		{day: "2026-10-31"},
		{day: "2026-11-01", want: domain.Rate{RuleID: "season", Version: 1, FenPerKg: 100}, ok: true},
		{day: "2026-11-14", want: domain.Rate{RuleID: "season", Version: 1, FenPerKg: 100}, ok: true},
		{day: "2026-11-15", want: domain.Rate{RuleID: "season", Version: 2, FenPerKg: 120, Reason: "hema raised shelf price"}, ok: true},
		{day: "2027-01-01", want: domain.Rate{RuleID: "season", Version: 3, FenPerKg: 150, Reason: "spring festival"}, ok: true},
		{day: "2027-01-31", want: domain.Rate{RuleID: "season", Version: 3, FenPerKg: 150, Reason: "spring festival"}, ok: true},
		{day: "2027-02-01"},
	} {
		got, ok := rs.RateOn(d(tc.day))
		if ok != tc.ok || got != tc.want {
			t.Errorf("RateOn(%s) = %+v, %v; want %+v, %v", tc.day, got, ok, tc.want, tc.ok)
		}
	}

	// A revision from an earlier day supersedes the later segments.
	revise(t, &s, rs, domain.Revision{RuleID: "season", FenPerKg: 110, RevisedFrom: "2026-12-01", Reason: "correction"})
	var got []domain.Segment
	got = append(got, rs.Rule("season").Schedule...)
	want := []domain.Segment{
		{From: d("2026-11-01"), FenPerKg: 100, Version: 1},
		{From: d("2026-11-15"), FenPerKg: 120, Version: 2, Reason: "hema raised shelf price"},
		{From: d("2026-12-01"), FenPerKg: 110, Version: 4, Reason: "correction"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("schedule (-want +got):\n%s", diff)
	}
}

func TestReviseValidatesAndIsANoOpAtTheSameRate(t *testing.T) {
	t.Parallel()
	var s seq
	brand := registeredBrand(t, &s, "xunwu")
	rs := ruleSet(t, &s, brand, "hema",
		domain.NewRule{RuleID: "season", FenPerKg: 100, EffectiveFrom: "2026-11-01", EffectiveTo: "2026-12-31"})

	for _, tc := range []struct {
		name  string
		rv    domain.Revision
		kind  failure.Kind
		field string
	}{
		{"no reason", domain.Revision{RuleID: "season", FenPerKg: 120}, failure.KindInvalid, "reason"},
		{"blank reason", domain.Revision{RuleID: "season", FenPerKg: 120, Reason: "  "}, failure.KindInvalid, "reason"},
		{"negative rate", domain.Revision{RuleID: "season", FenPerKg: -5, Reason: "r"}, failure.KindInvalid, "fen_per_kg"},
		{"unknown rule", domain.Revision{RuleID: "other", FenPerKg: 120, Reason: "r"}, failure.KindNotFound, "rule_id"},
		{"before the rule", domain.Revision{RuleID: "season", FenPerKg: 120, RevisedFrom: "2026-10-31", Reason: "r"}, failure.KindInvalid, "revised_from"},
		{"after the rule", domain.Revision{RuleID: "season", FenPerKg: 120, RevisedFrom: "2027-01-01", Reason: "r"}, failure.KindInvalid, "revised_from"},
	} {
		_, _, err := rs.Revise(tc.rv, false)
		wantFailure(t, err, tc.kind, tc.field)
	}
	// A preview needs no reason.
	if _, changed, err := rs.Revise(domain.Revision{RuleID: "season", FenPerKg: 120}, true); err != nil || !changed {
		t.Fatalf("preview revision: changed %v, %v", changed, err)
	}

	ev := revise(t, &s, rs, domain.Revision{RuleID: "season", FenPerKg: 120, RevisedFrom: "2026-11-15", Reason: "r"})
	want := &brandevents.PremiumRuleRevised{
		BrandId: "xunwu", Channel: "hema", RuleId: "season", RuleVersion: 2, FenPerKg: 120,
		RevisedFrom: "2026-11-15", Reason: "r", PreviousFenPerKg: 100,
	}
	if diff := cmp.Diff(want, ev, cmpProto); diff != "" {
		t.Fatalf("revision (-want +got):\n%s", diff)
	}
	for _, rv := range []domain.Revision{
		{RuleID: "season", FenPerKg: 120, RevisedFrom: "2026-11-15", Reason: "again"},
		{RuleID: "season", FenPerKg: 120, RevisedFrom: "2026-12-01", Reason: "inside the revised part"},
		{RuleID: "season", FenPerKg: 100, RevisedFrom: "2026-11-01", Reason: "x"}, // differs from 11-15 on
	} {
		_, changed, err := rs.Revise(rv, false)
		if err != nil {
			t.Fatal(err)
		}
		if wantChanged := rv.FenPerKg != 120; changed != wantChanged {
			t.Errorf("Revise(%+v) changed = %v, want %v", rv, changed, wantChanged)
		}
	}
	// The schedule is untouched by the no-ops and by With.
	before := rs.Rule("season").Schedule
	ev2, _, _ := rs.Revise(domain.Revision{RuleID: "season", FenPerKg: 90, Reason: "x"}, false)
	after := rs.With(ev2)
	if len(rs.Rule("season").Schedule) != len(before) || len(after.Rule("season").Schedule) != 1 {
		t.Fatalf("With changed the original or did not apply: %v / %v", rs.Rule("season").Schedule, after.Rule("season").Schedule)
	}
}
