// Package domain holds brand incubation's aggregates and rules. It does no
// I/O; aggregates are rebuilt only from their events.
package domain

import (
	"google.golang.org/protobuf/proto"

	brandevents "github.com/furrow/furrow/proto/furrow/brand/events/v1"

	"github.com/furrow/furrow/pkg/failure"
	"github.com/furrow/furrow/pkg/ident"
)

// Stream is brand incubation's event stream and Subjects the subjects it holds.
const (
	Stream   = "BRAND"
	Subjects = "brand.>"
)

// BrandSubject is the subject of a brand's event of the given kind.
func BrandSubject(brandID, kind string) string { return "brand.brand." + brandID + "." + kind }

// BrandAggregate is the subject filter covering a brand's events.
func BrandAggregate(brandID string) string { return "brand.brand." + brandID + ".>" }

// Event kinds (the last subject token).
const (
	KindBrandRegistered = "brand_registered"
)

// Brand kinds, numbered as furrow.brand.v1.BrandKind.
const (
	KindRegionalProduct = 1
	KindCountyPublic    = 2
)

// Brand is a regional or county brand, rebuilt from its events.
type Brand struct {
	id         string
	registered *brandevents.BrandRegistered
	version    uint64
}

// NewBrand returns the empty aggregate for id, ready to replay events.
func NewBrand(id string) *Brand { return &Brand{id: id} }

// Apply folds one recorded event into the aggregate.
func (b *Brand) Apply(seq uint64, ev proto.Message) {
	b.version = seq
	if e, ok := ev.(*brandevents.BrandRegistered); ok {
		b.registered = e
	}
}

// ID returns the brand id.
func (b *Brand) ID() string { return b.id }

// Version is the stream sequence of the brand's last event.
func (b *Brand) Version() uint64 { return b.version }

// Registration returns the brand's registration, or nil.
func (b *Brand) Registration() *brandevents.BrandRegistered { return b.registered }

// Register validates a registration and returns its event.
func (b *Brand) Register(r *brandevents.BrandRegistered) (*brandevents.BrandRegistered, error) {
	if err := ident.Check("brand_id", r.GetBrandId()); err != nil {
		return nil, err
	}
	if k := r.GetKind(); k != KindRegionalProduct && k != KindCountyPublic {
		return nil, failure.Invalid("kind", "must be BRAND_KIND_REGIONAL_PRODUCT or BRAND_KIND_COUNTY_PUBLIC")
	}
	if r.GetName() == "" {
		return nil, failure.Invalid("name", "is required")
	}
	if r.GetCounty() == "" {
		return nil, failure.Invalid("county", "is required")
	}
	if b.registered != nil {
		return nil, failure.AlreadyExists("brand_id", "brand %s is already registered", b.id)
	}
	return proto.CloneOf(r), nil
}
