package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	adminv1 "github.com/furrow/furrow/proto/furrow/admin/v1"
	brandv1 "github.com/furrow/furrow/proto/furrow/brand/v1"
	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
	procurementv1 "github.com/furrow/furrow/proto/furrow/procurement/v1"

	"github.com/furrow/furrow/pkg/grpcx"
	"github.com/furrow/furrow/pkg/httpapi"
	"github.com/furrow/furrow/pkg/serve"

	"github.com/furrow/furrow/cmd/furrow/internal/console"
)

const consoleUsage = `Usage: furrow console [flags]

Serves the web console and the HTTP/JSON API (OpenAPI at /openapi.json) of a
production deployment: a gateway in front of the procurement,
brand-incubation and farmer-ledger services' gRPC APIs. It refuses to start
without OpenID Connect: console users sign in with the provider, backends
send a bearer token, and a claim (--oidc-role-claim) gives each its roles
(platform, finance, operator), checked per call against the same role table
as gRPC. The gateway calls the services with its own client certificate
(--tls-*), which must carry every role it forwards. AdminService calls over
HTTP go to the service named by the Furrow-Service header (procurement,
brand-incubation or farmer-ledger; default farmer-ledger). See
deploy/README.md.

Secrets come from the environment: FURROW_OIDC_CLIENT_SECRET,
FURROW_CONSOLE_SESSION_KEY (at least 32 bytes; replicas share it).

Flags (environment variable in brackets):
`

// consoleConfig is everything `furrow console` is told.
type consoleConfig struct {
	HTTPAddr                   string
	Procurement, Brand, Ledger string
	TLS                        clientTLS
	OIDC                       httpapi.OIDCConfig
	InsecureDev                bool
	LogLevel                   slog.Level
	ShutdownTimeout            time.Duration
}

func parseConsoleConfig(args []string, stderr io.Writer, getenv func(string) string) (consoleConfig, error) {
	fs := flag.NewFlagSet("furrow console", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, consoleUsage)
		fs.PrintDefaults()
	}
	var cfg consoleConfig
	fs.StringVar(&cfg.HTTPAddr, "http-addr", envOr(getenv, "FURROW_HTTP_ADDR", ":7080"), "listen address of the console and HTTP API [FURROW_HTTP_ADDR]")
	fs.StringVar(&cfg.Procurement, "procurement-addr", getenv("FURROW_PROCUREMENT_ADDR"), "gRPC address of the procurement service [FURROW_PROCUREMENT_ADDR]")
	fs.StringVar(&cfg.Brand, "brand-addr", getenv("FURROW_BRAND_ADDR"), "gRPC address of the brand-incubation service [FURROW_BRAND_ADDR]")
	fs.StringVar(&cfg.Ledger, "ledger-addr", getenv("FURROW_LEDGER_ADDR"), "gRPC address of the farmer-ledger service [FURROW_LEDGER_ADDR]")
	cfg.TLS.register(fs, getenv)
	fs.StringVar(&cfg.OIDC.Issuer, "oidc-issuer", getenv("FURROW_OIDC_ISSUER"), "OpenID Connect issuer URL [FURROW_OIDC_ISSUER]")
	fs.StringVar(&cfg.OIDC.ClientID, "oidc-client-id", getenv("FURROW_OIDC_CLIENT_ID"), "the console's OIDC client id (secret in FURROW_OIDC_CLIENT_SECRET) [FURROW_OIDC_CLIENT_ID]")
	fs.StringVar(&cfg.OIDC.RedirectURL, "oidc-redirect-url", getenv("FURROW_OIDC_REDIRECT_URL"), "public callback URL, https://<console>/auth/callback [FURROW_OIDC_REDIRECT_URL]")
	fs.StringVar(&cfg.OIDC.RoleClaim, "oidc-role-claim", getenv("FURROW_OIDC_ROLE_CLAIM"), `claim holding the roles, e.g. "furrow_roles" or "realm_access.roles" [FURROW_OIDC_ROLE_CLAIM]`)
	roleMap := fs.String("oidc-role-map", getenv("FURROW_OIDC_ROLE_MAP"), `claim values to roles, e.g. "ops-team=operator,finance-team=finance" [FURROW_OIDC_ROLE_MAP]`)
	fs.StringVar(&cfg.OIDC.APIAudience, "oidc-api-audience", getenv("FURROW_OIDC_API_AUDIENCE"), "audience of API bearer tokens (default: the client id) [FURROW_OIDC_API_AUDIENCE]")
	fs.BoolVar(&cfg.InsecureDev, "insecure-dev", getenv("FURROW_INSECURE_DEV") == "1", "allow plain gRPC to the services and an http:// redirect URL (never no sign-in) [FURROW_INSECURE_DEV=1]")
	level := fs.String("log-level", envOr(getenv, "FURROW_LOG_LEVEL", "info"), "log level [FURROW_LOG_LEVEL]")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 20*time.Second, "how long in-flight requests may take on shutdown")
	if err := fs.Parse(args); err != nil {
		return consoleConfig{}, asUsage(err)
	}
	if fs.NArg() > 0 {
		return consoleConfig{}, usagef("furrow console takes no arguments, got %q", strings.Join(fs.Args(), " "))
	}
	if err := cfg.LogLevel.UnmarshalText([]byte(*level)); err != nil {
		return consoleConfig{}, fmt.Errorf("--log-level: %w", err)
	}
	cfg.OIDC.ClientSecret = getenv("FURROW_OIDC_CLIENT_SECRET")
	cfg.OIDC.SessionKey = []byte(getenv("FURROW_CONSOLE_SESSION_KEY"))
	cfg.OIDC.Insecure = cfg.InsecureDev
	if *roleMap != "" {
		cfg.OIDC.RoleMap = map[string]serve.Role{}
		for kv := range strings.SplitSeq(*roleMap, ",") {
			k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
			if !ok {
				return consoleConfig{}, fmt.Errorf("--oidc-role-map %q: want value=role pairs", kv)
			}
			cfg.OIDC.RoleMap[k] = serve.Role(v)
		}
	}
	return cfg, cfg.validate()
}

