package domain_test

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/testing/protocmp"

	brandevents "github.com/furrow/furrow/proto/furrow/brand/events/v1"

	"github.com/furrow/furrow/pkg/failure"

	"github.com/furrow/furrow/services/brand-incubation/domain"
)

// seq hands out stream sequences to events applied in tests.
type seq struct{ n uint64 }

func (s *seq) apply(t testing.TB, agg domain.Aggregate, changes ...domain.Change) {
	t.Helper()
	for _, c := range changes {
		s.n++
		agg.Apply(s.n, c.Event)
	}
}

// cst is a time on a CST wall clock.
func cst(date, clock string) time.Time {
	t, err := time.ParseInLocation("2006-01-02 15:04", date+" "+clock, domain.CST)
	if err != nil {
		panic(err)
	}
	return t
}

func d(s string) domain.Date { return domain.MustDate(s) }

// wantFailure fails unless err is a failure of kind naming field.
func wantFailure(t testing.TB, err error, kind failure.Kind, field string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v on %s", kind, field)
	}
	var fe *failure.Error
	if !errors.As(err, &fe) || fe.Kind != kind || fe.Field != field {
		t.Fatalf("got %v, want %v on %q", err, kind, field)
	}
}

// registeredBrand returns brand id, registered on 2026-01-01.
func registeredBrand(t testing.TB, s *seq, id string) *domain.Brand {
	t.Helper()
	b := domain.NewBrand(id)
	ev, err := b.Register(&brandevents.BrandRegistered{
		BrandId: id, Kind: domain.KindRegionalProduct, Name: "Xunwu navel orange", County: "Xunwu", ProductCategory: "citrus",
		RegisteredOn: "2026-01-01",
	}, d("2026-01-01"))
	if err != nil {
		t.Fatal(err)
	}
	s.apply(t, b, domain.Change{Event: ev})
	return b
}

// ruleSet returns brand's rule set at channel with the given rules set.
func ruleSet(t testing.TB, s *seq, brand *domain.Brand, channel string, rules ...domain.NewRule) *domain.RuleSet {
	t.Helper()
	rs := domain.NewRuleSet(brand.ID(), channel)
	for _, n := range rules {
		ev, err := rs.SetRule(brand, true, n)
		if err != nil {
			t.Fatal(err)
		}
		s.apply(t, rs, domain.Change{Event: ev})
	}
	return rs
}

func revise(t testing.TB, s *seq, rs *domain.RuleSet, rv domain.Revision) *brandevents.PremiumRuleRevised {
	t.Helper()
	ev, changed, err := rs.Revise(rv, false)
	if err != nil || !changed {
		t.Fatalf("Revise(%+v) = changed %v, %v", rv, changed, err)
	}
	s.apply(t, rs, domain.Change{Event: ev})
	return ev
}

// enrolled returns farmer's enrolment in brand from the given day.
func enrolled(t testing.TB, s *seq, brand *domain.Brand, farmer, from string) *domain.Enrolment {
	t.Helper()
	e := domain.NewEnrolment(brand.ID(), farmer)
	ev, err := e.Enrol(brand, true, from, "", d("2026-01-01"))
	if err != nil {
		t.Fatal(err)
	}
	s.apply(t, e, domain.Change{Event: ev})
	return e
}

// cmpProto lets go-cmp compare protobuf messages.
var cmpProto = protocmp.Transform()
