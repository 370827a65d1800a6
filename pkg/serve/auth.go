package serve

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	adminv1 "github.com/furrow/furrow/proto/furrow/admin/v1"
	brandv1 "github.com/furrow/furrow/proto/furrow/brand/v1"
	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
	procurementv1 "github.com/furrow/furrow/proto/furrow/procurement/v1"

	"github.com/furrow/furrow/pkg/grpcx"
)

// Role is what a client certificate lets its holder call.
type Role string

// The roles. A certificate may carry several.
const (
	// RolePlatform is a farm-platform backend: the commands and queries of
	// procurement, brand incubation and the ledger, except finance's.
	RolePlatform Role = "platform"
	// RoleFinance reconciles and reports: trial balance, statements,
	// reconciliation and its breaks, payouts, and every read.
	RoleFinance Role = "finance"
	// RoleOperator runs the AdminService: streams, events, projections,
	// dead letters.
	RoleOperator Role = "operator"
	// RoleGateway lets a certificate call on behalf of a signed-in user
	// (grpcx.MDOnBehalfOf): the web console and HTTP/JSON API gateway. The
	// user becomes the actor, and the user's roles, cut to the other roles
	// the gateway's certificate holds, decide the call. It grants no method
	// by itself.
	RoleGateway Role = "gateway"
)

// A certificate's roles are URI SANs of the form furrow://role/<role>
// (e.g. furrow://role/operator). URI SANs rather than the subject's OU:
// a certificate can carry several of them without parsing conventions,
// they cannot be confused with an organisational unit a CA fills in for
// other reasons, and CAs that issue SPIFFE-style identities already put
// identities there.
const (
	roleURIScheme = "furrow"
	roleURIHost   = "role"
)

// RoleURI is the URI SAN that gives a certificate role r.
func RoleURI(r Role) *url.URL {
	return &url.URL{Scheme: roleURIScheme, Host: roleURIHost, Path: "/" + string(r)}
}

// RolesOf returns the Furrow roles a certificate carries, in order, known
// roles only.
func RolesOf(cert *x509.Certificate) []Role {
	var roles []Role
	for _, u := range cert.URIs {
		if u.Scheme != roleURIScheme || u.Host != roleURIHost {
			continue
		}
		r := Role(strings.TrimPrefix(u.Path, "/"))
		switch r {
		case RolePlatform, RoleFinance, RoleOperator, RoleGateway:
			if !slices.Contains(roles, r) {
				roles = append(roles, r)
			}
		}
	}
	return roles
}

// access says who may call a method.
type access struct {
	// noCert: callable without a client certificate (health checks, so a
	// load balancer can probe without one).
	noCert bool
	roles  []Role
}

var (
	platformOnly   = access{roles: []Role{RolePlatform}}
	platformReads  = access{roles: []Role{RolePlatform, RoleFinance}}
	financeOnly    = access{roles: []Role{RoleFinance}}
	operatorOnly   = access{roles: []Role{RoleOperator}}
	anyRole        = access{roles: []Role{RolePlatform, RoleFinance, RoleOperator}}
	withoutCertOK  = access{noCert: true}
	reflectionV1   = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
	reflectionV1a1 = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
)

