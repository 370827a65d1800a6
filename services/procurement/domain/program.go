package domain

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	procurementevents "github.com/furrow/furrow/proto/furrow/procurement/events/v1"

	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/ident"
	"github.com/furrow/furrow/pkg/limits"
	"github.com/furrow/furrow/pkg/money"
)

// Limits on programme terms: generous for real programmes, small enough
// that one programme's event stays far below a message's size limit. The
// lengths are the API's (package limits).
const (
	maxNameLen   = limits.MaxNameLen
	maxProducts  = 100
	maxCounties  = 500
	maxCountyLen = limits.MaxCodeLen
)

// Program is a direct-purchase programme and its budget, rebuilt from its
// events. It is the consistency boundary of the budget: every reservation is
// appended to it with an expectation of its version, so two orders can
// never both spend the same fen.
type Program struct {
	id     string
	opened *procurementevents.ProgramOpened
	closed bool
	// reserved is Σ reservations − Σ releases, in fen; never above the budget.
	reserved int64
	orders   int64
	version  uint64
	// overflow, when set, says why reserved stopped following the events:
	// a reservation took it beyond int64 (the domain never writes one, a
	// stream written before it checked may hold one). The programme then
	// takes no orders rather than decide on a wrapped budget.
	overflow error
}

// NewProgram returns the empty aggregate for id, ready to replay events.
func NewProgram(id string) *Program { return &Program{id: id} }

// Apply folds one recorded event into the aggregate.
func (p *Program) Apply(seq uint64, ev proto.Message) {
	p.version = seq
	switch e := ev.(type) {
	case *procurementevents.ProgramOpened:
		p.opened = e
	case *procurementevents.ProgramClosed:
		p.closed = true
	case *procurementevents.BudgetReserved:
		p.reserve(seq, e.GetAmountFen())
		p.orders++
	case *procurementevents.BudgetReleased:
		p.reserve(seq, -e.GetAmountFen())
	}
}

// reserve moves reserved by fen, unless that overflows: then reserved
// stays and the programme remembers why.
func (p *Program) reserve(seq uint64, fen int64) {
	if p.overflow != nil {
		return
	}
	r, err := money.Add(p.reserved, fen)
	if err != nil {
		p.overflow = fmt.Errorf("budget of programme %s at %s:%d: %w", p.id, Stream, seq, err)
		return
	}
	p.reserved = r
}

// Clone returns a copy of the programme: applying events to either never
// changes the other. The terms (the ProgramOpened event) are shared: an
// event is a fact, never modified.
func (p *Program) Clone() *Program {
	c := *p
	return &c
}

// ID returns the programme id.
func (p *Program) ID() string { return p.id }

// Filter is the subject filter covering the programme's events.
func (p *Program) Filter() string { return ProgramAggregate(p.id) }

// Version is the stream sequence of the programme's last event (0: none).
func (p *Program) Version() uint64 { return p.version }

// Opened reports whether the programme exists.
func (p *Program) Opened() bool { return p.opened != nil }

// Closed reports whether the programme was closed.
func (p *Program) Closed() bool { return p.closed }

// Terms returns the programme's terms as opened (nil before).
func (p *Program) Terms() *procurementevents.ProgramOpened { return p.opened }

// ReservedFen is what the orders hold reserved from the budget.
func (p *Program) ReservedFen() int64 { return p.reserved }

// AvailableFen is the budget not reserved.
func (p *Program) AvailableFen() int64 { return p.opened.GetBudgetFen() - p.reserved }

// Orders counts the orders placed under the programme.
func (p *Program) Orders() int64 { return p.orders }

// ProgramTerms are what OpenProgram is given.
type ProgramTerms struct {
	Name        string
	BudgetFen   int64
	PeriodStart time.Time
	PeriodEnd   time.Time
	Products    []string
	Counties    []string
}

