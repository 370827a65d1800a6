// Package console is Furrow's web console for operators, finance and brand
// managers: server-rendered Go templates with htmx for live parts and
// forms, charts drawn by Chart.js, everything embedded in the binary
// (go:embed), so it needs no CDN and works offline.
//
// The console has no business logic and no store of its own: every page
// calls the services through their gRPC clients (Backends), so what it
// shows is what the API answers, and what it changes goes through the same
// commands, validation and role table as any client. Outside furrow dev a
// signed-in user's roles are checked against the gRPC role table
// (serve.Allow) before each call.
//
// Every state-changing form carries a CSRF token (double submit: a cookie
// and a form field or X-CSRF-Token header that must match), and
// cross-origin POSTs are refused.
package console

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/furrow/furrow/pkg/grpcx"
	"github.com/furrow/furrow/pkg/httpapi"
	"github.com/furrow/furrow/pkg/serve"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Config configures the console.
type Config struct {
	Backends Backends
	Log      *slog.Logger
	// Dev: furrow dev on loopback, no login: every visitor has every role.
	// Otherwise the request's context must carry the signed-in user
	// (httpapi.WithIdentity), whose roles decide each call.
	Dev bool
	// LogoutPath, if set, is linked from the header (OIDC sign-out).
	LogoutPath string
}

// devIdentity is the visitor of furrow dev's console.
var devIdentity = &httpapi.Identity{Subject: "dev", Name: "dev",
	Roles: []serve.Role{serve.RolePlatform, serve.RoleFinance, serve.RoleOperator}}

// Console serves the console's pages.
type Console struct {
	cfg   Config
	log   *slog.Logger
	c     clients
	pages map[string]*template.Template

	// mu guards the per-process caches below: stream samples for the
	// message rates and the settlement files uploaded for reconciliation.
	mu      sync.Mutex
	samples map[string]streamSample
	recons  map[string]*reconRun
	reconsQ []string
}

// New returns the console.
func New(cfg Config) (*Console, error) {
	b := cfg.Backends
	if b.Procurement == nil || b.Brand == nil || b.Ledger == nil || len(b.Admin) == 0 {
		return nil, errors.New("console: every backend is required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if !cfg.Dev {
		b.Procurement, b.Brand, b.Ledger = guard(b.Procurement), guard(b.Brand), guard(b.Ledger)
		admins := make([]AdminBackend, len(b.Admin))
		for i, a := range b.Admin {
			admins[i] = AdminBackend{Name: a.Name, Conn: guard(a.Conn)}
		}
		b.Admin = admins
	}
	c := &Console{cfg: cfg, log: cfg.Log, c: newClients(b), samples: map[string]streamSample{}, recons: map[string]*reconRun{}}
	if err := c.parse(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Console) parse() error {
	c.pages = map[string]*template.Template{}
	entries, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return err
	}
	base := template.New("").Funcs(funcs)
	if _, err := base.ParseFS(templateFS, "templates/layout.html", "templates/parts.html"); err != nil {
		return fmt.Errorf("console templates: %w", err)
	}
	for _, e := range entries {
		name := strings.TrimSuffix(strings.TrimPrefix(e, "templates/"), ".html")
		if name == "layout" || name == "parts" {
			continue
		}
		t, err := base.Clone()
		if err != nil {
			return err
		}
		if _, err := t.ParseFS(templateFS, e); err != nil {
			return fmt.Errorf("console template %s: %w", name, err)
		}
		c.pages[name] = t
	}
	return nil
}

// ServeHTTP serves the console: identity (furrow dev), CSRF, routes.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if c.cfg.Dev && httpapi.IdentityFrom(r.Context()) == nil {
		r = r.WithContext(httpapi.WithIdentity(r.Context(), devIdentity))
	}
	token, err := csrfToken(w, r)
	if err != nil {
		http.Error(w, "CSRF token: "+err.Error(), http.StatusInternalServerError)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if err := checkCSRF(r, token); err != nil {
			c.log.Warn("console refused a request", "path", r.URL.Path, "reason", err.Error())
			http.Error(w, "Forbidden: "+err.Error(), http.StatusForbidden)
			return
		}
	}
	r = r.WithContext(context.WithValue(r.Context(), csrfKey{}, token))
	c.routes().ServeHTTP(w, r)
}

func (c *Console) routes() *http.ServeMux {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", cacheStatic(http.FileServerFS(static))))
	mux.HandleFunc("GET /{$}", c.overview)
	mux.HandleFunc("GET /overview/live", c.overviewLive)
	mux.HandleFunc("GET /events", c.events)
	mux.HandleFunc("GET /events/{stream}/{seq}", c.event)
	mux.HandleFunc("GET /events/by-id/{id}", c.eventByID)
	mux.HandleFunc("GET /projections", c.projections)
	mux.HandleFunc("GET /projections/{name}", c.projection)
	mux.HandleFunc("GET /projections/{name}/progress", c.projectionProgress)
	mux.HandleFunc("GET /projections/{name}/diff", c.projectionDiff)
	mux.HandleFunc("POST /projections/{name}/{action}", c.projectionAction)
	mux.HandleFunc("GET /dead-letters", c.deadLetters)
	mux.HandleFunc("GET /dead-letters/{seq}", c.deadLetter)
	mux.HandleFunc("POST /dead-letters/{seq}/redrive", c.redrive)
	mux.HandleFunc("GET /farmers", c.farmers)
	mux.HandleFunc("GET /farmers/{id}", c.farmer)
	mux.HandleFunc("GET /farmers/{id}/statement.csv", c.statementCSV)
	mux.HandleFunc("GET /finance", c.finance)
	mux.HandleFunc("POST /finance/reconciliations", c.reconcileUpload)
	mux.HandleFunc("GET /finance/reconciliations/{token}", c.reconciliation)
	mux.HandleFunc("POST /finance/reconciliations/{token}/rerun", c.reconcileRerun)
	mux.HandleFunc("POST /finance/reconciliations/{token}/breaks/{id}/resolve", c.resolveBreak)
	mux.HandleFunc("GET /brands", c.brands)
	mux.HandleFunc("GET /brands/{id}", c.brand)
	mux.HandleFunc("GET /brands/{id}/preview", c.previewRevision)
	mux.HandleFunc("POST /brands/{id}/revise", c.reviseRule)
	mux.HandleFunc("GET /procurement", c.procurement)
	return mux
}