// validate refuses to serve without sign-in, whatever else is set, and
// plain gRPC to the services unless --insecure-dev.
func (c consoleConfig) validate() error {
	if err := c.OIDC.Validate(); err != nil {
		return err
	}
	var bad []string
	for name, addr := range map[string]string{"--procurement-addr": c.Procurement, "--brand-addr": c.Brand, "--ledger-addr": c.Ledger} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			bad = append(bad, fmt.Sprintf("%s %q: want host:port", name, addr))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("bad configuration:\n  - %s", strings.Join(bad, "\n  - "))
	}
	if c.TLS.ca == "" && !c.InsecureDev {
		return fmt.Errorf("refusing to start: %w: gRPC to the services without TLS: set --tls-ca, --tls-cert and --tls-key (a client certificate with the roles the console forwards), or pass --insecure-dev", serve.ErrUnsafe)
	}
	return nil
}

func runConsole(ctx context.Context, cfg consoleConfig, stdout, stderr io.Writer) error {
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	srv, lis, closeConns, err := startConsole(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeConns()
	fmt.Fprintf(stdout, "Furrow console is serving on http://%s/ (HTTP/JSON API under /v1, OpenAPI at /openapi.json; sign-in with %s)\n",
		lis.Addr(), cfg.OIDC.Issuer)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	return srv.Shutdown(sctx)
}

// startConsole builds the gateway and listens; the caller serves.
func startConsole(ctx context.Context, cfg consoleConfig, log *slog.Logger) (*http.Server, net.Listener, func(), error) {
	if err := cfg.validate(); err != nil {
		return nil, nil, nil, err
	}
	auth, err := httpapi.NewAuth(ctx, cfg.OIDC, log)
	if err != nil {
		return nil, nil, nil, err
	}
	var tlsCfg *tls.Config
	dial := grpc.WithTransportCredentials(insecure.NewCredentials())
	if cfg.TLS.ca != "" {
		if tlsCfg, err = serve.ClientTLS(cfg.TLS.ca, cfg.TLS.cert, cfg.TLS.key); err != nil {
			return nil, nil, nil, err
		}
		dial = grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg.Clone()))
	}
	var conns []*grpc.ClientConn
	closeConns := func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}
	conn := func(addr string) *grpc.ClientConn {
		c, err2 := grpc.NewClient(addr, dial, grpc.WithDefaultServiceConfig(grpcx.RetryServiceConfig))
		if err2 != nil && err == nil {
			err = err2
		}
		conns = append(conns, c)
		return c
	}
	proc, brand, ledger := conn(cfg.Procurement), conn(cfg.Brand), conn(cfg.Ledger)
	if err != nil {
		closeConns()
		return nil, nil, nil, err
	}
	backends := map[string]http.Handler{
		procurementv1.ProcurementService_ServiceDesc.ServiceName: httpapi.Authorize(httpapi.Proxy(cfg.Procurement, tlsCfg)),
		brandv1.BrandService_ServiceDesc.ServiceName:             httpapi.Authorize(httpapi.Proxy(cfg.Brand, tlsCfg)),
		ledgerv1.LedgerService_ServiceDesc.ServiceName:           httpapi.Authorize(httpapi.Proxy(cfg.Ledger, tlsCfg)),
		adminv1.AdminService_ServiceDesc.ServiceName: httpapi.Authorize(adminRouter(map[string]http.Handler{
			"procurement":      httpapi.Proxy(cfg.Procurement, tlsCfg),
			"brand-incubation": httpapi.Proxy(cfg.Brand, tlsCfg),
			"farmer-ledger":    httpapi.Proxy(cfg.Ledger, tlsCfg),
		})),
	}
	api, err := httpapi.New(func(svc string) http.Handler { return backends[svc] })
	if err != nil {
		closeConns()
		return nil, nil, nil, err
	}
	con, err := console.New(console.Config{Log: log, LogoutPath: "/auth/logout", Backends: console.Backends{
		Procurement: proc, Brand: brand, Ledger: ledger,
		Admin: []console.AdminBackend{{Name: "procurement", Conn: proc}, {Name: "brand-incubation", Conn: brand}, {Name: "farmer-ledger", Conn: ledger}},
	}})
	if err != nil {
		closeConns()
		return nil, nil, nil, err
	}
	mux := http.NewServeMux()
	auth.Routes(mux)
	httpapi.Routes(mux, auth.API(api))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.Handle("/", auth.Console(con))
	lis, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		closeConns()
		return nil, nil, nil, fmt.Errorf("console listen on %s: %w", cfg.HTTPAddr, err)
	}
	return &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, lis, closeConns, nil
}

// adminRouter sends an AdminService call to the process named by the
// Furrow-Service header: each service's process serves the AdminService
// over its own projections and handlers.
func adminRouter(byService map[string]http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.Header.Get("Furrow-Service")
		if name == "" {
			name = "farmer-ledger"
		}
		h, ok := byService[name]
		if !ok {
			w.Header().Set("Content-Type", "application/grpc")
			w.Header().Set("Grpc-Status", "3")
			w.Header().Set("Grpc-Message", "Furrow-Service: want procurement, brand-incubation or farmer-ledger")
			w.WriteHeader(http.StatusOK)
			return
		}
		h.ServeHTTP(w, r)
	})
}
