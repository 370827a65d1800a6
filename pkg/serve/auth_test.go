package serve

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	adminv1 "github.com/furrow/furrow/proto/furrow/admin/v1"
	brandv1 "github.com/furrow/furrow/proto/furrow/brand/v1"
	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
	procurementv1 "github.com/furrow/furrow/proto/furrow/procurement/v1"

	"github.com/furrow/furrow/pkg/devcert"
	"github.com/furrow/furrow/pkg/grpcx"
)

// fakeLedger answers the calls the tests make and records the actor the
// auth interceptor handed on.
type fakeLedger struct {
	ledgerv1.UnimplementedLedgerServiceServer
	mu     sync.Mutex
	actors []string
	roles  []string
}

func (f *fakeLedger) RegisterFarmer(ctx context.Context, _ *ledgerv1.RegisterFarmerRequest) (*ledgerv1.RegisterFarmerResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	f.actors = append(f.actors, strings.Join(md.Get(grpcx.MDActor), ","))
	f.roles = append(f.roles, strings.Join(grpcx.CallerRoles(ctx), ","))
	f.mu.Unlock()
	return &ledgerv1.RegisterFarmerResponse{}, nil
}

func (f *fakeLedger) GetFarmerBalance(context.Context, *ledgerv1.GetFarmerBalanceRequest) (*ledgerv1.GetFarmerBalanceResponse, error) {
	return &ledgerv1.GetFarmerBalanceResponse{}, nil
}

func (f *fakeLedger) GetTrialBalance(context.Context, *ledgerv1.GetTrialBalanceRequest) (*ledgerv1.GetTrialBalanceResponse, error) {
	return &ledgerv1.GetTrialBalanceResponse{}, nil
}

type fakeAdmin struct {
	adminv1.UnimplementedAdminServiceServer
}

func (fakeAdmin) ListStreams(context.Context, *adminv1.ListStreamsRequest) (*adminv1.ListStreamsResponse, error) {
	return &adminv1.ListStreamsResponse{}, nil
}

func (fakeAdmin) TailEvents(*adminv1.TailEventsRequest, grpc.ServerStreamingServer[adminv1.TailEventsResponse]) error {
	return nil
}

// pki is a test CA with the files a server and its clients need.
type pki struct {
	dir string
	ca  *devcert.CA
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	ca, err := devcert.NewCA("furrow test CA")
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{dir: t.TempDir(), ca: ca}
	p.write(t, "ca.crt", ca.CertPEM)
	return p
}

func (p *pki) write(t testing.TB, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (p *pki) pair(t testing.TB, name string, pair devcert.Pair, err error) (cert, key string) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	return p.write(t, name+".crt", pair.CertPEM), p.write(t, name+".key", pair.KeyPEM)
}

// client dials addr with a certificate holding roles; no roles and no
// name means no client certificate at all.
func (p *pki) client(t testing.TB, addr, cn string, roles ...Role) *grpc.ClientConn {
	t.Helper()
	var cert, key string
	if cn != "" {
		var uris []*url.URL
		for _, r := range roles {
			uris = append(uris, RoleURI(r))
		}
		pair, err := p.ca.Client(cn, uris...)
		cert, key = p.pair(t, "client-"+cn, pair, err)
	}
	tlsCfg, err := ClientTLS(filepath.Join(p.dir, "ca.crt"), cert, key)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// startAuthServer serves the fake ledger and admin over mTLS on a loopback
// socket, with the role table enforced.
func startAuthServer(t testing.TB) (*pki, string, *fakeLedger) {
	t.Helper()
	p := newPKI(t)
	pair, err := p.ca.Server("furrow test server", "127.0.0.1", "localhost")
	cert, key := p.pair(t, "server", pair, err)
	tlsCfg, err := ServerTLS(cert, key, filepath.Join(p.dir, "ca.crt"), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsCfg)),
		grpc.ChainUnaryInterceptor(UnaryAuth()), grpc.ChainStreamInterceptor(StreamAuth()))
	ledger := &fakeLedger{}
	ledgerv1.RegisterLedgerServiceServer(srv, ledger)
	adminv1.RegisterAdminServiceServer(srv, fakeAdmin{})
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return p, lis.Addr().String(), ledger
}

// call makes one call of each kind the table distinguishes and returns
// its error.
type call struct {
	name string
	do   func(ctx context.Context, conn *grpc.ClientConn) error
}