// methodRoles is the role table: every method a Furrow service serves and
// who may call it. A method missing from it is refused to everyone, so a
// new RPC stays closed until someone decides who may call it (a test checks
// that every method of the generated service descriptors is listed).
//
// RequestPayout is open to platform backends as well as finance: the design
// has platforms request payouts for their farmers. The finance-only
// methods are the ones that explain or settle money: statements, the trial
// balance, reconciliation and break resolution.
var methodRoles = map[string]access{
	// Procurement: platform writes, platform and finance read.
	procurementv1.ProcurementService_OpenProgram_FullMethodName:          platformOnly,
	procurementv1.ProcurementService_CloseProgram_FullMethodName:         platformOnly,
	procurementv1.ProcurementService_PlaceOrder_FullMethodName:           platformOnly,
	procurementv1.ProcurementService_CancelOrder_FullMethodName:          platformOnly,
	procurementv1.ProcurementService_RecordDelivery_FullMethodName:       platformOnly,
	procurementv1.ProcurementService_RecordDeliveries_FullMethodName:     platformOnly,
	procurementv1.ProcurementService_CorrectDelivery_FullMethodName:      platformOnly,
	procurementv1.ProcurementService_GetProgram_FullMethodName:           platformReads,
	procurementv1.ProcurementService_GetProgramProgress_FullMethodName:   platformReads,
	procurementv1.ProcurementService_GetOrder_FullMethodName:             platformReads,
	procurementv1.ProcurementService_ListOrders_FullMethodName:           platformReads,
	procurementv1.ProcurementService_GetDelivery_FullMethodName:          platformReads,
	procurementv1.ProcurementService_ListFarmerDeliveries_FullMethodName: platformReads,
	procurementv1.ProcurementService_ListCountyTotals_FullMethodName:     platformReads,
	procurementv1.ProcurementService_ListCentreIntake_FullMethodName:     platformReads,

	// Brand incubation: platform writes, platform and finance read.
	brandv1.BrandService_RegisterBrand_FullMethodName:      platformOnly,
	brandv1.BrandService_ChangeBrandStage_FullMethodName:   platformOnly,
	brandv1.BrandService_RegisterChannel_FullMethodName:    platformOnly,
	brandv1.BrandService_EnrolFarmer_FullMethodName:        platformOnly,
	brandv1.BrandService_SuspendFarmer_FullMethodName:      platformOnly,
	brandv1.BrandService_SetPremiumRule_FullMethodName:     platformOnly,
	brandv1.BrandService_ReviseRule_FullMethodName:         platformOnly,
	brandv1.BrandService_EndRule_FullMethodName:            platformOnly,
	brandv1.BrandService_ReportSales_FullMethodName:        platformOnly,
	brandv1.BrandService_GetBrand_FullMethodName:           platformReads,
	brandv1.BrandService_ListBrands_FullMethodName:         platformReads,
	brandv1.BrandService_ListChannels_FullMethodName:       platformReads,
	brandv1.BrandService_ListBrandFarmers_FullMethodName:   platformReads,
	brandv1.BrandService_PreviewRevision_FullMethodName:    platformReads,
	brandv1.BrandService_PreviewEndRule_FullMethodName:     platformReads,
	brandv1.BrandService_ListPremiumRules_FullMethodName:   platformReads,
	brandv1.BrandService_GetSalesReport_FullMethodName:     platformReads,
	brandv1.BrandService_ListFarmerPremiums_FullMethodName: platformReads,
	brandv1.BrandService_GetBrandDashboard_FullMethodName:  platformReads,

	// Ledger: platform registers farmers and requests payouts; finance
	// reconciles, reports and resolves breaks; both read.
	ledgerv1.LedgerService_RegisterFarmer_FullMethodName:      platformOnly,
	ledgerv1.LedgerService_UpdatePayoutAccount_FullMethodName: platformOnly,
	ledgerv1.LedgerService_RequestPayout_FullMethodName:       platformReads,
	ledgerv1.LedgerService_GetFarmer_FullMethodName:           platformReads,
	ledgerv1.LedgerService_GetFarmerBalance_FullMethodName:    platformReads,
	ledgerv1.LedgerService_ListFarmers_FullMethodName:         platformReads,
	ledgerv1.LedgerService_GetFarmerBalanceAt_FullMethodName:  platformReads,
	ledgerv1.LedgerService_GetPayout_FullMethodName:           platformReads,
	ledgerv1.LedgerService_ListPayouts_FullMethodName:         platformReads,
	ledgerv1.LedgerService_GetFarmerStatement_FullMethodName:  financeOnly,
	ledgerv1.LedgerService_GetTrialBalance_FullMethodName:     financeOnly,
	ledgerv1.LedgerService_ReconcilePayouts_FullMethodName:    financeOnly,
	ledgerv1.LedgerService_ResolvePayoutBreak_FullMethodName:  financeOnly,
	// Erasure is finance's: it is irreversible, and it decides about
	// money accounts (an erased farmer can no longer be paid out, and a
	// payout in flight blocks it), which finance owns. Operators run the
	// streams and projections and see no personal data; a platform
	// backend's certificate, used for every routine call, should not be
	// able to erase every farmer if it leaks.
	ledgerv1.LedgerService_EraseFarmer_FullMethodName: financeOnly,
	// Four-eyes: a payout above the threshold waits for a second
	// approver, who must hold the finance role (a platform backend, which
	// may request payouts, cannot release them) and be someone other than
	// the requester (the ledger checks the certificates' names).
	ledgerv1.LedgerService_ApprovePayout_FullMethodName: financeOnly,
	ledgerv1.LedgerService_RejectPayout_FullMethodName:  financeOnly,
	ledgerv1.LedgerService_TraceLot_FullMethodName:      platformReads,
	ledgerv1.LedgerService_TraceFarmer_FullMethodName:   platformReads,

	// Operators: the whole AdminService, and only they.
	adminv1.AdminService_ListStreams_FullMethodName:        operatorOnly,
	adminv1.AdminService_GetStream_FullMethodName:          operatorOnly,
	adminv1.AdminService_GetEvent_FullMethodName:           operatorOnly,
	adminv1.AdminService_ListEvents_FullMethodName:         operatorOnly,
	adminv1.AdminService_TailEvents_FullMethodName:         operatorOnly,
	adminv1.AdminService_ListProjections_FullMethodName:    operatorOnly,
	adminv1.AdminService_GetProjection_FullMethodName:      operatorOnly,
	adminv1.AdminService_WatchProjection_FullMethodName:    operatorOnly,
	adminv1.AdminService_RebuildProjection_FullMethodName:  operatorOnly,
	adminv1.AdminService_DiffProjection_FullMethodName:     operatorOnly,
	adminv1.AdminService_SwapProjection_FullMethodName:     operatorOnly,
	adminv1.AdminService_DropProjectionCopy_FullMethodName: operatorOnly,
	adminv1.AdminService_PauseProjection_FullMethodName:    operatorOnly,
	adminv1.AdminService_ResumeProjection_FullMethodName:   operatorOnly,
	adminv1.AdminService_ListDeadLetters_FullMethodName:    operatorOnly,
	adminv1.AdminService_GetDeadLetter_FullMethodName:      operatorOnly,
	adminv1.AdminService_RedriveDeadLetter_FullMethodName:  operatorOnly,

	// Plumbing: health checks without a certificate (probes), reflection
	// (grpcurl) for any Furrow role.
	healthpb.Health_Check_FullMethodName: withoutCertOK,
	healthpb.Health_Watch_FullMethodName: withoutCertOK,
	healthpb.Health_List_FullMethodName:  withoutCertOK,
	reflectionV1:                         anyRole,
	reflectionV1a1:                       anyRole,
}

