package grpcx

import (
	"context"

	"google.golang.org/grpc/metadata"

	typesv1 "github.com/furrow/furrow/proto/furrow/types/v1"

	"github.com/furrow/furrow/pkg/eventstore"
)

// Metadata keys a client may send with a command.
const (
	// MDCorrelationID carries the caller's correlation id; without it the
	// request id is used.
	MDCorrelationID = "x-correlation-id"
	// MDActor names the caller (a platform backend, an operator). Production
	// mode takes the actor from the client certificate instead.
	MDActor = "x-furrow-actor"
)

// CommandMeta builds the event metadata for a command from the incoming
// gRPC metadata.
func CommandMeta(ctx context.Context, requestID string) eventstore.Metadata {
	md := eventstore.Metadata{CorrelationID: requestID, CausationID: requestID, Actor: "anonymous"}
	in, _ := metadata.FromIncomingContext(ctx)
	if v := in.Get(MDCorrelationID); len(v) > 0 && v[0] != "" {
		md.CorrelationID = v[0]
	}
	if v := in.Get(MDActor); len(v) > 0 && v[0] != "" {
		md.Actor = v[0]
	}
	return md
}

// ToPosition converts a stream position into its API form.
func ToPosition(p eventstore.Position) *typesv1.Position {
	return &typesv1.Position{Stream: p.Stream, Sequence: p.Sequence}
}

// FromPosition converts an API position (possibly nil) into a stream position.
func FromPosition(p *typesv1.Position) *eventstore.Position {
	if p == nil {
		return nil
	}
	return &eventstore.Position{Stream: p.GetStream(), Sequence: p.GetSequence()}
}