var (
	registerFarmer = call{"RegisterFarmer", func(ctx context.Context, c *grpc.ClientConn) error {
		_, err := ledgerv1.NewLedgerServiceClient(c).RegisterFarmer(ctx, &ledgerv1.RegisterFarmerRequest{})
		return err
	}}
	getBalance = call{"GetFarmerBalance", func(ctx context.Context, c *grpc.ClientConn) error {
		_, err := ledgerv1.NewLedgerServiceClient(c).GetFarmerBalance(ctx, &ledgerv1.GetFarmerBalanceRequest{})
		return err
	}}
	trialBalance = call{"GetTrialBalance", func(ctx context.Context, c *grpc.ClientConn) error {
		_, err := ledgerv1.NewLedgerServiceClient(c).GetTrialBalance(ctx, &ledgerv1.GetTrialBalanceRequest{})
		return err
	}}
	listStreams = call{"ListStreams", func(ctx context.Context, c *grpc.ClientConn) error {
		_, err := adminv1.NewAdminServiceClient(c).ListStreams(ctx, &adminv1.ListStreamsRequest{})
		return err
	}}
	tailEvents = call{"TailEvents (stream)", func(ctx context.Context, c *grpc.ClientConn) error {
		s, err := adminv1.NewAdminServiceClient(c).TailEvents(ctx, &adminv1.TailEventsRequest{})
		if err != nil {
			return err
		}
		_, err = s.Recv()
		if errors.Is(err, io.EOF) {
			return nil // the fake ends the stream at once
		}
		return err
	}}
	healthCheck = call{"Health/Check", func(ctx context.Context, c *grpc.ClientConn) error {
		_, err := healthpb.NewHealthClient(c).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}}
)

// TestRolesOverMutualTLS calls the server as each kind of client over a
// real TLS connection and checks who gets through.
func TestRolesOverMutualTLS(t *testing.T) {
	t.Parallel()
	p, addr, _ := startAuthServer(t)
	type want struct {
		code codes.Code
		msg  string // part of the status message
	}
	ok := want{code: codes.OK}
	for _, tc := range []struct {
		client string
		roles  []Role
		calls  map[*call]want
	}{
		{client: "", calls: map[*call]want{ // no certificate
			&healthCheck:    ok,
			&registerFarmer: {codes.Unauthenticated, "needs a client certificate"},
			&listStreams:    {codes.Unauthenticated, "needs a client certificate"},
			&tailEvents:     {codes.Unauthenticated, "needs a client certificate"},
		}},
		{client: "shop-backend", roles: []Role{RolePlatform}, calls: map[*call]want{
			&registerFarmer: ok,
			&getBalance:     ok,
			&trialBalance:   {codes.PermissionDenied, "GetTrialBalance needs role finance; the client certificate \"shop-backend\" has roles [platform]"},
			&listStreams:    {codes.PermissionDenied, "needs role operator"},
			&tailEvents:     {codes.PermissionDenied, "needs role operator"},
			&healthCheck:    ok,
		}},
		{client: "finance-desk", roles: []Role{RoleFinance}, calls: map[*call]want{
			&trialBalance:   ok,
			&getBalance:     ok,
			&registerFarmer: {codes.PermissionDenied, "RegisterFarmer needs role platform"},
			&listStreams:    {codes.PermissionDenied, "needs role operator"},
		}},
		{client: "on-call", roles: []Role{RoleOperator}, calls: map[*call]want{
			&listStreams:    ok,
			&tailEvents:     ok,
			&registerFarmer: {codes.PermissionDenied, "needs role platform"},
			&getBalance:     {codes.PermissionDenied, "needs role platform or finance"},
		}},
		{client: "two-hats", roles: []Role{RoleFinance, RoleOperator}, calls: map[*call]want{
			&trialBalance:   ok,
			&listStreams:    ok,
			&registerFarmer: {codes.PermissionDenied, "has roles [finance operator]"},
		}},
		{client: "nobody", calls: map[*call]want{ // a valid certificate without a role
			&getBalance:  {codes.PermissionDenied, "has no Furrow role"},
			&healthCheck: ok,
		}},
	} {
		name := tc.client
		if name == "" {
			name = "no certificate"
		}
		t.Run(name, func(t *testing.T) {
			conn := p.client(t, addr, tc.client, tc.roles...)
			for c, w := range tc.calls {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := c.do(ctx, conn)
				cancel()
				st := status.Convert(err)
				if st.Code() != w.code || !strings.Contains(st.Message(), w.msg) {
					t.Errorf("%s: %v %q, want %v containing %q", c.name, st.Code(), st.Message(), w.code, w.msg)
				}
			}
		})
	}
}