// authorize decides a call to method from its peer's verified client
// certificate. On success it returns ctx with the caller's identity as the
// command actor (grpcx.MDActor), replacing whatever the client sent: in
// production the certificate says who acted, not the caller.
func authorize(ctx context.Context, method string) (context.Context, error) {
	acc, known := methodRoles[method]
	if !known {
		return nil, status.Errorf(codes.PermissionDenied, "%s is not in Furrow's role table: nobody may call it", method)
	}
	cert := peerCert(ctx)
	if cert == nil {
		if acc.noCert {
			return ctx, nil
		}
		return nil, status.Errorf(codes.Unauthenticated, "%s needs a client certificate signed by the client CA (mTLS)", method)
	}
	if acc.noCert {
		return ctx, nil
	}
	actor, roles, err := caller(ctx, cert)
	if err != nil {
		return nil, err
	}
	for _, r := range roles {
		if slices.Contains(acc.roles, r) {
			return withActor(ctx, actor, roles), nil
		}
	}
	have := "no Furrow role"
	if len(roles) > 0 {
		have = fmt.Sprintf("roles %v", roles)
	}
	who := fmt.Sprintf("the client certificate %q", identity(cert))
	if actor != identity(cert) {
		who = fmt.Sprintf("%q", actor)
	}
	return nil, status.Errorf(codes.PermissionDenied, "%s needs role %s; %s has %s",
		method, joinRoles(acc.roles), who, have)
}

