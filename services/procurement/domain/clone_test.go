package domain_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	procurementevents "github.com/furrow/furrow/proto/furrow/procurement/events/v1"

	"github.com/furrow/furrow/services/procurement/domain"
)

// aggCmp compares aggregates field by field, unexported ones included,
// and the event messages they keep by content.
var aggCmp = cmp.Options{
	cmp.Exporter(func(reflect.Type) bool { return true }), protocmp.Transform(),
	cmp.Transformer("deliveries", domain.PlainDeliveries),
}

// logged is an event at its stream sequence.
type logged struct {
	seq uint64
	ev  proto.Message
}

// life decides a programme's and an order's events and logs each
// aggregate's own, as its stream subjects would hold them.
type life struct {
	t               *testing.T
	s               seq
	prog            *domain.Program
	order           *domain.Order
	progLog, ordLog []logged
}

func (l *life) fold(changes ...domain.Change) {
	l.t.Helper()
	for _, c := range changes {
		n := l.s.next()
		switch {
		case strings.HasPrefix(c.Subject, "procurement.program."+l.prog.ID()+"."):
			l.prog.Apply(n, c.Event)
			l.progLog = append(l.progLog, logged{n, c.Event})
		case strings.HasPrefix(c.Subject, "procurement.order."+l.order.ID()+"."):
			l.order.Apply(n, c.Event)
			l.ordLog = append(l.ordLog, logged{n, c.Event})
		}
	}
}

// must fails t on err and returns v: must(t)(decision()).
func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// cloneLife returns the programme's and the order's events in two
// halves. The second changes every part of both aggregates: a delivery
// already corrected is corrected again (its history grows), another is
// recorded, a second order reserves budget, the order is cancelled and
// releases its rest, and the programme closes.
func cloneLife(t *testing.T) (progFirst, progSecond, ordFirst, ordSecond []logged) {
	t.Helper()
	l := &life{t: t, prog: domain.NewProgram("baba-2025"), order: domain.NewOrder(domain.OrderIDFor("po-1"))}
	l.fold(domain.Change{Subject: domain.ProgramSubject("baba-2025", domain.KindProgramOpened), Event: must[*procurementevents.ProgramOpened](t)(l.prog.Open(domain.ProgramTerms{
		Name: "Baba Farm 2025", BudgetFen: 1_000_000, PeriodStart: periodStart, PeriodEnd: periodEnd,
		Products: []string{"qinglong-chestnut"}, Counties: []string{"Qinglong"},
	}))})
	changes, _, err := domain.PlaceOrder(l.prog, l.order, terms(), qinglong)
	l.fold(must[[]domain.Change](t)(changes, err)...)
	deliver := func(id, grade string, grams int64) {
		t.Helper()
		ev := must[*procurementevents.DeliveryRecorded](t)(l.order.RecordDelivery(l.order.ID()+"-"+id, domain.WeighIn{Grade: grade, NetGrams: grams, WeighedAt: inWindow}))
		l.fold(domain.Change{Subject: domain.OrderSubject(l.order.ID(), domain.KindDeliveryRecorded), Event: ev})
	}
	correct := func(id, grade string, grams int64) {
		t.Helper()
		ev := must[*procurementevents.DeliveryCorrected](t)(l.order.CorrectDelivery(l.order.ID()+"-"+id, domain.Correction{NetGrams: grams, Grade: grade, Reason: "reweighed"}))
		l.fold(domain.Change{Subject: domain.OrderSubject(l.order.ID(), domain.KindDeliveryCorrected), Event: ev})
	}
	deliver("D1", "A", 20_000)
	deliver("D2", "B", 10_000)
	// Three corrections: D1's history then has spare capacity, which
	// copies must not append into.
	correct("D1", "A", 19_000)
	correct("D1", "A", 18_000)
	correct("D1", "B", 18_000)
	progFirst, ordFirst = l.progLog, l.ordLog
	l.progLog, l.ordLog = nil, nil

	correct("D1", domain.GradeRejected, 19_000)
	deliver("D3", "A", 5_000)
	other := domain.NewOrder(domain.OrderIDFor("po-2"))
	changes, _, err = domain.PlaceOrder(l.prog, other, terms(), qinglong)
	l.fold(must[[]domain.Change](t)(changes, err)...)
	changes, _, err = l.order.Cancel("season over")
	l.fold(must[[]domain.Change](t)(changes, err)...)
	l.fold(domain.Change{Subject: domain.ProgramSubject("baba-2025", domain.KindProgramClosed), Event: must[*procurementevents.ProgramClosed](t)(l.prog.Close("done"))})
	return progFirst, l.progLog, ordFirst, l.ordLog
}

