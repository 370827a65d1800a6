package grpcx

import (
	"context"
	"slices"
	"strings"

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
	// MDRoles carries the caller's Furrow roles (platform, finance,
	// operator; comma-separated or repeated), which decide what a service
	// shows in full rather than masked. Production mode sets it from the
	// client certificate, replacing whatever the client sent; without mTLS
	// (furrow dev) a client's own value is taken, the documented way to see
	// unmasked values in development.
	MDRoles = "x-furrow-roles"
	// MDOnBehalfOf and MDOnBehalfRoles name the user a gateway (the web
	// console, the HTTP/JSON API) calls for, and that user's Furrow roles.
	// A service believes them only from a client certificate with the
	// gateway role, and grants at most the roles that certificate holds
	// (serve's role table); from any other caller they are refused.
	MDOnBehalfOf    = "x-furrow-on-behalf-of"
	MDOnBehalfRoles = "x-furrow-on-behalf-roles"
)

// CallerRoles returns the roles the incoming call carries (MDRoles).
func CallerRoles(ctx context.Context) []string {
	in, _ := metadata.FromIncomingContext(ctx)
	var roles []string
	for _, v := range in.Get(MDRoles) {
		for r := range strings.SplitSeq(v, ",") {
			if r = strings.TrimSpace(r); r != "" {
				roles = append(roles, r)
			}
		}
	}
	return roles
}

// CallerHasRole reports whether the incoming call carries role.
func CallerHasRole(ctx context.Context, role string) bool {
	return slices.Contains(CallerRoles(ctx), role)
}

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