// caller names who calls and with which roles: the certificate's holder
// and roles, or, for a gateway's certificate calling on behalf of a user
// (grpcx.MDOnBehalfOf), that user — named with the gateway, so the audit
// trail shows both — with the user's roles that the certificate also holds.
// Only a gateway may call on behalf of someone.
func caller(ctx context.Context, cert *x509.Certificate) (string, []Role, error) {
	certRoles := RolesOf(cert)
	in, _ := metadata.FromIncomingContext(ctx)
	user := strings.TrimSpace(strings.Join(in.Get(grpcx.MDOnBehalfOf), ""))
	isGateway := slices.Contains(certRoles, RoleGateway)
	own := slices.DeleteFunc(slices.Clone(certRoles), func(r Role) bool { return r == RoleGateway })
	if user == "" {
		if len(in.Get(grpcx.MDOnBehalfRoles)) > 0 {
			return "", nil, status.Errorf(codes.InvalidArgument, "%s names roles but no user", grpcx.MDOnBehalfRoles)
		}
		if isGateway {
			return identity(cert), own, nil
		}
		return identity(cert), certRoles, nil
	}
	if !isGateway {
		return "", nil, status.Errorf(codes.PermissionDenied, "the client certificate %q may not call on behalf of %q: that needs role %s",
			identity(cert), user, RoleGateway)
	}
	var roles []Role
	for _, v := range in.Get(grpcx.MDOnBehalfRoles) {
		for name := range strings.SplitSeq(v, ",") {
			r := Role(strings.TrimSpace(name))
			if r != RoleGateway && slices.Contains(own, r) && !slices.Contains(roles, r) {
				roles = append(roles, r)
			}
		}
	}
	return user + " via " + identity(cert), roles, nil
}

func joinRoles(roles []Role) string {
	s := make([]string, len(roles))
	for i, r := range roles {
		s[i] = string(r)
	}
	return strings.Join(s, " or ")
}

// peerCert returns the verified client certificate of the call, or nil.
func peerCert(ctx context.Context) *x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return nil
	}
	return info.State.VerifiedChains[0][0]
}

// identity names a certificate's holder: its common name, else its first
// DNS name, else its serial number (grpcx.CertIdentity, which the rate
// limit uses too).
func identity(cert *x509.Certificate) string { return grpcx.CertIdentity(cert) }

// withActor names the caller (grpcx.MDActor) and its roles (grpcx.MDRoles,
// which decide what services show unmasked) from its certificate,
// replacing whatever the client sent.
func withActor(ctx context.Context, actor string, roles []Role) context.Context {
	md, _ := metadata.FromIncomingContext(ctx)
	md = md.Copy()
	md.Set(grpcx.MDActor, actor)
	names := make([]string, len(roles))
	for i, r := range roles {
		names[i] = string(r)
	}
	md.Set(grpcx.MDRoles, strings.Join(names, ","))
	return metadata.NewIncomingContext(ctx, md)
}

// UnaryAuth enforces the role table on unary calls. Install it only on a
// server with mutual TLS (see ServerTLS).
func UnaryAuth() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		ctx, err := authorize(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
}

// StreamAuth enforces the role table on streaming calls.
func StreamAuth() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		ctx, err := authorize(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		return h(srv, &ctxStream{ServerStream: ss, ctx: ctx})
	}
}

type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *ctxStream) Context() context.Context { return s.ctx }

