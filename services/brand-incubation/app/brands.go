package app

import (
	"context"

	"google.golang.org/protobuf/proto"

	brandevents "github.com/furrow/furrow/proto/furrow/brand/events/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/ident"

	"github.com/furrow/furrow/services/brand-incubation/domain"
)

// RegisterBrand is the command to register a brand.
type RegisterBrand struct {
	RequestID   string
	Fingerprint string
	Brand       *brandevents.BrandRegistered
	Meta        eventstore.Metadata
}

// RegisterBrand registers a brand once per request id.
func (i *Incubator) RegisterBrand(ctx context.Context, cmd RegisterBrand) (eventstore.AppendResult, error) {
	if err := checkCommand(cmd.RequestID, "brand_id", cmd.Brand.GetBrandId()); err != nil {
		return eventstore.AppendResult{}, err
	}
	today := i.today()
	_, res, err := execute(ctx, i, func() *domain.Brand { return domain.NewBrand(cmd.Brand.GetBrandId()) },
		"brand.RegisterBrand:"+cmd.RequestID, cmd.Fingerprint, cmd.Meta,
		func(b *domain.Brand) ([]domain.Change, error) {
			ev, err := b.Register(cmd.Brand, today)
			return one(domain.KindBrandRegistered, ev, err)
		})
	return res, err
}

// ChangeBrandStage is the command to move a brand to a later stage.
type ChangeBrandStage struct {
	RequestID   string
	Fingerprint string
	BrandID     string
	Stage       int32
	EffectiveOn string
	Note        string
	Meta        eventstore.Metadata
}

// ChangeBrandStage moves a brand forward once per request id.
func (i *Incubator) ChangeBrandStage(ctx context.Context, cmd ChangeBrandStage) (eventstore.AppendResult, error) {
	if err := checkCommand(cmd.RequestID, "brand_id", cmd.BrandID); err != nil {
		return eventstore.AppendResult{}, err
	}
	today := i.today()
	_, res, err := execute(ctx, i, func() *domain.Brand { return domain.NewBrand(cmd.BrandID) },
		"brand.ChangeBrandStage:"+cmd.RequestID, cmd.Fingerprint, cmd.Meta,
		func(b *domain.Brand) ([]domain.Change, error) {
			ev, err := b.ChangeStage(cmd.Stage, cmd.EffectiveOn, cmd.Note, today)
			return one(domain.KindBrandStageChanged, ev, err)
		})
	return res, err
}

// Brand returns a registered brand, read from its events.
func (i *Incubator) Brand(ctx context.Context, id string) (*domain.Brand, error) {
	if err := ident.Check("brand_id", id); err != nil {
		return nil, err
	}
	b := domain.NewBrand(id)
	if err := i.load(ctx, b); err != nil {
		return nil, err
	}
	if !b.Registered() {
		return nil, failure.NotFound("brand_id", "brand %s does not exist", id)
	}
	return b, nil
}

// RegisterChannel is the command to register a retail channel.
type RegisterChannel struct {
	RequestID   string
	Fingerprint string
	ChannelID   string
	Name        string
	Meta        eventstore.Metadata
}

// RegisterChannel registers a channel once per request id.
func (i *Incubator) RegisterChannel(ctx context.Context, cmd RegisterChannel) (eventstore.AppendResult, error) {
	if err := checkCommand(cmd.RequestID, "channel_id", cmd.ChannelID); err != nil {
		return eventstore.AppendResult{}, err
	}
	_, res, err := execute(ctx, i, func() *domain.Channel { return domain.NewChannel(cmd.ChannelID) },
		"brand.RegisterChannel:"+cmd.RequestID, cmd.Fingerprint, cmd.Meta,
		func(c *domain.Channel) ([]domain.Change, error) {
			ev, err := c.Register(cmd.Name)
			return one(domain.KindChannelRegistered, ev, err)
		})
	return res, err
}

// EnrolFarmer is the command to enrol a farmer in a brand.
type EnrolFarmer struct {
	RequestID    string
	Fingerprint  string
	BrandID      string
	FarmerID     string
	EnrolledFrom string
	Certificate  string
	Meta         eventstore.Metadata
}

// EnrolFarmer enrols a farmer registered with the ledger, once per request
// id.
func (i *Incubator) EnrolFarmer(ctx context.Context, cmd EnrolFarmer) (eventstore.AppendResult, error) {
	if err := checkCommand(cmd.RequestID, "brand_id", cmd.BrandID, "farmer_id", cmd.FarmerID); err != nil {
		return eventstore.AppendResult{}, err
	}
	today := i.today()
	_, res, err := execute(ctx, i, func() *domain.Enrolment { return domain.NewEnrolment(cmd.BrandID, cmd.FarmerID) },
		"brand.EnrolFarmer:"+cmd.RequestID, cmd.Fingerprint, cmd.Meta,
		func(e *domain.Enrolment) ([]domain.Change, error) {
			b := domain.NewBrand(cmd.BrandID)
			if err := i.load(ctx, b); err != nil {
				return nil, err
			}
			known, err := i.farmers.Registered(ctx, cmd.FarmerID)
			if err != nil {
				return nil, err
			}
			ev, err := e.Enrol(b, known, cmd.EnrolledFrom, cmd.Certificate, today)
			return one(domain.KindFarmerEnrolled, ev, err)
		})
	return res, err
}

// SuspendFarmer is the command to suspend a farmer's enrolment.
type SuspendFarmer struct {
	RequestID     string
	Fingerprint   string
	BrandID       string
	FarmerID      string
	SuspendedFrom string
	Reason        string
	Meta          eventstore.Metadata
}

// SuspendFarmer suspends an enrolled farmer once per request id.
func (i *Incubator) SuspendFarmer(ctx context.Context, cmd SuspendFarmer) (eventstore.AppendResult, error) {
	if err := checkCommand(cmd.RequestID, "brand_id", cmd.BrandID, "farmer_id", cmd.FarmerID); err != nil {
		return eventstore.AppendResult{}, err
	}
	today := i.today()
	_, res, err := execute(ctx, i, func() *domain.Enrolment { return domain.NewEnrolment(cmd.BrandID, cmd.FarmerID) },
		"brand.SuspendFarmer:"+cmd.RequestID, cmd.Fingerprint, cmd.Meta,
		func(e *domain.Enrolment) ([]domain.Change, error) {
			ev, err := e.Suspend(cmd.SuspendedFrom, cmd.Reason, today)
			return one(domain.KindFarmerSuspended, ev, err)
		})
	return res, err
}

// one wraps a single decided event (or the failure to decide it).
func one(kind string, ev proto.Message, err error) ([]domain.Change, error) {
	if err != nil {
		return nil, err
	}
	return []domain.Change{{Kind: kind, Event: ev}}, nil
}
