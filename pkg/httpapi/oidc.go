package httpapi

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/furrow/furrow/pkg/serve"
)

// ErrNoAuth means the console or the HTTP API would serve without
// authentication outside furrow dev; the process refuses to start.
var ErrNoAuth = errors.New("no authentication configured")

// OIDCConfig configures sign-in with an OpenID Connect provider: the
// console's users sign in with the authorization code flow; backends
// calling the HTTP API send a bearer token (a JWT the provider signed,
// issued to APIAudience). A claim (RoleClaim) carries each user's Furrow
// roles: platform, finance or operator, or provider group names that
// RoleMap maps to them.
type OIDCConfig struct {
	Issuer       string
	ClientID     string
	ClientSecret string
	// RedirectURL is the console's public callback URL,
	// https://console.example/auth/callback.
	RedirectURL string
	// RoleClaim names the claim holding the roles: a string (space or
	// comma separated) or a list of strings; a dotted path reaches into
	// objects ("realm_access.roles").
	RoleClaim string
	// RoleMap maps claim values to roles; the role names themselves always
	// map to their role.
	RoleMap map[string]serve.Role
	// APIAudience is the audience bearer tokens must carry; default
	// ClientID.
	APIAudience string
	// SessionKey signs session cookies (at least 32 bytes); replicas of a
	// console behind one address need the same key. Empty: a random key,
	// so sessions end when the process restarts.
	SessionKey []byte
	// SessionTTL is how long a console session lasts (default 8h).
	SessionTTL time.Duration
	// Insecure allows an http:// redirect URL off loopback (tests, a
	// trusted network behind a proxy that terminates TLS).
	Insecure bool
}

// Validate lists what is missing; every missing setting wraps ErrNoAuth.
func (c OIDCConfig) Validate() error {
	var missing []string
	if c.Issuer == "" {
		missing = append(missing, "--oidc-issuer (the provider's issuer URL)")
	}
	if c.ClientID == "" {
		missing = append(missing, "--oidc-client-id")
	}
	if c.ClientSecret == "" {
		missing = append(missing, "FURROW_OIDC_CLIENT_SECRET (the client's secret)")
	}
	if c.RedirectURL == "" {
		missing = append(missing, "--oidc-redirect-url (https://<console>/auth/callback)")
	}
	if c.RoleClaim == "" {
		missing = append(missing, "--oidc-role-claim (the claim that carries platform, finance or operator)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("refusing to start: %w: the console and the HTTP/JSON API serve nobody anonymously outside furrow dev; set:\n  - %s",
			ErrNoAuth, strings.Join(missing, "\n  - "))
	}
	u, err := url.Parse(c.RedirectURL)
	if err != nil || u.Host == "" || !strings.HasSuffix(u.Path, "/auth/callback") {
		return fmt.Errorf("--oidc-redirect-url %q: want https://<console host>/auth/callback", c.RedirectURL)
	}
	if u.Scheme != "https" && !c.Insecure && !isLoopbackHost(u.Hostname()) {
		return fmt.Errorf("refusing to start: --oidc-redirect-url %q is not https: session cookies would cross the network in clear (pass --insecure-dev to allow)", c.RedirectURL)
	}
	if len(c.SessionKey) > 0 && len(c.SessionKey) < 32 {
		return errors.New("the session key must be at least 32 bytes")
	}
	for k, r := range c.RoleMap {
		if _, ok := serve.ParseRole(string(r)); !ok {
			return fmt.Errorf("role map %q=%q: want platform, finance or operator", k, r)
		}
	}
	return nil
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// Auth signs users in with OIDC and recognises bearer tokens.
type Auth struct {
	cfg      OIDCConfig
	log      *slog.Logger
	oauth    oauth2.Config
	users    *oidc.IDTokenVerifier
	bearers  *oidc.IDTokenVerifier
	key      []byte
	secure   bool
	provider *oidc.Provider
}

// NewAuth discovers the provider (its /.well-known/openid-configuration)
// and returns the authenticator.
func NewAuth(ctx context.Context, cfg OIDCConfig, log *slog.Logger) (*Auth, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p, err := oidc.NewProvider(ctx, cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("OIDC provider %s: %w", cfg.Issuer, err)
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 8 * time.Hour
	}
	if cfg.APIAudience == "" {
		cfg.APIAudience = cfg.ClientID
	}
	key := cfg.SessionKey
	if len(key) == 0 {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
	}
	u, _ := url.Parse(cfg.RedirectURL)
	return &Auth{
		cfg: cfg, log: log, provider: p, key: key, secure: u.Scheme == "https",
		oauth: oauth2.Config{ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, RedirectURL: cfg.RedirectURL,
			Endpoint: p.Endpoint(), Scopes: []string{oidc.ScopeOpenID, "profile", "email"}},
		users:   p.Verifier(&oidc.Config{ClientID: cfg.ClientID}),
		bearers: p.Verifier(&oidc.Config{ClientID: cfg.APIAudience}),
	}, nil
}

// Routes registers /auth/login, /auth/callback and /auth/logout on mux.
func (a *Auth) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /auth/login", a.login)
	mux.HandleFunc("GET /auth/callback", a.callback)
	mux.HandleFunc("GET /auth/logout", a.logout)
}