// ServerTLS is the gRPC server's TLS configuration: its certificate, and
// client certificates verified against the client CA. A client that
// presents a certificate the CA did not sign fails the handshake; one that
// presents none connects, and the role table refuses it everything but
// health checks (Unauthenticated), which a load balancer can then probe
// without a certificate.
//
// The files are read again when they change, without a restart: a
// handshake looks at them at most every tlsReloadEvery, and new handshakes
// use the new certificate and client CA (connections already open keep
// theirs). Files that do not load together (a pair half rotated, a key of
// another certificate) are logged at WARN and the previous ones kept. The
// files must load at the start.
func ServerTLS(certFile, keyFile, clientCAFile string, log *slog.Logger) (*tls.Config, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &tlsFiles{certFile: certFile, keyFile: keyFile, caFile: clientCAFile, log: log}
	raw, err := f.read()
	if err != nil {
		return nil, err
	}
	if f.cfg, err = f.parse(raw); err != nil {
		return nil, err
	}
	f.raw, f.checked = raw, time.Now()
	return &tls.Config{GetConfigForClient: f.forClient, MinVersion: tls.VersionTLS12}, nil
}

// tlsReloadEvery is how often, at most, ServerTLS's configuration reads
// its files again.
const tlsReloadEvery = time.Second

// tlsFiles is a server's TLS files and the configuration last loaded from
// them.
type tlsFiles struct {
	certFile, keyFile, caFile string
	log                       *slog.Logger

	mu      sync.Mutex
	checked time.Time // when the files were last read
	raw     [3][]byte // what cfg was loaded from
	failed  [3][]byte // the last contents that did not load (logged once)
	cfg     *tls.Config
}

// read reads the certificate, key and client CA files.
func (f *tlsFiles) read() ([3][]byte, error) {
	var raw [3][]byte
	for i, file := range []struct{ name, what string }{
		{f.certFile, "gRPC server certificate"}, {f.keyFile, "gRPC server certificate's key"}, {f.caFile, "client CA"},
	} {
		b, err := os.ReadFile(file.name)
		if err != nil {
			return raw, fmt.Errorf("%s: %w", file.what, err)
		}
		raw[i] = b
	}
	return raw, nil
}

// parse makes the configuration of one handshake from the files' contents.
func (f *tlsFiles) parse(raw [3][]byte) (*tls.Config, error) {
	cert, err := tls.X509KeyPair(raw[0], raw[1])
	if err != nil {
		return nil, fmt.Errorf("gRPC server certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(raw[2]) {
		return nil, fmt.Errorf("client CA: %s holds no PEM certificate", f.caFile)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.VerifyClientCertIfGiven,
		MinVersion:   tls.VersionTLS12,
	}, nil
}

// sameFiles says whether a and b hold the same contents.
func sameFiles(a, b [3][]byte) bool {
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// forClient is GetConfigForClient: the current configuration, reloaded
// first if the files changed since they were last read.
func (f *tlsFiles) forClient(*tls.ClientHelloInfo) (*tls.Config, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if time.Since(f.checked) < tlsReloadEvery {
		return f.cfg, nil
	}
	f.checked = time.Now()
	raw, err := f.read()
	if err != nil || sameFiles(raw, f.raw) {
		if err != nil {
			f.log.Warn("TLS files do not read; keeping the certificates loaded before", "cert", f.certFile, "err", err)
		}
		return f.cfg, nil
	}
	cfg, err := f.parse(raw)
	if err != nil {
		if !sameFiles(raw, f.failed) {
			f.log.Warn("TLS files changed but do not load; keeping the certificates loaded before", "cert", f.certFile, "err", err)
			f.failed = raw
		}
		return f.cfg, nil
	}
	f.cfg, f.raw = cfg, raw
	attrs := []any{"cert", f.certFile, "client_ca", f.caFile}
	if leaf, err := x509.ParseCertificate(cfg.Certificates[0].Certificate[0]); err == nil {
		attrs = append(attrs, "subject", leaf.Subject.CommonName, "not_after", leaf.NotAfter)
	}
	f.log.Info("TLS certificates reloaded", attrs...)
	return cfg, nil
}

// ClientTLS is a client's TLS configuration for calling Furrow: caFile
// verifies the server; certFile and keyFile (optional) are the client's
// certificate, which carries its roles.
func ClientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := loadPool(caFile)
		if err != nil {
			return nil, fmt.Errorf("server CA: %w", err)
		}
		cfg.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, fmt.Errorf("a client certificate needs both its certificate and its key file")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func loadPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}
