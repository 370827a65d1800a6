package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/furrow/furrow/pkg/grpcx"
	"github.com/furrow/furrow/pkg/httpapi"
	"github.com/furrow/furrow/pkg/serve"
)

// TestAuthorizeNamesTheUser: the gateway forwards a call on behalf of the
// signed-in user (grpcx.MDOnBehalfOf, grpcx.MDOnBehalfRoles), replacing
// whatever the HTTP client sent under those names, so a client cannot
// claim another user or more roles through the gateway's certificate.
func TestAuthorizeNamesTheUser(t *testing.T) {
	var got http.Header
	backend := httpapi.Authorize(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Header.Clone() }))
	req := httptest.NewRequest("POST", "/furrow.ledger.v1.LedgerService/RegisterFarmer", nil)
	req.Header.Set(grpcx.MDOnBehalfOf, "admin@example.com")
	req.Header.Set(grpcx.MDOnBehalfRoles, "platform,finance,operator")
	req.Header.Set(grpcx.MDActor, "admin@example.com")
	id := &httpapi.Identity{Subject: "u-1", Email: "wang@coop.example", Roles: []serve.Role{serve.RolePlatform}}
	rec := httptest.NewRecorder()
	backend.ServeHTTP(rec, req.WithContext(httpapi.WithIdentity(req.Context(), id)))
	if got == nil {
		t.Fatalf("not forwarded: %d %v", rec.Code, rec.Header())
	}
	for k, want := range map[string]string{grpcx.MDOnBehalfOf: "wang@coop.example", grpcx.MDOnBehalfRoles: "platform", grpcx.MDActor: "wang@coop.example"} {
		if v := got.Values(k); len(v) != 1 || v[0] != want {
			t.Errorf("%s forwarded as %q, want [%s]", k, v, want)
		}
	}
}