const (
	sessionCookie = "furrow_session"
	loginCookie   = "furrow_login"
)

// login starts the authorization code flow; state and nonce travel in a
// short-lived cookie.
func (a *Auth) login(w http.ResponseWriter, r *http.Request) {
	state, nonce := randomString(), randomString()
	next := r.URL.Query().Get("next")
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") {
		next = "/"
	}
	v, _ := json.Marshal(loginState{State: state, Nonce: nonce, Next: next})
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: a.sign(v), Path: "/auth/", MaxAge: 600, HttpOnly: true,
		Secure: a.secure, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, a.oauth.AuthCodeURL(state, oidc.Nonce(nonce)), http.StatusFound)
}

type loginState struct {
	State, Nonce, Next string
}

func (a *Auth) callback(w http.ResponseWriter, r *http.Request) {
	ck, err := r.Cookie(loginCookie)
	var ls loginState
	if err == nil {
		err = a.verify(ck.Value, &ls)
	}
	if err != nil || ls.State == "" || subtle.ConstantTimeCompare([]byte(ls.State), []byte(r.URL.Query().Get("state"))) != 1 {
		http.Error(w, "sign-in failed: the login state does not match; start again at /auth/login", http.StatusBadRequest)
		return
	}
	if e := r.URL.Query().Get("error"); e != "" {
		http.Error(w, "sign-in failed: the provider said "+e+": "+r.URL.Query().Get("error_description"), http.StatusUnauthorized)
		return
	}
	tok, err := a.oauth.Exchange(r.Context(), r.URL.Query().Get("code"))
	if err != nil {
		a.log.Warn("OIDC code exchange failed", "err", err)
		http.Error(w, "sign-in failed: the code exchange failed", http.StatusUnauthorized)
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := a.users.Verify(r.Context(), raw)
	if err != nil || subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(ls.Nonce)) != 1 {
		a.log.Warn("OIDC ID token refused", "err", err)
		http.Error(w, "sign-in failed: the ID token is not valid", http.StatusUnauthorized)
		return
	}
	id, err := a.identity(idt)
	if err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	exp := time.Now().Add(a.cfg.SessionTTL)
	v, _ := json.Marshal(session{Identity: *id, Exp: exp.Unix()})
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: a.sign(v), Path: "/", Expires: exp, HttpOnly: true,
		Secure: a.secure, SameSite: http.SameSiteLaxMode})
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Path: "/auth/", MaxAge: -1})
	a.log.Info("console sign-in", "user", id.Who(), "roles", fmt.Sprint(id.Roles))
	http.Redirect(w, r, ls.Next, http.StatusFound)
}

func (a *Auth) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Path: "/", MaxAge: -1})
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = fmt.Fprint(w, `<!doctype html><title>Signed out</title><p>Signed out of the Furrow console. <a href="/auth/login">Sign in again</a>.</p>`)
}

type session struct {
	Identity
	Exp int64
}