// TestActorComesFromTheCertificate: the actor recorded on events is the
// certificate's name, whatever the client claims in its metadata.
func TestActorComesFromTheCertificate(t *testing.T) {
	t.Parallel()
	p, addr, ledger := startAuthServer(t)
	conn := p.client(t, addr, "shop-backend", RolePlatform)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, grpcx.MDActor, "mallory")
	if _, err := ledgerv1.NewLedgerServiceClient(conn).RegisterFarmer(ctx, &ledgerv1.RegisterFarmerRequest{}); err != nil {
		t.Fatal(err)
	}
	ledger.mu.Lock()
	defer ledger.mu.Unlock()
	if len(ledger.actors) != 1 || ledger.actors[0] != "shop-backend" {
		t.Errorf("actors = %q, want [shop-backend]", ledger.actors)
	}
}

// TestRolesComeFromTheCertificate: the roles a service sees (which decide
// whether it shows payout accounts unmasked) are the certificate's,
// whatever the client claims in its metadata.
func TestRolesComeFromTheCertificate(t *testing.T) {
	t.Parallel()
	p, addr, ledger := startAuthServer(t)
	conn := p.client(t, addr, "shop-backend", RolePlatform)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, grpcx.MDRoles, "finance")
	if _, err := ledgerv1.NewLedgerServiceClient(conn).RegisterFarmer(ctx, &ledgerv1.RegisterFarmerRequest{}); err != nil {
		t.Fatal(err)
	}
	ledger.mu.Lock()
	defer ledger.mu.Unlock()
	if len(ledger.roles) != 1 || ledger.roles[0] != "platform" {
		t.Errorf("roles = %q, want [platform]", ledger.roles)
	}
}

// TestForeignCertificateFailsTheHandshake: a certificate another CA signed
// gets no connection at all, whatever roles it claims.
func TestForeignCertificateFailsTheHandshake(t *testing.T) {
	t.Parallel()
	p, addr, ledger := startAuthServer(t)
	other := newPKI(t)
	pair, err := other.ca.Client("impostor", RoleURI(RolePlatform), RoleURI(RoleOperator))
	cert, key := other.pair(t, "impostor", pair, err)
	tlsCfg, err := ClientTLS(filepath.Join(p.dir, "ca.crt"), cert, key) // trusts the real server
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = registerFarmer.do(ctx, conn)
	if code := status.Code(err); code != codes.Unavailable {
		t.Errorf("RegisterFarmer with a foreign certificate: %v, want Unavailable (handshake refused)", err)
	}
	if len(ledger.actors) != 0 {
		t.Errorf("the handler ran for %q", ledger.actors)
	}
}

// TestRoleTableCoversEveryMethod: every method the services define has a
// row, and every row names a method that exists.
func TestRoleTableCoversEveryMethod(t *testing.T) {
	t.Parallel()
	defined := map[string]bool{}
	for _, sd := range []grpc.ServiceDesc{
		procurementv1.ProcurementService_ServiceDesc, brandv1.BrandService_ServiceDesc,
		ledgerv1.LedgerService_ServiceDesc, adminv1.AdminService_ServiceDesc, healthpb.Health_ServiceDesc,
	} {
		for _, m := range sd.Methods {
			defined["/"+sd.ServiceName+"/"+m.MethodName] = true
		}
		for _, s := range sd.Streams {
			defined["/"+sd.ServiceName+"/"+s.StreamName] = true
		}
	}
	defined[reflectionV1], defined[reflectionV1a1] = true, true
	for m := range defined {
		if _, ok := methodRoles[m]; !ok {
			t.Errorf("%s has no row in the role table: decide who may call it", m)
		}
	}
	for m, acc := range methodRoles {
		if !defined[m] {
			t.Errorf("the role table lists %s, which no service defines", m)
		}
		if !acc.noCert && len(acc.roles) == 0 {
			t.Errorf("%s: a row with no role and no exemption", m)
		}
		if acc.noCert && !strings.HasPrefix(m, "/grpc.health.v1.") {
			t.Errorf("%s is callable without a certificate; only health checks may be", m)
		}
	}
}

