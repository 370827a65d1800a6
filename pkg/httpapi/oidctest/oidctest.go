// Package oidctest is a local OpenID Connect provider for tests: discovery,
// a JWKS with a key generated at start, an authorization endpoint that
// signs in a preset user at once (no login form), a token endpoint for the
// code flow, and bearer tokens minted on demand.
package oidctest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// User is who the provider signs in, with extra claims (the role claim).
type User struct {
	Subject, Name, Email string
	Claims               map[string]any
}

// Provider is a running test issuer.
type Provider struct {
	*httptest.Server
	ClientID, ClientSecret string

	key    *rsa.PrivateKey
	signer jose.Signer

	// mu guards user and codes.
	mu    sync.Mutex
	user  User
	codes map[string]string // code → nonce
}

// Start starts a provider; it stops when the test ends.
func Start(t testing.TB) *Provider {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "test-key"))
	if err != nil {
		t.Fatal(err)
	}
	p := &Provider{ClientID: "furrow-console", ClientSecret: "test-secret", key: key, signer: signer, codes: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", p.discovery)
	mux.HandleFunc("GET /jwks", p.jwks)
	mux.HandleFunc("GET /authorize", p.authorize)
	mux.HandleFunc("POST /token", p.token)
	p.Server = httptest.NewServer(mux)
	t.Cleanup(p.Close)
	return p
}

// SignIn sets the user the next authorization signs in.
func (p *Provider) SignIn(u User) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.user = u
}

// Token mints a token for u with audience aud, valid for ttl.
func (p *Provider) Token(t testing.TB, u User, aud string, ttl time.Duration) string {
	t.Helper()
	s, err := p.mint(u, aud, "", ttl)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (p *Provider) mint(u User, aud, nonce string, ttl time.Duration) (string, error) {
	now := time.Now()
	claims := map[string]any{"iss": p.URL, "sub": u.Subject, "aud": aud, "iat": now.Unix(), "exp": now.Add(ttl).Unix(),
		"name": u.Name, "email": u.Email}
	if nonce != "" {
		claims["nonce"] = nonce
	}
	for k, v := range u.Claims {
		claims[k] = v
	}
	b, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	jws, err := p.signer.Sign(b)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

func (p *Provider) discovery(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, map[string]any{
		"issuer": p.URL, "authorization_endpoint": p.URL + "/authorize", "token_endpoint": p.URL + "/token",
		"jwks_uri": p.URL + "/jwks", "response_types_supported": []string{"code"}, "subject_types_supported": []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
	})
}

func (p *Provider) jwks(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &p.key.PublicKey, KeyID: "test-key", Algorithm: "RS256", Use: "sig"}}})
}

// authorize signs the preset user in at once and sends the browser back
// with a code.
func (p *Provider) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("client_id") != p.ClientID || q.Get("response_type") != "code" {
		http.Error(w, "bad authorization request", http.StatusBadRequest)
		return
	}
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	code := base64.RawURLEncoding.EncodeToString(b)
	p.mu.Lock()
	p.codes[code] = q.Get("nonce")
	p.mu.Unlock()
	to, err := url.Parse(q.Get("redirect_uri"))
	if err != nil {
		http.Error(w, "bad redirect_uri", http.StatusBadRequest)
		return
	}
	v := to.Query()
	v.Set("code", code)
	v.Set("state", q.Get("state"))
	to.RawQuery = v.Encode()
	http.Redirect(w, r, to.String(), http.StatusFound)
}

func (p *Provider) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != p.ClientID || secret != p.ClientSecret {
		http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
		return
	}
	p.mu.Lock()
	nonce, ok := p.codes[r.PostForm.Get("code")]
	delete(p.codes, r.PostForm.Get("code"))
	u := p.user
	p.mu.Unlock()
	if !ok {
		http.Error(w, `{"error":"invalid_grant"}`, http.StatusBadRequest)
		return
	}
	idt, err := p.mint(u, p.ClientID, nonce, time.Hour)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, map[string]any{"access_token": "opaque-" + u.Subject, "token_type": "Bearer", "expires_in": 3600, "id_token": idt})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
