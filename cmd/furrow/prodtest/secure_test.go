package prodtest

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/furrow/furrow/proto/furrow/admin/v1"
	brandv1 "github.com/furrow/furrow/proto/furrow/brand/v1"
	ledgerv1 "github.com/furrow/furrow/proto/furrow/ledger/v1"
	procurementv1 "github.com/furrow/furrow/proto/furrow/procurement/v1"

	"github.com/furrow/furrow/pkg/devcert"
	"github.com/furrow/furrow/pkg/eventstore"
	"github.com/furrow/furrow/pkg/grpcx"
	"github.com/furrow/furrow/pkg/natstest"
	"github.com/furrow/furrow/pkg/serve"
)

// natsPasswords are the test's values of the variables accounts.conf
// reads.
var natsPasswords = map[string]string{
	"procurement": "pw-procurement", "brand": "pw-brand", "ledger": "pw-ledger",
	"operator": "pw-operator", "admin": "pw-admin", "sys": "pw-sys",
}

// TestSecureSettings runs the three binaries the way production does but
// on one node: each service as its own NATS user of deploy/nats/accounts.conf
// (the file itself), on streams the admin user provisioned, gRPC with
// mutual TLS. Clients holding platform,
// finance and operator certificates get what the role table gives them;
// the services work within their NATS permissions (no violations logged),
// and a service user can neither write another service's events nor delete
// a stream.
func TestSecureSettings(t *testing.T) {
	needs(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dsn, _ := postgresSchema(t)

	accounts, err := os.ReadFile(filepath.Join("..", "..", "..", "deploy", "nats", "accounts.conf"))
	if err != nil {
		t.Fatal(err)
	}
	var serverEnv []string
	for user, pw := range natsPasswords {
		serverEnv = append(serverEnv, "NATS_"+strings.ToUpper(user)+"_PASSWORD="+pw)
	}
	srv := natstest.StandaloneWith(t, natstest.Options{
		Config: "include ./accounts.conf", Files: map[string][]byte{"accounts.conf": accounts}, Env: serverEnv,
		ConnectOptions: []nats.Option{nats.UserInfo("operator", natsPasswords["operator"])},
	})

	// The admin step, before the services start: they only verify.
	adminNC, err := nats.Connect(srv.URLs[0], nats.UserInfo("admin", natsPasswords["admin"]))
	if err != nil {
		t.Fatal(err)
	}
	defer adminNC.Close()
	adminJS, err := jetstream.New(adminNC)
	if err != nil {
		t.Fatal(err)
	}
	provisionLog(ctx, t, adminJS, 1)

	pki := newPKI(t)
	serverPair, err := pki.ca.Server("furrow", "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	serverCert, serverKey := pki.pair(t, "server", serverPair)
	tlsArgs := []string{"--tls-cert", serverCert, "--tls-key", serverKey, "--tls-client-ca", pki.caFile}
	service := func(name, user string, extra ...string) *proc {
		args := append([]string{"--nats-url", srv.URLs[0], "--nats-user", user,
			// One node holds one replica: the only setting relaxed here.
			"--stream-replicas", "1", "--allow-few-replicas"}, tlsArgs...)
		return start(t, name, binaries[name], []string{"FURROW_POSTGRES_DSN=" + dsn, "FURROW_NATS_PASSWORD=" + natsPasswords[user]},
			append(args, extra...)...)
	}
	// Without its override, the simulated provider is refused by name.
	out := startFailing(t, "farmer-ledger", binaries["farmer-ledger"], []string{"FURROW_POSTGRES_DSN=" + dsn, "FURROW_NATS_PASSWORD=" + natsPasswords["ledger"]},
		append([]string{"--nats-url", srv.URLs[0], "--nats-user", "ledger", "--stream-replicas", "1", "--allow-few-replicas", "--payment-provider", "simulated"}, tlsArgs...)...)
	if !strings.Contains(out, "refusing to start: unsafe settings: --payment-provider=simulated pays nobody; it needs --allow-simulated-provider") {
		t.Errorf("farmer-ledger with the simulator but not --allow-simulated-provider: want a refusal naming the override, got:\n%s", out)
	}
	procurement := service("procurement", "procurement")
	brand := service("brand-incubation", "brand")
	ledger := service("farmer-ledger", "ledger", "--payment-provider", "simulated", "--allow-simulated-provider")
	procs := []*proc{procurement, brand, ledger}
	// Each override in effect is a WARN line saying what it weakens; the
	// deprecated --insecure-dev is not in use.
	for _, p := range procs {
		want := []string{"level=WARN msg=\"unsafe override in effect\" service=" + p.name + " override=--allow-few-replicas"}
		if p == ledger {
			want = append(want, "override=--allow-simulated-provider weakens=\"--payment-provider=simulated: payouts go to a simulator")
		}
		for _, w := range want {
			if !strings.Contains(p.output(), w) {
				t.Errorf("%s's start-up log lacks %q:\n%s", p.name, w, p.output())
			}
		}
		if strings.Contains(p.output(), "deprecated") || strings.Contains(p.output(), "allow-plaintext-grpc") {
			t.Errorf("%s logged an override it was not given:\n%s", p.name, p.output())
		}
	}

	platform := pki.client(t, "shop-backend", serve.RolePlatform)
	finance := pki.client(t, "finance-desk", serve.RoleFinance)
	operator := pki.client(t, "on-call", serve.RoleOperator)
	anonymous := pki.client(t, "")

	// The slice, as a platform backend holding a platform certificate.
	ledgerAsPlatform := ledgerv1.NewLedgerServiceClient(dialWith(t, ledger.grpcAddr, platform))
	// The actor is the certificate's name, not what the client claims.
	claims := metadata.AppendToOutgoingContext(ctx, grpcx.MDActor, "mallory")
	if _, err := ledgerAsPlatform.RegisterFarmer(claims, &ledgerv1.RegisterFarmerRequest{
		RequestId: "reg-F1", FarmerId: "F1", Name: "Wang Fang", County: "Xunwu", PayoutAccount: "6222020000000001",
	}); err != nil {
		t.Fatal(err)
	}
	rec, err := procurementv1.NewProcurementServiceClient(dialWith(t, procurement.grpcAddr, platform)).RecordDelivery(ctx,
		&procurementv1.RecordDeliveryRequest{RequestId: "wh7-1", FarmerId: "F1", Product: "xunwu-navel-orange",
			Grade: "A", NetGrams: 12345, PriceFenPerKg: 680})
	if err != nil {
		t.Fatal(err)
	}
	bal, err := ledgerAsPlatform.GetFarmerBalance(ctx, &ledgerv1.GetFarmerBalanceRequest{FarmerId: "F1", MinPosition: rec.GetPosition()})
	if err != nil || bal.GetAvailableFen() != 8395 {
		t.Fatalf("GetFarmerBalance = %v, %v; want 8395 fen available", bal, err)
	}
	if _, err := brandv1.NewBrandServiceClient(dialWith(t, brand.grpcAddr, platform)).RegisterBrand(ctx, &brandv1.RegisterBrandRequest{
		RequestId: "reg-xunwu", BrandId: "xunwu-navel", Kind: brandv1.BrandKind_BRAND_KIND_REGIONAL_PRODUCT,
		Name: "Xunwu Navel Orange", County: "Xunwu", ProductCategory: "citrus",
	}); err != nil {
		t.Fatalf("RegisterBrand: %v", err)
	}
	premiumsAndPayout(ctx, t, brandv1.NewBrandServiceClient(dialWith(t, brand.grpcAddr, platform)), ledgerAsPlatform, rec.GetDeliveryId())

	// Roles.
	expect := func(what string, err error, code codes.Code) {
		t.Helper()
		if status.Code(err) != code {
			t.Errorf("%s: %v, want %v", what, err, code)
		}
	}
	_, err = ledgerAsPlatform.GetTrialBalance(ctx, &ledgerv1.GetTrialBalanceRequest{})
	expect("GetTrialBalance as platform", err, codes.PermissionDenied)
	_, err = ledgerv1.NewLedgerServiceClient(dialWith(t, ledger.grpcAddr, finance)).GetTrialBalance(ctx, &ledgerv1.GetTrialBalanceRequest{})
	expect("GetTrialBalance as finance", err, codes.OK)
	_, err = ledgerv1.NewLedgerServiceClient(dialWith(t, ledger.grpcAddr, anonymous)).GetFarmer(ctx, &ledgerv1.GetFarmerRequest{FarmerId: "F1"})
	expect("GetFarmer without a certificate", err, codes.Unauthenticated)
	_, err = healthpb.NewHealthClient(dialWith(t, ledger.grpcAddr, anonymous)).Check(ctx, &healthpb.HealthCheckRequest{})
	expect("health check without a certificate", err, codes.OK)
	_, err = adminv1.NewAdminServiceClient(dialWith(t, ledger.grpcAddr, platform)).ListStreams(ctx, &adminv1.ListStreamsRequest{})
	expect("ListStreams as platform", err, codes.PermissionDenied)

	// The operator's AdminService works within the ledger user's NATS
	// permissions.
	adm := adminv1.NewAdminServiceClient(dialWith(t, ledger.grpcAddr, operator))
	streams, err := adm.ListStreams(ctx, &adminv1.ListStreamsRequest{})
	if err != nil {
		t.Fatalf("ListStreams as operator: %v", err)
	}
	var names []string
	for _, s := range streams.GetStreams() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{"PROCUREMENT", "BRAND", "LEDGER", "DEADLETTER"} {
		if !slices.Contains(names, want) {
			t.Errorf("ListStreams = %v, want %s among them", names, want)
		}
	}
	// A projection parks poison events on deadletter.projection.<name>:
	// each service's NATS user must be allowed that subject for each of its
	// projections (a new projection needs a line in accounts.conf).
	for _, p := range []struct {
		proc *proc
		user string
	}{{procurement, "procurement"}, {brand, "brand"}, {ledger, "ledger"}} {
		res, err := adminv1.NewAdminServiceClient(dialWith(t, p.proc.grpcAddr, operator)).ListProjections(ctx, &adminv1.ListProjectionsRequest{})
		if err != nil {
			t.Fatalf("ListProjections on %s as operator: %v", p.proc.name, err)
		}
		block := userBlock(t, string(accounts), p.user)
		for _, proj := range res.GetProjections() {
			if subject := `"deadletter.projection.` + proj.GetName() + `"`; !strings.Contains(block, subject) {
				t.Errorf("accounts.conf: user %s may not publish %s, where projection %s parks poison events", p.user, subject, proj.GetName())
			}
		}
	}
	if _, err := adm.ListDeadLetters(ctx, &adminv1.ListDeadLettersRequest{}); err != nil {
		t.Errorf("ListDeadLetters as operator: %v", err)
	}

	// The ledger event carries the certificate's name as its actor.
	opNC := srv.Connect(t)
	opJS, err := jetstream.New(opNC)
	if err != nil {
		t.Fatal(err)
	}
	ledgerStream, err := opJS.Stream(ctx, "LEDGER")
	if err != nil {
		t.Fatal(err)
	}
	first, err := ledgerStream.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := first.Header.Get(eventstore.HeaderActor); got != "shop-backend" {
		t.Errorf("actor of the FarmerRegistered event = %q, want shop-backend (from the certificate)", got)
	}

	// A service's NATS user cannot write another's history nor delete.
	procNC, err := nats.Connect(srv.URLs[0], nats.UserInfo("procurement", natsPasswords["procurement"]),
		nats.CustomInboxPrefix("_INBOX_procurement"))
	if err != nil {
		t.Fatal(err)
	}
	defer procNC.Close()
	procJS, err := jetstream.New(procNC)
	if err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
	_, err = procJS.Publish(pctx, "ledger.farmer.F1.farmer_registered", []byte("forged"))
	pcancel()
	if err == nil {
		t.Error("the procurement user published on ledger.>")
	}
	for user, js := range map[string]jetstream.JetStream{"procurement": procJS, "operator": opJS} {
		dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
		err := js.DeleteStream(dctx, "LEDGER")
		dcancel()
		if err == nil {
			t.Errorf("the %s user deleted the LEDGER stream", user)
		}
	}
	info, err := ledgerStream.Info(ctx)
	if err != nil || info.State.Msgs == 0 {
		t.Errorf("LEDGER after the attempts: %v, %v", info, err)
	}

	for _, p := range procs {
		if err := p.stop(t); err != nil {
			t.Errorf("%s after SIGTERM: %v", p.name, err)
		}
		if out := strings.ToLower(p.output()); strings.Contains(out, "permissions violation") || strings.Contains(out, "authorization violation") {
			t.Errorf("%s ran into its NATS permissions:\n%s", p.name, p.output())
		}
	}
}

// premiumsAndPayout runs the flows that cross services through every
// handler, durable consumer and cross-stream read: brand incubation looks
// the farmer up in LEDGER and the delivery in its projection of
// PROCUREMENT, the ledger posts the premium (its durable on BRAND) and the
// revision's adjustment (brand's re-rating durable first), and pays out
// (the payout saga's durable on LEDGER). The farmer F1 and its delivery
// (12,345 g) exist.
func premiumsAndPayout(ctx context.Context, t *testing.T, brands brandv1.BrandServiceClient, ledger ledgerv1.LedgerServiceClient, deliveryID string) {
	t.Helper()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	day := func(d time.Duration) string { return time.Now().Add(d).UTC().Format(time.DateOnly) }
	const brandID = "xunwu-navel"
	_, err := brands.RegisterChannel(ctx, &brandv1.RegisterChannelRequest{RequestId: "channel-hema", ChannelId: "hema", Name: "Hema Fresh"})
	must("RegisterChannel", err)
	_, err = brands.EnrolFarmer(ctx, &brandv1.EnrolFarmerRequest{RequestId: "enrol-F1", BrandId: brandID, FarmerId: "F1",
		EnrolledFrom: day(-30 * 24 * time.Hour), Certificate: "GI-XUNWU-0001"})
	must("EnrolFarmer", err)
	_, err = brands.SetPremiumRule(ctx, &brandv1.SetPremiumRuleRequest{RequestId: "rule-hema", BrandId: brandID, Channel: "hema",
		RuleId: "hema-1", FenPerKg: 100, EffectiveFrom: day(-30 * 24 * time.Hour), EffectiveTo: day(150 * 24 * time.Hour)})
	must("SetPremiumRule", err)
	sale, err := brands.ReportSales(ctx, &brandv1.ReportSalesRequest{ReportId: "hema-w1", Revision: 1, Channel: "hema",
		Lines: []*brandv1.SaleLine{{LineId: "1", BrandId: brandID, DeliveryId: deliveryID, Grams: 12345,
			SoldAt: timestamppb.New(time.Now().Add(-48 * time.Hour))}}})
	must("ReportSales", err)
	if sale.GetPremiumFen() != 1234 { // 12,345 g × 100 fen/kg, half-to-even
		t.Fatalf("ReportSales premium = %d fen, want 1234", sale.GetPremiumFen())
	}
	bal, err := ledger.GetFarmerBalance(ctx, &ledgerv1.GetFarmerBalanceRequest{FarmerId: "F1", MinPosition: sale.GetPosition()})
	must("GetFarmerBalance after the sale", err)
	if bal.GetPremiumsFen() != 1234 {
		t.Fatalf("premiums after the sale = %d fen, want 1234", bal.GetPremiumsFen())
	}
	_, err = brands.ReviseRule(ctx, &brandv1.ReviseRuleRequest{RequestId: "revise-hema", BrandId: brandID, Channel: "hema",
		RuleId: "hema-1", FenPerKg: 120, RevisedFrom: day(-10 * 24 * time.Hour), Reason: "shelf price raised"})
	must("ReviseRule", err)
	eventually(ctx, t, "the revision's adjustment in the ledger (premiums 1481 fen)", func() bool {
		bal, err := ledger.GetFarmerBalance(ctx, &ledgerv1.GetFarmerBalanceRequest{FarmerId: "F1"})
		return err == nil && bal.GetPremiumsFen() == 1481 // 12,345 g × 120 fen/kg
	})
	payout, err := ledger.RequestPayout(ctx, &ledgerv1.RequestPayoutRequest{RequestId: "payout-F1-1", FarmerId: "F1",
		Amount: &ledgerv1.RequestPayoutRequest_AmountFen{AmountFen: 1000}})
	must("RequestPayout", err)
	eventually(ctx, t, "the payout settled", func() bool {
		res, err := ledger.GetPayout(ctx, &ledgerv1.GetPayoutRequest{PayoutId: payout.GetPayout().GetPayoutId()})
		return err == nil && res.GetPayout().GetStatus() == ledgerv1.PayoutStatus_PAYOUT_STATUS_SETTLED
	})
}

// eventually polls cond until it holds, failing t when ctx ends first.
func eventually(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// userBlock returns the part of accounts.conf that configures user.
func userBlock(t *testing.T, accounts, user string) string {
	t.Helper()
	start := strings.Index(accounts, "user: "+user+",")
	if start < 0 {
		t.Fatalf("accounts.conf has no user %s", user)
	}
	block := accounts[start:]
	if end := strings.Index(block[1:], "user: "); end >= 0 {
		block = block[:end+1]
	}
	return block
}

// testPKI is a throwaway CA and the files servers and clients need.
type testPKI struct {
	dir, caFile string
	ca          *devcert.CA
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	ca, err := devcert.NewCA("furrow prodtest CA")
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{dir: t.TempDir(), ca: ca}
	p.caFile = p.write(t, "ca.crt", ca.CertPEM)
	return p
}

func (p *testPKI) write(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (p *testPKI) pair(t *testing.T, name string, pair devcert.Pair) (cert, key string) {
	t.Helper()
	return p.write(t, name+".crt", pair.CertPEM), p.write(t, name+".key", pair.KeyPEM)
}

// client returns credentials with a certificate named cn holding roles;
// an empty cn presents no certificate.
func (p *testPKI) client(t *testing.T, cn string, roles ...serve.Role) credentials.TransportCredentials {
	t.Helper()
	var cert, key string
	if cn != "" {
		var pair devcert.Pair
		var err error
		uris := make([]*url.URL, 0, len(roles))
		for _, r := range roles {
			uris = append(uris, serve.RoleURI(r))
		}
		if pair, err = p.ca.Client(cn, uris...); err != nil {
			t.Fatal(err)
		}
		cert, key = p.pair(t, "client-"+cn, pair)
	}
	cfg, err := serve.ClientTLS(p.caFile, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return credentials.NewTLS(cfg)
}
