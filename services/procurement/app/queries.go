package app

import (
	"context"
	"errors"
	"time"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/ident"
	"github.com/furrow/furrow/pkg/pagetoken"

	"github.com/furrow/furrow/services/procurement/domain"
)

// ReadModel reads procurement's projections.
type ReadModel interface {
	// ProgramProgress returns a programme's progress, or ErrNotProjected.
	ProgramProgress(ctx context.Context, programID string) (ProgramProgress, error)
	// Orders returns a page of orders matching f, oldest first, placed
	// after page.Cursor, and the cursor of the next page (0: none).
	Orders(ctx context.Context, f OrderFilter, page Page) ([]OrderRow, uint64, error)
	// FarmerDeliveries returns a page of a farmer's deliveries, newest
	// first, recorded before page.Cursor (0: from the newest), and the
	// cursor of the next page (0: none).
	FarmerDeliveries(ctx context.Context, farmerID string, page Page) ([]domain.DeliveryView, uint64, error)
	// CountyTotals returns every county's totals, sorted by county.
	CountyTotals(ctx context.Context) ([]CountyTotals, error)
}

// ErrNotProjected means a read model has no row for something (yet).
var ErrNotProjected = errors.New("not in the read model")

// Progress is what was ordered and delivered for one key (a product, a
// county) or in total.
type Progress struct {
	Key            string
	Orders         int64
	OrderedGrams   int64
	Deliveries     int64
	DeliveredGrams int64
	DeliveredFen   int64
	RejectedGrams  int64
}

// ProgramProgress is a programme's budget and progress.
type ProgramProgress struct {
	ProgramID   string
	Name        string
	Closed      bool
	BudgetFen   int64
	ReservedFen int64
	Total       Progress
	ByProduct   []Progress
	ByCounty    []Progress
}

// OrderRow is an order and its fulfilment, as queries return it.
type OrderRow struct {
	OrderID         string
	ProgramID       string
	FarmerID        string
	County          string
	Product         string
	Prices          []domain.GradePrice
	OrderedGrams    int64
	ToleranceBP     int32
	MaxGrams        int64
	WindowStart     time.Time
	WindowEnd       time.Time
	OriginWarehouse string
	Status          domain.OrderStatus
	ReservedFen     int64
	DeliveredGrams  int64
	DeliveredFen    int64
	RejectedGrams   int64
	Deliveries      int64
	// Version is the stream sequence of the order's last event.
	Version uint64
}

// OrderRowOf is the row of an order aggregate.
func OrderRowOf(o *domain.Order) OrderRow {
	p := o.Placed()
	prices := make([]domain.GradePrice, len(p.GetPrices()))
	for i, gp := range p.GetPrices() {
		prices[i] = domain.GradePrice{Grade: gp.GetGrade(), PriceFenPerKg: gp.GetPriceFenPerKg()}
	}
	return OrderRow{
		OrderID: o.ID(), ProgramID: p.GetProgramId(), FarmerID: p.GetFarmerId(), County: p.GetCounty(),
		Product: p.GetProduct(), Prices: prices, OrderedGrams: p.GetOrderedGrams(), ToleranceBP: p.GetToleranceBp(),
		MaxGrams: p.GetMaxGrams(), WindowStart: p.GetWindowStart().AsTime(), WindowEnd: p.GetWindowEnd().AsTime(),
		OriginWarehouse: p.GetOriginWarehouse(), Status: o.Status(), ReservedFen: o.ReservedFen(),
		DeliveredGrams: o.DeliveredGrams(), DeliveredFen: o.DeliveredFen(), RejectedGrams: o.RejectedGrams(),
		Deliveries: int64(o.Deliveries()), Version: o.Version(),
	}
}

// OrderFilter selects orders; empty fields match everything.
type OrderFilter struct {
	ProgramID string
	FarmerID  string
	County    string
	Status    domain.OrderStatus
}

// CountyTotals is what procurement knows of one county.
type CountyTotals struct {
	County   string
	Farmers  int64
	Progress Progress
}

// Page asks for one page of a list.
type Page struct {
	// Size is how many rows at most; 1 to MaxPageSize.
	Size int
	// Token is the previous page's next token; empty for the first page.
	Token string
	// Cursor is the stream sequence Token carries, decoded by the
	// application once it has checked the token against the request's
	// filters; 0 for the first page.
	Cursor uint64
}