// identity maps a verified token's claims to a Furrow identity. A user
// whose claims give no Furrow role is refused.
func (a *Auth) identity(t *oidc.IDToken) (*Identity, error) {
	var claims map[string]any
	if err := t.Claims(&claims); err != nil {
		return nil, err
	}
	id := &Identity{Subject: t.Subject}
	id.Name, _ = claims["name"].(string)
	id.Email, _ = claims["email"].(string)
	for _, v := range claimValues(claims, a.cfg.RoleClaim) {
		r, ok := serve.ParseRole(v)
		if mapped, m := a.cfg.RoleMap[v]; m {
			r, ok = mapped, true
		}
		if ok && !slices.Contains(id.Roles, r) {
			id.Roles = append(id.Roles, r)
		}
	}
	if len(id.Roles) == 0 {
		return nil, fmt.Errorf("%s has no Furrow role: claim %q holds none of platform, finance, operator", id.Who(), a.cfg.RoleClaim)
	}
	return id, nil
}

// claimValues reads a claim by dotted path as a list of strings.
func claimValues(claims map[string]any, path string) []string {
	var v any = claims
	for part := range strings.SplitSeq(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[part]
	}
	switch x := v.(type) {
	case string:
		return strings.FieldsFunc(x, func(r rune) bool { return r == ' ' || r == ',' })
	case []any:
		var out []string
		for _, e := range x {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// Console requires a signed-in user: without a valid session a page
// request is sent to sign in.
func (a *Auth) Console(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var s session
		ck, err := r.Cookie(sessionCookie)
		if err == nil {
			err = a.verify(ck.Value, &s)
		}
		if err != nil || time.Now().Unix() > s.Exp {
			if r.Method != http.MethodGet || r.Header.Get("HX-Request") == "true" {
				http.Error(w, "sign in first: /auth/login", http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, "/auth/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusFound)
			return
		}
		next.ServeHTTP(w, r.WithContext(WithIdentity(r.Context(), &s.Identity)))
	})
}

// API requires a bearer token the provider signed for APIAudience; its
// role claim decides, per call, what Authorize lets through. Session
// cookies are not accepted here: an API that cookies authenticate would
// need CSRF protection too.
func (a *Auth) API(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || raw == "" {
			writeHTTPError(w, status.New(codes.Unauthenticated, "send an OIDC bearer token: Authorization: Bearer <token>"))
			return
		}
		t, err := a.bearers.Verify(r.Context(), strings.TrimSpace(raw))
		if err != nil {
			writeHTTPError(w, status.New(codes.Unauthenticated, "the bearer token is not valid: "+err.Error()))
			return
		}
		id, err := a.identity(t)
		if err != nil {
			writeHTTPError(w, status.New(codes.PermissionDenied, err.Error()))
			return
		}
		next.ServeHTTP(w, r.WithContext(WithIdentity(r.Context(), id)))
	})
}

// writeHTTPError answers with a google.rpc.Status JSON body, as the
// transcoder does.
func writeHTTPError(w http.ResponseWriter, st *status.Status) {
	b, _ := json.Marshal(map[string]any{"code": int(st.Code()), "message": st.Message(), "details": []any{}})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(StatusFromCode(st.Code()))
	_, _ = w.Write(b)
}

func (a *Auth) sign(v []byte) string {
	m := hmac.New(sha256.New, a.key)
	m.Write(v)
	return base64.RawURLEncoding.EncodeToString(v) + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (a *Auth) verify(s string, into any) error {
	p, sig, ok := strings.Cut(s, ".")
	if !ok {
		return errors.New("malformed cookie")
	}
	v, err1 := base64.RawURLEncoding.DecodeString(p)
	got, err2 := base64.RawURLEncoding.DecodeString(sig)
	if err1 != nil || err2 != nil {
		return errors.New("malformed cookie")
	}
	m := hmac.New(sha256.New, a.key)
	m.Write(v)
	if !hmac.Equal(got, m.Sum(nil)) {
		return errors.New("cookie signature does not match")
	}
	return json.Unmarshal(v, into)
}

func randomString() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
