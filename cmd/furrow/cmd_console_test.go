package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"github.com/furrow/furrow/pkg/httpapi"
	"github.com/furrow/furrow/pkg/httpapi/oidctest"

	"github.com/furrow/furrow/cmd/furrow/internal/stack"
)

// TestConsoleRefusesToStartWithoutOIDC: the production console and HTTP
// API serve nobody anonymously; without OIDC settings `furrow console`
// refuses to start and says what to set.
func TestConsoleRefusesToStartWithoutOIDC(t *testing.T) {
	t.Parallel()
	env := map[string]string{}
	_, err := parseConsoleConfig([]string{"--procurement-addr", "p:7070", "--brand-addr", "b:7070", "--ledger-addr", "l:7070", "--insecure-dev"},
		io.Discard, func(k string) string { return env[k] })
	if !errors.Is(err, httpapi.ErrNoAuth) {
		t.Fatalf("parseConsoleConfig without OIDC = %v, want ErrNoAuth", err)
	}
	for _, want := range []string{"--oidc-issuer", "--oidc-client-id", "FURROW_OIDC_CLIENT_SECRET", "--oidc-redirect-url", "--oidc-role-claim"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not name %s", err, want)
		}
	}
	// Half the settings are still a refusal, naming what is missing.
	env["FURROW_OIDC_ISSUER"] = "https://id.example"
	env["FURROW_OIDC_CLIENT_ID"] = "furrow"
	_, err = parseConsoleConfig([]string{"--procurement-addr", "p:7070", "--brand-addr", "b:7070", "--ledger-addr", "l:7070", "--insecure-dev"},
		io.Discard, func(k string) string { return env[k] })
	if !errors.Is(err, httpapi.ErrNoAuth) || strings.Contains(err.Error(), "--oidc-issuer") || !strings.Contains(err.Error(), "--oidc-role-claim") {
		t.Fatalf("with issuer and client id only: %v", err)
	}
}

// gateway is `furrow console` in front of a dev stack, signing in with a
// local test issuer.
type gateway struct {
	base string
	idp  *oidctest.Provider
}

func startGateway(t *testing.T) gateway {
	t.Helper()
	st, err := stack.Start(context.Background(), stack.Config{DataDir: t.TempDir(), GRPCAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st.Shutdown(ctx)
	})
	idp := oidctest.Start(t)
	env := map[string]string{"FURROW_OIDC_CLIENT_SECRET": idp.ClientSecret}
	// The redirect URL must name the listener's port: listen first on a
	// port the test picks.
	lisAddr := freeAddr(t)
	cfg, err := parseConsoleConfig([]string{"--http-addr", lisAddr, "--procurement-addr", st.GRPCAddr(), "--brand-addr", st.GRPCAddr(),
		"--ledger-addr", st.GRPCAddr(), "--insecure-dev", "--oidc-issuer", idp.URL, "--oidc-client-id", idp.ClientID,
		"--oidc-redirect-url", "http://" + lisAddr + "/auth/callback", "--oidc-role-claim", "furrow_roles",
		"--oidc-role-map", "treasury=finance"}, io.Discard, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	srv, lis, closeConns, err := startConsole(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() {
		_ = srv.Close()
		closeConns()
	})
	return gateway{base: "http://" + lis.Addr().String(), idp: idp}
}

// freeAddr returns a loopback address with a port free right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	return lis.Addr().String()
}

// TestConsoleGatewayChecksRolesPerCall: over the gateway, the HTTP API
// takes OIDC bearer tokens and applies the gRPC role table to each call,
// and the console signs users in with the provider's code flow.
func TestConsoleGatewayChecksRolesPerCall(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	platform := g.idp.Token(t, oidctest.User{Subject: "backend-1", Claims: map[string]any{"furrow_roles": []string{"platform"}}}, g.idp.ClientID, time.Hour)
	finance := g.idp.Token(t, oidctest.User{Subject: "fin-1", Email: "li@finance.example", Claims: map[string]any{"furrow_roles": "treasury"}}, g.idp.ClientID, time.Hour)
	nobody := g.idp.Token(t, oidctest.User{Subject: "guest"}, g.idp.ClientID, time.Hour)
	otherAudience := g.idp.Token(t, oidctest.User{Subject: "x", Claims: map[string]any{"furrow_roles": "platform"}}, "someone-else", time.Hour)

	for _, tc := range []struct {
		name, method, path, token, body string
		want                            int
	}{
		{"no token", "GET", "/v1/farmers", "", "", http.StatusUnauthorized},
		{"another audience", "GET", "/v1/farmers", otherAudience, "", http.StatusUnauthorized},
		{"no role", "GET", "/v1/farmers", nobody, "", http.StatusForbidden},
		{"platform registers a farmer", "POST", "/v1/farmers", platform,
			`{"request_id": "r1", "farmer_id": "F1", "name": "Wang Fang", "county": "Xunwu"}`, http.StatusOK},
		{"platform may not read the trial balance", "GET", "/v1/ledger/trial-balance", platform, "", http.StatusForbidden},
		{"finance (mapped from treasury) reads it", "GET", "/v1/ledger/trial-balance", finance, "", http.StatusOK},
		{"finance may not register farmers", "POST", "/v1/farmers", finance,
			`{"request_id": "r2", "farmer_id": "F2", "name": "Liu Yang", "county": "Xunwu"}`, http.StatusForbidden},
		{"operators only for the AdminService", "GET", "/v1/admin/streams", finance, "", http.StatusForbidden},
		{"tailing events too", "GET", "/v1/admin/streams/LEDGER/events:tail?last=1", finance, "", http.StatusForbidden},
		{"and without a token", "GET", "/v1/admin/streams/LEDGER/events:tail?last=1", "", "", http.StatusUnauthorized},
		{"the OpenAPI document is public", "GET", "/openapi.json", "", "", http.StatusOK},
	} {
		req, _ := http.NewRequest(tc.method, g.base+tc.path, strings.NewReader(tc.body))
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		if tc.body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != tc.want {
			t.Errorf("%s: %s %s = %d %s, want %d", tc.name, tc.method, tc.path, res.StatusCode, b, tc.want)
		}
	}

	// The console: a visitor is sent to the provider and back, signed in.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	g.idp.SignIn(oidctest.User{Subject: "fin-1", Email: "li@finance.example", Claims: map[string]any{"furrow_roles": []string{"finance"}}})
	res, err := browser.Get(g.base + "/finance")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Request.URL.Path != "/finance" || !strings.Contains(string(b), "li@finance.example") ||
		!strings.Contains(string(b), "Trial balance") || strings.Contains(string(b), "PermissionDenied") {
		t.Fatalf("console after sign-in: %d at %s:\n%s", res.StatusCode, res.Request.URL, b)
	}
	// A finance user's console refuses what the role table refuses.
	res, err = browser.Get(g.base + "/projections")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(b), "PermissionDenied") || !strings.Contains(string(b), "needs role operator") {
		t.Errorf("a finance user's projections page does not say the role is missing:\n%s", b)
	}
}
