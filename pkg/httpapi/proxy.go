package httpapi

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httputil"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/furrow/furrow/pkg/grpcx"
	"github.com/furrow/furrow/pkg/serve"
)

// Proxy returns a backend that forwards gRPC calls to the gRPC server at
// addr (host:port) over HTTP/2: with TLS when tlsCfg is not nil (the
// gateway's client certificate, with the roles it may forward), otherwise
// in clear text (h2c, a server run with --insecure-dev).
func Proxy(addr string, tlsCfg *tls.Config) http.Handler {
	tr := &http.Transport{TLSClientConfig: tlsCfg, ForceAttemptHTTP2: true}
	tr.Protocols = new(http.Protocols)
	scheme := "https"
	if tlsCfg == nil {
		scheme = "http"
		tr.Protocols.SetUnencryptedHTTP2(true)
	} else {
		tr.Protocols.SetHTTP2(true)
	}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = scheme
			pr.Out.URL.Host = addr
			pr.Out.Host = addr
		},
		Transport:     tr,
		FlushInterval: -1, // server streams (TailEvents) flush each message
	}
}

// Identity is who a request comes from: a user signed in to the console
// or a backend's bearer token (OIDC), with the Furrow roles its claims
// map to.
type Identity struct {
	Subject string
	Name    string
	Email   string
	Roles   []serve.Role
}

// Has reports whether the identity holds role r.
func (id *Identity) Has(r serve.Role) bool { return id != nil && slices.Contains(id.Roles, r) }

// RoleList is the identity's roles, comma-separated (grpcx.MDOnBehalfRoles).
func (id *Identity) RoleList() string {
	if id == nil {
		return ""
	}
	names := make([]string, len(id.Roles))
	for i, r := range id.Roles {
		names[i] = string(r)
	}
	return strings.Join(names, ",")
}

// Who names the identity in logs and events.
func (id *Identity) Who() string {
	switch {
	case id == nil:
		return "anonymous"
	case id.Email != "":
		return id.Email
	case id.Name != "":
		return id.Name
	}
	return id.Subject
}

type identityKey struct{}

// WithIdentity returns ctx carrying id.
func WithIdentity(ctx context.Context, id *Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// IdentityFrom returns the identity ctx carries, or nil.
func IdentityFrom(ctx context.Context) *Identity {
	id, _ := ctx.Value(identityKey{}).(*Identity)
	return id
}

// Authorize guards a gRPC backend with the role table of gRPC
// (serve.Allow): a call whose method the request's identity may not call
// is answered with PermissionDenied (Unauthenticated without an identity)
// and never forwarded. It also names the identity as the command's actor
// (x-furrow-actor).
func Authorize(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := IdentityFrom(r.Context())
		var err error
		if id == nil {
			err = status.Errorf(codes.Unauthenticated, "%s needs a signed-in user or an OIDC bearer token", r.URL.Path)
		} else {
			err = serve.Allow(r.URL.Path, id.Who(), id.Roles)
		}
		if err != nil {
			writeGRPCError(w, status.Convert(err))
			return
		}
		// Set, not added: whatever the client sent under these names is
		// replaced. A service behind mTLS believes the user only because
		// the gateway's certificate holds the gateway role.
		r.Header.Set(grpcx.MDActor, id.Who())
		r.Header.Set(grpcx.MDOnBehalfOf, id.Who())
		r.Header.Set(grpcx.MDOnBehalfRoles, id.RoleList())
		next.ServeHTTP(w, r)
	})
}

// writeGRPCError answers a gRPC request with a trailers-only error, which
// the transcoder turns into the client's protocol.
func writeGRPCError(w http.ResponseWriter, st *status.Status) {
	h := w.Header()
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", strconv.Itoa(int(st.Code())))
	h.Set("Grpc-Message", encodeGRPCMessage(st.Message()))
	w.WriteHeader(http.StatusOK)
}

// encodeGRPCMessage percent-encodes a status message as the gRPC protocol
// requires (bytes outside printable ASCII, and '%').
func encodeGRPCMessage(msg string) string {
	const hex = "0123456789ABCDEF"
	var b []byte
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c >= ' ' && c <= '~' && c != '%' {
			b = append(b, c)
			continue
		}
		b = append(b, '%', hex[c>>4], hex[c&0xf])
	}
	return string(b)
}