func replayInto[A interface{ Apply(uint64, proto.Message) }](agg A, parts ...[]logged) A {
	for _, part := range parts {
		for _, r := range part {
			agg.Apply(r.seq, r.ev)
		}
	}
	return agg
}

// testCloneIsDeep checks that a clone equals its original, and that applying
// events to either leaves the other exactly as a replay of its own events.
func testCloneIsDeep[A interface {
	Apply(uint64, proto.Message)
	Clone() A
}](t *testing.T, fresh func() A, first, second []logged) {
	for _, mutate := range []string{"clone", "original"} {
		t.Run("apply to the "+mutate, func(t *testing.T) {
			orig := replayInto(fresh(), first)
			clone := orig.Clone()
			if diff := cmp.Diff(orig, clone, aggCmp); diff != "" {
				t.Fatalf("clone differs from its original (-orig +clone):\n%s", diff)
			}
			changed, untouched := clone, orig
			if mutate == "original" {
				changed, untouched = orig, clone
			}
			replayInto(changed, second)
			if diff := cmp.Diff(replayInto(fresh(), first), untouched, aggCmp); diff != "" {
				t.Errorf("applying to the %s changed the other (-want +got):\n%s", mutate, diff)
			}
			if diff := cmp.Diff(replayInto(fresh(), first, second), changed, aggCmp); diff != "" {
				t.Errorf("the %s after applying (-want +got):\n%s", mutate, diff)
			}
		})
	}
}

func TestProgramCloneIsDeep(t *testing.T) {
	t.Parallel()
	first, second, _, _ := cloneLife(t)
	testCloneIsDeep(t, func() *domain.Program { return domain.NewProgram("baba-2025") }, first, second)
}

func TestOrderCloneIsDeep(t *testing.T) {
	t.Parallel()
	_, _, first, second := cloneLife(t)
	if len(first) != 6 || len(second) != 3 {
		t.Fatalf("order events %d then %d, want 6 then 3", len(first), len(second))
	}
	testCloneIsDeep(t, func() *domain.Order { return domain.NewOrder(domain.OrderIDFor("po-1")) }, first, second)
}

// TestOrderClonesApplyConcurrently: clones of one order taken and changed by
// several goroutines at once share nothing they write (run with -race).
func TestOrderClonesApplyConcurrently(t *testing.T) {
	t.Parallel()
	_, _, first, second := cloneLife(t)
	fresh := func() *domain.Order { return domain.NewOrder(domain.OrderIDFor("po-1")) }
	orig := replayInto(fresh(), first)
	done := make(chan *domain.Order)
	for range 4 {
		go func() { done <- replayInto(orig.Clone(), second) }()
	}
	want := replayInto(fresh(), first, second)
	for range 4 {
		if diff := cmp.Diff(want, <-done, aggCmp); diff != "" {
			t.Fatalf("clone after applying (-want +got):\n%s", diff)
		}
	}
	if diff := cmp.Diff(replayInto(fresh(), first), orig, aggCmp); diff != "" {
		t.Fatalf("original after its clones changed (-want +got):\n%s", diff)
	}
}