// Page sizes.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
)

// NewPage validates a requested page size (0: the default; above the
// maximum: the maximum) and keeps the token; the query checks the token
// against its list and filters.
func NewPage(size int32, token string) (Page, error) {
	switch {
	case size < 0:
		return Page{}, failure.Invalid("page_size", "must not be negative, got %d", size)
	case size == 0:
		size = DefaultPageSize
	case size > MaxPageSize:
		size = MaxPageSize
	}
	return Page{Size: int(size), Token: token}, nil
}

// ProgramProgress returns a programme's progress once the read models
// reflect minPos, and the position they reflect.
func (p *Procurement) ProgramProgress(ctx context.Context, programID string, minPos *eventstore.Position) (ProgramProgress, eventstore.Position, error) {
	if err := ident.Check("program_id", programID); err != nil {
		return ProgramProgress{}, eventstore.Position{}, err
	}
	asOf, err := p.positions.WaitFor(ctx, minPos)
	if err != nil {
		return ProgramProgress{}, eventstore.Position{}, err
	}
	pp, err := p.views.ProgramProgress(ctx, programID)
	if errors.Is(err, ErrNotProjected) {
		// Without a min_position the projection may lag a programme just
		// opened: ask its events whether it exists at all.
		prog, err := p.Program(ctx, programID)
		if err != nil {
			return ProgramProgress{}, eventstore.Position{}, err
		}
		t := prog.Terms()
		return ProgramProgress{ProgramID: programID, Name: t.GetName(), BudgetFen: t.GetBudgetFen(), Closed: prog.Closed()}, asOf, nil
	}
	return pp, asOf, err
}

// Orders returns a page of orders once the read models reflect minPos.
func (p *Procurement) Orders(ctx context.Context, f OrderFilter, page Page, minPos *eventstore.Position) ([]OrderRow, string, eventstore.Position, error) {
	for field, id := range map[string]string{"program_id": f.ProgramID, "farmer_id": f.FarmerID} {
		if id != "" {
			if err := ident.Check(field, id); err != nil {
				return nil, "", eventstore.Position{}, err
			}
		}
	}
	list := pagetoken.For("procurement.orders", f.ProgramID, f.FarmerID, f.County, string(f.Status))
	var err error
	if page.Cursor, err = list.Seq(page.Token); err != nil {
		return nil, "", eventstore.Position{}, err
	}
	asOf, err := p.positions.WaitFor(ctx, minPos)
	if err != nil {
		return nil, "", eventstore.Position{}, err
	}
	rows, next, err := p.views.Orders(ctx, f, page)
	if err != nil || next == 0 {
		return rows, "", asOf, err
	}
	return rows, list.NextSeq(next), asOf, nil
}

// FarmerDeliveries returns a page of a farmer's deliveries once the read
// models reflect minPos.
func (p *Procurement) FarmerDeliveries(ctx context.Context, farmerID string, page Page, minPos *eventstore.Position) ([]domain.DeliveryView, string, eventstore.Position, error) {
	if err := ident.Check("farmer_id", farmerID); err != nil {
		return nil, "", eventstore.Position{}, err
	}
	list := pagetoken.For("procurement.farmer_deliveries", farmerID)
	var err error
	if page.Cursor, err = list.Seq(page.Token); err != nil {
		return nil, "", eventstore.Position{}, err
	}
	asOf, err := p.positions.WaitFor(ctx, minPos)
	if err != nil {
		return nil, "", eventstore.Position{}, err
	}
	rows, next, err := p.views.FarmerDeliveries(ctx, farmerID, page)
	if err != nil || next == 0 {
		return rows, "", asOf, err
	}
	return rows, list.NextSeq(next), asOf, nil
}

// CountyTotals returns every county's totals once the read models reflect
// minPos (a PROCUREMENT position, or a LEDGER one for farmers registered).
func (p *Procurement) CountyTotals(ctx context.Context, minPos *eventstore.Position) ([]CountyTotals, eventstore.Position, error) {
	asOf, err := p.positions.WaitFor(ctx, minPos)
	if err != nil {
		return nil, eventstore.Position{}, err
	}
	rows, err := p.views.CountyTotals(ctx)
	return rows, asOf, err
}
