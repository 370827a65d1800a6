package app

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/ident"
	"github.com/furrow/furrow/pkg/money"
)

// UnknownCentre is the centre of deliveries that name none.
const UnknownCentre = "unknown"

// CentreIntake is one centre's weigh-ins of a product and grade on a day.
type CentreIntake struct {
	Centre, County, Day, Product, Grade string
	Deliveries                          int64
	NetGrams, AmountFen                 int64
}

// CentreShare is a centre's part of its county's purchases.
type CentreShare struct {
	Centre, County                  string
	Deliveries                      int64
	NetGrams, AmountFen             int64
	CountyNetGrams, CountyAmountFen int64
	AmountShareBP, GramsShareBP     int64
}

// CentreReader reads the centres read model.
type CentreReader interface {
	Intake(ctx context.Context, county, dayFrom, dayTo string) ([]CentreIntake, error)
}

// CentreWaiter waits until the centres read model reflects a position.
type CentreWaiter interface {
	WaitFor(ctx context.Context, pos eventstore.Position) (eventstore.Position, error)
	Head(ctx context.Context) (eventstore.Position, error)
}

// Centres answers ListCentreIntake. It is apart from Procurement: a query
// over its own read model.
type Centres struct {
	reader CentreReader
	at     CentreWaiter
}

// NewCentres returns the query service.
func NewCentres(r CentreReader, at CentreWaiter) *Centres { return &Centres{reader: r, at: at} }

// CentreFilter selects intake; empty fields match everything.
type CentreFilter struct {
	County, Centre, DayFrom, DayTo string
	MinPosition                    *eventstore.Position
}

// Intake returns the selected intake rows and each selected centre's share
// of its county's purchases over the same days, as of MinPosition, or of
// the stream's head when the call was made.
func (c *Centres) Intake(ctx context.Context, f CentreFilter) ([]CentreIntake, []CentreShare, eventstore.Position, error) {
	if f.Centre != "" && f.Centre != UnknownCentre {
		if err := ident.Check("distribution_centre", f.Centre); err != nil {
			return nil, nil, eventstore.Position{}, err
		}
	}
	for _, d := range []struct{ field, v string }{{"day_from", f.DayFrom}, {"day_to", f.DayTo}} {
		if d.v == "" {
			continue
		}
		if _, err := time.Parse(time.DateOnly, d.v); err != nil {
			return nil, nil, eventstore.Position{}, failure.Invalid(d.field, "%q is not a day YYYY-MM-DD", d.v)
		}
	}
	// Without a position, the stream as it is now: the intake is never
	// older than the call.
	pos, err := c.at.Head(ctx)
	if err != nil {
		return nil, nil, eventstore.Position{}, err
	}
	if f.MinPosition != nil {
		pos = *f.MinPosition
	}
	asOf, err := c.at.WaitFor(ctx, pos)
	if err != nil {
		return nil, nil, eventstore.Position{}, err
	}
	rows, err := c.reader.Intake(ctx, f.County, f.DayFrom, f.DayTo)
	if err != nil {
		return nil, nil, eventstore.Position{}, err
	}
	type key struct{ county, centre string }
	county := map[string]*CentreShare{}
	centres := map[key]*CentreShare{}
	var out []CentreIntake
	var errs []error
	add := func(dst *int64, v int64) {
		s, err := money.Add(*dst, v)
		*dst = s
		errs = append(errs, err)
	}
	for _, r := range rows {
		ct := county[r.County]
		if ct == nil {
			ct = &CentreShare{County: r.County}
			county[r.County] = ct
		}
		add(&ct.NetGrams, r.NetGrams)
		add(&ct.AmountFen, r.AmountFen)
		if f.Centre != "" && r.Centre != f.Centre {
			continue
		}
		out = append(out, r)
		k := key{r.County, r.Centre}
		s := centres[k]
		if s == nil {
			s = &CentreShare{Centre: r.Centre, County: r.County}
			centres[k] = s
		}
		s.Deliveries += r.Deliveries
		add(&s.NetGrams, r.NetGrams)
		add(&s.AmountFen, r.AmountFen)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, eventstore.Position{}, fmt.Errorf("centre intake: %w", err)
	}
	shares := make([]CentreShare, 0, len(centres))
	for _, s := range centres {
		ct := county[s.County]
		s.CountyNetGrams, s.CountyAmountFen = ct.NetGrams, ct.AmountFen
		s.AmountShareBP, s.GramsShareBP = basisPoints(s.AmountFen, ct.AmountFen), basisPoints(s.NetGrams, ct.NetGrams)
		shares = append(shares, *s)
	}
	slices.SortFunc(shares, func(a, b CentreShare) int {
		if a.County != b.County {
			return cmpString(a.County, b.County)
		}
		return cmpString(a.Centre, b.Centre)
	})
	return out, shares, asOf, nil
}

// basisPoints is part / whole in 1/10,000, rounded half-to-even, computed
// exactly (0 when whole is not positive).
func basisPoints(part, whole int64) int64 {
	if whole <= 0 {
		return 0
	}
	q := new(big.Rat).SetFrac(new(big.Int).Mul(big.NewInt(part), big.NewInt(10_000)), big.NewInt(whole))
	n, d := q.Num(), q.Denom()
	quo, rem := new(big.Int).QuoRem(n, d, new(big.Int))
	twice := new(big.Int).Mul(new(big.Int).Abs(rem), big.NewInt(2))
	if c := twice.Cmp(d); c > 0 || (c == 0 && quo.Bit(0) == 1) {
		if n.Sign() < 0 {
			quo.Sub(quo, big.NewInt(1))
		} else {
			quo.Add(quo, big.NewInt(1))
		}
	}
	return quo.Int64()
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