func TestRolesOf(t *testing.T) {
	t.Parallel()
	ca, err := devcert.NewCA("ca")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := url.Parse("spiffe://example.org/ns/furrow/sa/ledger")
	bogus, _ := url.Parse("furrow://role/root")
	pair, err := ca.Client("x", RoleURI(RoleFinance), other, bogus, RoleURI(RoleFinance), RoleURI(RoleOperator))
	if err != nil {
		t.Fatal(err)
	}
	tlsCert, err := loadCert(pair)
	if err != nil {
		t.Fatal(err)
	}
	got := RolesOf(tlsCert)
	if len(got) != 2 || got[0] != RoleFinance || got[1] != RoleOperator {
		t.Errorf("RolesOf = %v, want [finance operator]", got)
	}
	if RoleURI(RoleOperator).String() != "furrow://role/operator" {
		t.Errorf("RoleURI(operator) = %s", RoleURI(RoleOperator))
	}
}

func loadCert(p devcert.Pair) (*x509.Certificate, error) {
	block, _ := pem.Decode(p.CertPEM)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	return x509.ParseCertificate(block.Bytes)
}

// TestGatewayCallsOnBehalfOfItsUser: the console's gateway calls with its
// own certificate; before, every command it forwarded was recorded as the
// gateway's, with the gateway's roles, whoever had signed in (four-eyes
// saw one approver for every console user, and masking followed the
// gateway's roles). A certificate with the gateway role names the user
// (grpcx.MDOnBehalfOf) and the user's roles; the service records the user
// and grants only roles the gateway's certificate also holds. Any other
// certificate that names a user is refused.
func TestGatewayCallsOnBehalfOfItsUser(t *testing.T) {
	t.Parallel()
	p, addr, ledger := startAuthServer(t)
	gw := ledgerv1.NewLedgerServiceClient(p.client(t, addr, "console-gw", RoleGateway, RolePlatform, RoleFinance))
	backend := ledgerv1.NewLedgerServiceClient(p.client(t, addr, "shop-backend", RolePlatform))
	call := func(c ledgerv1.LedgerServiceClient, kv ...string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := c.RegisterFarmer(metadata.AppendToOutgoingContext(ctx, kv...), &ledgerv1.RegisterFarmerRequest{})
		return err
	}
	last := func() (string, string) {
		ledger.mu.Lock()
		defer ledger.mu.Unlock()
		return ledger.actors[len(ledger.actors)-1], ledger.roles[len(ledger.roles)-1]
	}
	// A platform user through the gateway: recorded as that user.
	if err := call(gw, grpcx.MDOnBehalfOf, "alice@example.com", grpcx.MDOnBehalfRoles, "platform,finance"); err != nil {
		t.Fatal(err)
	}
	if actor, roles := last(); actor != "alice@example.com via console-gw" || roles != "platform,finance" {
		t.Errorf("on behalf of alice: actor %q roles %q, want \"alice@example.com via console-gw\" and platform,finance", actor, roles)
	}
	// Roles the gateway's certificate lacks are not granted; a user with
	// neither of the method's roles is refused, though the gateway has them.
	if err := call(gw, grpcx.MDOnBehalfOf, "bob@example.com", grpcx.MDOnBehalfRoles, "platform,operator,gateway"); err != nil {
		t.Fatal(err)
	}
	if actor, roles := last(); actor != "bob@example.com via console-gw" || roles != "platform" {
		t.Errorf("on behalf of bob: actor %q roles %q, want platform only", actor, roles)
	}
	if err := call(gw, grpcx.MDOnBehalfOf, "carol@example.com", grpcx.MDOnBehalfRoles, "finance"); status.Code(err) != codes.PermissionDenied ||
		!strings.Contains(err.Error(), "carol@example.com via console-gw") {
		t.Errorf("a finance-only user registering a farmer through the gateway: %v, want PermissionDenied naming her", err)
	}
	// The gateway on its own account: its roles but the gateway role.
	if err := call(gw); err != nil {
		t.Fatal(err)
	}
	if actor, roles := last(); actor != "console-gw" || roles != "platform,finance" {
		t.Errorf("the gateway as itself: actor %q roles %q", actor, roles)
	}
	// Nobody else may name a user.
	if err := call(backend, grpcx.MDOnBehalfOf, "alice@example.com", grpcx.MDOnBehalfRoles, "platform"); status.Code(err) != codes.PermissionDenied {
		t.Errorf("a platform certificate naming a user: %v, want PermissionDenied", err)
	}
	if err := call(gw, grpcx.MDOnBehalfRoles, "platform"); status.Code(err) != codes.InvalidArgument {
		t.Errorf("roles without a user: %v, want InvalidArgument", err)
	}
}
