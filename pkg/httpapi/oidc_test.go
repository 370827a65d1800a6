package httpapi_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/furrow/furrow/pkg/httpapi"
	"github.com/furrow/furrow/pkg/httpapi/oidctest"
	"github.com/furrow/furrow/pkg/serve"
)

func newAuth(t *testing.T, idp *oidctest.Provider) *httpapi.Auth {
	t.Helper()
	a, err := httpapi.NewAuth(context.Background(), httpapi.OIDCConfig{Issuer: idp.URL, ClientID: idp.ClientID, ClientSecret: idp.ClientSecret,
		RedirectURL: "http://127.0.0.1:7080/auth/callback", RoleClaim: "realm_access.roles",
		RoleMap: map[string]serve.Role{"ops": serve.RoleOperator}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestBearerTokens: the API takes a token the issuer signed for the
// client, maps its role claim (a dotted path, a mapped value) to roles,
// and refuses expired tokens, tokens for another audience and tokens
// without a Furrow role.
func TestBearerTokens(t *testing.T) {
	t.Parallel()
	idp := oidctest.Start(t)
	a := newAuth(t, idp)
	var got *httpapi.Identity
	h := a.API(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = httpapi.IdentityFrom(r.Context()) }))
	roles := func(rs ...string) map[string]any { return map[string]any{"realm_access": map[string]any{"roles": rs}} }
	for _, tc := range []struct {
		name      string
		token     string
		want      int
		wantRoles []serve.Role
	}{
		{"operator via map, finance by name", idp.Token(t, oidctest.User{Subject: "u1", Claims: roles("ops", "finance", "other")}, idp.ClientID, time.Minute),
			http.StatusOK, []serve.Role{serve.RoleOperator, serve.RoleFinance}},
		{"expired", idp.Token(t, oidctest.User{Subject: "u2", Claims: roles("finance")}, idp.ClientID, -time.Minute), http.StatusUnauthorized, nil},
		{"another audience", idp.Token(t, oidctest.User{Subject: "u3", Claims: roles("finance")}, "other-client", time.Minute), http.StatusUnauthorized, nil},
		{"no Furrow role", idp.Token(t, oidctest.User{Subject: "u4", Claims: roles("guest")}, idp.ClientID, time.Minute), http.StatusForbidden, nil},
		{"no token", "", http.StatusUnauthorized, nil},
	} {
		got = nil
		req := httptest.NewRequest("GET", "/v1/farmers", nil)
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, rec.Code, rec.Body, tc.want)
			continue
		}
		if tc.want == http.StatusOK && (got == nil || !slices.Equal(got.Roles, tc.wantRoles)) {
			t.Errorf("%s: identity %+v, want roles %v", tc.name, got, tc.wantRoles)
		}
	}
}

// TestOIDCConfigRefusals: without OIDC the console does not start, and an
// http redirect URL off loopback is refused unless insecure.
func TestOIDCConfigRefusals(t *testing.T) {
	t.Parallel()
	if err := (httpapi.OIDCConfig{}).Validate(); !errors.Is(err, httpapi.ErrNoAuth) {
		t.Errorf("empty config: %v, want ErrNoAuth", err)
	}
	c := httpapi.OIDCConfig{Issuer: "https://id.example", ClientID: "c", ClientSecret: "s", RoleClaim: "roles",
		RedirectURL: "http://console.example/auth/callback"}
	if err := c.Validate(); err == nil {
		t.Error("http redirect URL off loopback accepted")
	}
	c.Insecure = true
	if err := c.Validate(); err != nil {
		t.Errorf("insecure: %v", err)
	}
}

// TestStatusFromCode pins the codes whose HTTP status differs from the
// usual table or matters most to clients.
func TestStatusFromCode(t *testing.T) {
	t.Parallel()
	for code, want := range map[codes.Code]int{codes.InvalidArgument: 400, codes.NotFound: 404, codes.AlreadyExists: 409,
		codes.Aborted: 409, codes.FailedPrecondition: 412, codes.PermissionDenied: 403, codes.Unauthenticated: 401} {
		if got := httpapi.StatusFromCode(code); got != want {
			t.Errorf("%v → %d, want %d", code, got, want)
		}
	}
}
