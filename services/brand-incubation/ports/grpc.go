// Package ports exposes brand incubation's gRPC API.
package ports

import (
	"context"

	brandevents "github.com/furrow/furrow/proto/furrow/brand/events/v1"
	brandv1 "github.com/furrow/furrow/proto/furrow/brand/v1"

	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/grpcx"

	"github.com/furrow/furrow/services/brand-incubation/app"
)

// GRPCServer implements furrow.brand.v1.BrandService. Errors are mapped to
// status codes by grpcx's interceptors.
type GRPCServer struct {
	brandv1.UnimplementedBrandServiceServer
	app *app.Incubator
}

var _ brandv1.BrandServiceServer = (*GRPCServer)(nil)

// NewGRPCServer returns the gRPC face of a.
func NewGRPCServer(a *app.Incubator) *GRPCServer { return &GRPCServer{app: a} }

// RegisterBrand implements BrandService.
func (s *GRPCServer) RegisterBrand(ctx context.Context, req *brandv1.RegisterBrandRequest) (*brandv1.RegisterBrandResponse, error) {
	res, err := s.app.RegisterBrand(ctx, app.RegisterBrand{
		RequestID:   req.GetRequestId(),
		Fingerprint: eventstore.Fingerprint(req),
		Meta:        grpcx.CommandMeta(ctx, req.GetRequestId()),
		Brand: &brandevents.BrandRegistered{
			BrandId: req.GetBrandId(), Kind: int32(req.GetKind()), Name: req.GetName(),
			County: req.GetCounty(), ProductCategory: req.GetProductCategory(),
		},
	})
	if err != nil {
		return nil, err
	}
	return &brandv1.RegisterBrandResponse{BrandId: req.GetBrandId(), Position: grpcx.ToPosition(res.Position())}, nil
}

// GetBrand implements BrandService.
func (s *GRPCServer) GetBrand(ctx context.Context, req *brandv1.GetBrandRequest) (*brandv1.GetBrandResponse, error) {
	b, err := s.app.Brand(ctx, req.GetBrandId())
	if err != nil {
		return nil, err
	}
	r := b.Registration()
	return &brandv1.GetBrandResponse{Brand: &brandv1.Brand{
		BrandId: r.GetBrandId(), Kind: brandv1.BrandKind(r.GetKind()), Name: r.GetName(),
		County: r.GetCounty(), ProductCategory: r.GetProductCategory(), Version: b.Version(),
	}}, nil
}
