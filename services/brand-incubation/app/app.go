// Package app holds brand incubation's command and query handlers.
package app

import (
	"context"
	"errors"

	"google.golang.org/protobuf/proto"

	brandevents "github.com/furrow/furrow/proto/furrow/brand/events/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/ident"

	"github.com/furrow/furrow/services/brand-incubation/domain"
)

// Brands loads and appends brand aggregates.
type Brands interface {
	Load(ctx context.Context, id string) (*domain.Brand, *eventstore.Requests, error)
	Append(ctx context.Context, b *domain.Brand, kind string, ev proto.Message, key, fingerprint string, md eventstore.Metadata) (eventstore.AppendResult, error)
}

// Incubator is brand incubation's application service.
type Incubator struct{ brands Brands }

// New returns the application service.
func New(brands Brands) *Incubator { return &Incubator{brands: brands} }

// RegisterBrand is the command to register a brand.
type RegisterBrand struct {
	RequestID   string
	Fingerprint string
	Brand       *brandevents.BrandRegistered
	Meta        eventstore.Metadata
}

// RegisterBrand registers a brand once per request id.
func (i *Incubator) RegisterBrand(ctx context.Context, cmd RegisterBrand) (eventstore.AppendResult, error) {
	if err := ident.CheckRequestID(cmd.RequestID); err != nil {
		return eventstore.AppendResult{}, err
	}
	if err := ident.Check("brand_id", cmd.Brand.GetBrandId()); err != nil {
		return eventstore.AppendResult{}, err
	}
	key := "brand.RegisterBrand:" + cmd.RequestID
	b, seen, err := i.brands.Load(ctx, cmd.Brand.GetBrandId())
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	if res, ok, err := seen.Check(key, cmd.Fingerprint); ok || err != nil {
		return res, err
	}
	ev, err := b.Register(cmd.Brand)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	res, err := i.brands.Append(ctx, b, domain.KindBrandRegistered, ev, key, cmd.Fingerprint, cmd.Meta)
	if errors.Is(err, eventstore.ErrConflict) {
		return eventstore.AppendResult{}, failure.AlreadyExists("brand_id", "brand %s is already registered", b.ID())
	}
	return res, err
}

// Brand returns a registered brand.
func (i *Incubator) Brand(ctx context.Context, id string) (*domain.Brand, error) {
	if err := ident.Check("brand_id", id); err != nil {
		return nil, err
	}
	b, _, err := i.brands.Load(ctx, id)
	if err != nil {
		return nil, err
	}
	if b.Registration() == nil {
		return nil, failure.NotFound("brand_id", "brand %s does not exist", id)
	}
	return b, nil
}