// Open validates a programme's terms and returns its ProgramOpened.
func (p *Program) Open(t ProgramTerms) (*procurementevents.ProgramOpened, error) {
	if err := ident.Check("program_id", p.id); err != nil {
		return nil, err
	}
	name := strings.TrimSpace(t.Name)
	switch {
	case name == "":
		return nil, failure.Invalid("name", "is required")
	case utf8.RuneCountInString(name) > maxNameLen:
		return nil, failure.Invalid("name", "is longer than %d characters", maxNameLen)
	case t.BudgetFen <= 0:
		return nil, failure.Invalid("budget_fen", "must be positive, got %d", t.BudgetFen)
	}
	if err := checkPeriod("period_start", "period_end", t.PeriodStart, t.PeriodEnd); err != nil {
		return nil, err
	}
	products, err := checkList("products", t.Products, maxProducts, func(field, v string) error { return ident.Check(field, v) })
	if err != nil {
		return nil, err
	}
	counties, err := checkList("counties", t.Counties, maxCounties, checkCounty)
	if err != nil {
		return nil, err
	}
	if p.opened != nil {
		return nil, failure.AlreadyExists("program_id", "programme %s is already open", p.id)
	}
	return &procurementevents.ProgramOpened{
		ProgramId: p.id, Name: name, BudgetFen: t.BudgetFen,
		PeriodStart: timestamppb.New(t.PeriodStart), PeriodEnd: timestamppb.New(t.PeriodEnd),
		Products: products, Counties: counties,
	}, nil
}

// Close returns the ProgramClosed that stops the programme taking orders.
func (p *Program) Close(reason string) (*procurementevents.ProgramClosed, error) {
	if p.opened == nil {
		return nil, failure.NotFound("program_id", "programme %s does not exist", p.id)
	}
	if p.closed {
		return nil, failure.FailedPrecondition("programme %s is already closed", p.id)
	}
	return &procurementevents.ProgramClosed{ProgramId: p.id, Reason: strings.TrimSpace(reason)}, nil
}

// buys reports whether the programme buys product.
func (p *Program) buys(product string) bool {
	_, ok := slices.BinarySearch(p.opened.GetProducts(), product)
	return ok
}

// serves reports whether the programme buys from county.
func (p *Program) serves(county string) bool {
	_, ok := slices.BinarySearch(p.opened.GetCounties(), county)
	return ok
}

func checkPeriod(startField, endField string, start, end time.Time) error {
	switch {
	case start.IsZero():
		return failure.Invalid(startField, "is required")
	case end.IsZero():
		return failure.Invalid(endField, "is required")
	case !start.Before(end):
		return failure.Invalid(endField, "%s is not after %s %s", end.UTC().Format(time.RFC3339), startField, start.UTC().Format(time.RFC3339))
	}
	return nil
}

func checkCounty(field, v string) error {
	switch {
	case strings.TrimSpace(v) == "":
		return failure.Invalid(field, "is required")
	case v != strings.TrimSpace(v):
		return failure.Invalid(field, "%q has leading or trailing space", v)
	case utf8.RuneCountInString(v) > maxCountyLen:
		return failure.Invalid(field, "is longer than %d characters", maxCountyLen)
	}
	return nil
}

// checkList validates a non-empty list of distinct values and returns it
// sorted (programmes look values up by binary search).
func checkList(field string, vs []string, limit int, check func(field, v string) error) ([]string, error) {
	if len(vs) == 0 {
		return nil, failure.Invalid(field, "needs at least one entry")
	}
	if len(vs) > limit {
		return nil, failure.Invalid(field, "has %d entries; at most %d", len(vs), limit)
	}
	seen := make(map[string]bool, len(vs))
	for i, v := range vs {
		f := fmt.Sprintf("%s[%d]", field, i)
		if err := check(f, v); err != nil {
			return nil, err
		}
		if seen[v] {
			return nil, failure.Invalid(f, "%q is listed twice", v)
		}
		seen[v] = true
	}
	out := slices.Clone(vs)
	slices.Sort(out)
	return out, nil
}