func cacheStatic(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		next.ServeHTTP(w, r)
	})
}

// page is what every page template gets.
type page struct {
	Title  string
	Nav    string
	User   *httpapi.Identity
	CSRF   string
	Logout string
	Flash  string
	// Errs are calls that failed, shown above the content.
	Errs []string
	Data any
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, name, title, nav string, data any, errs ...error) {
	c.renderTemplate(w, r, name, "layout", page{Title: title, Nav: nav, Data: data}, errs...)
}

// fragment renders a page's "fragment" template alone (an htmx swap).
func (c *Console) fragment(w http.ResponseWriter, r *http.Request, name string, data any, errs ...error) {
	c.renderTemplate(w, r, name, "fragment", page{Data: data}, errs...)
}

func (c *Console) renderTemplate(w http.ResponseWriter, r *http.Request, name, tmpl string, p page, errs ...error) {
	t := c.pages[name]
	if t == nil {
		http.Error(w, "no template "+name, http.StatusInternalServerError)
		return
	}
	p.User = httpapi.IdentityFrom(r.Context())
	p.CSRF, _ = r.Context().Value(csrfKey{}).(string)
	p.Logout = c.cfg.LogoutPath
	p.Flash = r.URL.Query().Get("flash")
	for _, err := range errs {
		if err != nil {
			p.Errs = append(p.Errs, errText(err))
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'")
	if err := t.ExecuteTemplate(w, tmpl, p); err != nil {
		c.log.Error("console template failed", "template", name, "err", err)
	}
}

// errText is what a page says about a failed call: its status code and
// message (which names the field for INVALID_ARGUMENT).
func errText(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return err.Error()
	}
	return st.Code().String() + ": " + st.Message()
}

// redirect answers a form post: to an htmx request with HX-Redirect, to a
// browser with 303 See Other.
func redirect(w http.ResponseWriter, r *http.Request, to, flash string) {
	if flash != "" {
		sep := "?"
		if strings.Contains(to, "?") {
			sep = "&"
		}
		to += sep + "flash=" + url.QueryEscape(flash)
	}
	if r.Header.Get("HX-Request") == "true" {
		w.Header().Set("HX-Redirect", to)
		return
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// rpcCtx bounds a page's calls.
func rpcCtx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), 15*time.Second)
}

type csrfKey struct{}

const csrfCookie = "furrow_csrf"

// csrfToken returns the visitor's CSRF token, setting its cookie on first
// visit.
func csrfToken(w http.ResponseWriter, r *http.Request) (string, error) {
	if ck, err := r.Cookie(csrfCookie); err == nil && len(ck.Value) >= 32 {
		return ck.Value, nil
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	tok := base64.RawURLEncoding.EncodeToString(b)
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: tok, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	// The cookie is new: the request cannot carry a matching field.
	r.AddCookie(&http.Cookie{Name: csrfCookie, Value: tok})
	return tok, nil
}

// checkCSRF refuses a state-changing request from another origin, or
// without the visitor's token in the csrf field or X-CSRF-Token header.
func checkCSRF(r *http.Request, token string) error {
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return fmt.Errorf("cross-origin request from %q", o)
		}
	}
	got := r.Header.Get("X-CSRF-Token")
	if got == "" {
		got = r.FormValue("csrf") // parses multipart forms too
	}
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
		return errors.New("missing or wrong CSRF token: reload the page and try again")
	}
	return nil
}

// guard wraps a connection so that every call first passes the gRPC role
// table for the signed-in user (serve.Allow), and carries the user as the
// command's actor.
func guard(cc grpc.ClientConnInterface) grpc.ClientConnInterface { return guarded{cc} }

type guarded struct{ grpc.ClientConnInterface }

func (g guarded) authorize(ctx context.Context, method string) (context.Context, error) {
	id := httpapi.IdentityFrom(ctx)
	if id == nil {
		return nil, status.Error(codes.Unauthenticated, "sign in first")
	}
	if err := serve.Allow(method, id.Who(), id.Roles); err != nil {
		return nil, err
	}
	return metadata.AppendToOutgoingContext(ctx, grpcx.MDActor, id.Who(),
		grpcx.MDOnBehalfOf, id.Who(), grpcx.MDOnBehalfRoles, id.RoleList()), nil
}

func (g guarded) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	ctx, err := g.authorize(ctx, method)
	if err != nil {
		return err
	}
	return g.ClientConnInterface.Invoke(ctx, method, args, reply, opts...)
}

func (g guarded) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	ctx, err := g.authorize(ctx, method)
	if err != nil {
		return nil, err
	}
	return g.ClientConnInterface.NewStream(ctx, desc, method, opts...)
}

// actorCtx names the console's user as the actor of a command in furrow
// dev (outside dev, guard does).
func (c *Console) actorCtx(ctx context.Context) context.Context {
	if !c.cfg.Dev {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, grpcx.MDActor, "console:"+httpapi.IdentityFrom(ctx).Who())
}
