package prodtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/credentials"

	brandv1 "github.com/furrow/furrow/proto/furrow/brand/v1"

	"github.com/furrow/furrow/pkg/serve"
)

// natsTLSLines are the commented TLS lines of deploy/nats/nats-N.conf that
// deploy/README.md says to uncomment, for routes and for clients.
var natsTLSLines = []string{
	"  # tls { cert_file: /certs/nats.crt, key_file: /certs/nats.key, ca_file: /certs/ca.crt, verify: true }",
	"# tls { cert_file: /certs/nats.crt, key_file: /certs/nats.key }",
}

// TestNATSTLSWithFurrowCerts follows deploy/README.md's NATS TLS steps
// end to end: `furrow certs` writes the certificates, the three nodes of
// deploy/nats run with the documented tls blocks uncommented (clients, and
// routes with verify: true, where each node presents nats.crt as a client
// too), `furrow admin streams apply` provisions the log over TLS with
// --nats-ca, and a service binary given tls:// URLs and --nats-ca appends
// and reads. A plaintext client is refused, and every stream's replicas are
// current, so the routes carry the cluster over TLS.
func TestNATSTLSWithFurrowCerts(t *testing.T) {
	needs(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dsn, _ := postgresSchema(t)

	certs := filepath.Join(t.TempDir(), "certs")
	if out, errOut, err := furrowCLI(t, nil, "certs", "--dir", certs); err != nil {
		t.Fatalf("furrow certs: %v\n%s%s", err, out, errOut)
	}
	caFile := filepath.Join(certs, "ca.crt")
	cluster := startDeployClusterWith(t, func(conf string) string {
		for _, line := range natsTLSLines {
			if !strings.Contains(conf, line+"\n") {
				t.Fatalf("nats-N.conf no longer has the TLS line deploy/README.md says to uncomment:\n%s", line)
			}
			on := strings.Replace(line, "# ", "", 1)
			conf = strings.Replace(conf, line, strings.ReplaceAll(on, "/certs/", certs+"/"), 1)
		}
		return conf
	})
	tlsURLs := strings.ReplaceAll(cluster.urls, "nats://", "tls://")

	// The admin step over TLS, as an operator would run it.
	out, errOut, err := furrowCLI(t, []string{"FURROW_NATS_PASSWORD=" + natsPasswords["admin"]}, "admin", "streams", "apply",
		"--nats-url", tlsURLs, "--nats-user", "admin", "--nats-ca", caFile,
		"--monitor-url", strings.Join(cluster.monitors, ","), "--replicas", "3")
	if err != nil {
		t.Fatalf("furrow admin streams apply over TLS: %v\n%s%s", err, out, errOut)
	}

	brand := start(t, "brand-incubation", binaries["brand-incubation"],
		[]string{"FURROW_POSTGRES_DSN=" + dsn, "FURROW_NATS_PASSWORD=" + natsPasswords["brand"]},
		"--nats-url", tlsURLs, "--nats-user", "brand", "--nats-ca", caFile, "--stream-replicas", "3",
		"--tls-cert", filepath.Join(certs, "server.crt"), "--tls-key", filepath.Join(certs, "server.key"), "--tls-client-ca", caFile)
	platform, err := serve.ClientTLS(caFile, filepath.Join(certs, "platform.crt"), filepath.Join(certs, "platform.key"))
	if err != nil {
		t.Fatal(err)
	}
	client := brandv1.NewBrandServiceClient(dialWith(t, brand.grpcAddr, credentials.NewTLS(platform)))
	if _, err := client.RegisterBrand(ctx, &brandv1.RegisterBrandRequest{
		RequestId: "reg-xunwu", BrandId: "xunwu-navel", Kind: brandv1.BrandKind_BRAND_KIND_REGIONAL_PRODUCT,
		Name: "Xunwu Navel Orange", County: "Xunwu", ProductCategory: "citrus",
	}); err != nil {
		t.Fatalf("RegisterBrand over a NATS TLS connection: %v", err)
	}
	got, err := client.GetBrand(ctx, &brandv1.GetBrandRequest{BrandId: "xunwu-navel"})
	if err != nil || got.GetBrand().GetName() != "Xunwu Navel Orange" {
		t.Fatalf("GetBrand = %v, %v; want the registered brand", got, err)
	}
	if strings.Contains(brand.output(), "NATS without TLS") {
		t.Errorf("brand-incubation warns of NATS without TLS while given tls:// URLs:\n%s", brand.output())
	}

	// The event is on all three nodes: the routes (TLS, verified both ways)
	// carry it.
	js, err := jetstream.New(cluster.connect(t, "operator", nats.RootCAs(caFile)))
	if err != nil {
		t.Fatal(err)
	}
	for {
		st, err := js.Stream(ctx, "BRAND")
		if err != nil {
			t.Fatal(err)
		}
		info := st.CachedInfo()
		current := 0
		if info.Cluster != nil {
			for _, r := range info.Cluster.Replicas {
				if r.Current {
					current++
				}
			}
		}
		if info.State.Msgs >= 1 && current == 2 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("BRAND: %d messages, cluster %+v; want the event on a leader and 2 current replicas", info.State.Msgs, info.Cluster)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Plaintext is refused, now that the nodes are up: a node asks every
	// client for TLS (nats.go would upgrade on its own, so speak the
	// protocol by hand) and answers no plaintext CONNECT.
	addr := strings.TrimPrefix(strings.Split(cluster.urls, ",")[0], "nats://")
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(conn)
	info, err := r.ReadString('\n')
	if err != nil || !strings.Contains(info, `"tls_required":true`) {
		t.Errorf("a node's INFO = %q, %v; want tls_required", info, err)
	}
	fmt.Fprintf(conn, "CONNECT {\"user\":\"operator\",\"pass\":%q,\"verbose\":false}\r\nPING\r\n", natsPasswords["operator"])
	if answer, _ := io.ReadAll(r); strings.Contains(string(answer), "PONG") {
		t.Errorf("a node answered a plaintext CONNECT: %q", answer)
	} else {
		t.Logf("plaintext CONNECT refused: %q", answer)
	}
}
