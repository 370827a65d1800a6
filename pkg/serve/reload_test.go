package serve

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/furrow/furrow/pkg/devcert"
)

// syncBuffer is a bytes.Buffer safe for a logger on another goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// serverSide is how a handshake ended on the server: an error, or the
// client certificate it verified (nil: none).
type serverSide struct {
	err    error
	client *x509.Certificate
}

// tlsProbe serves TLS with cfg on a loopback socket: each handshake's
// outcome on the server side goes to the returned channel.
func tlsProbe(t *testing.T, cfg *tls.Config) (string, <-chan serverSide) {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	results := make(chan serverSide, 16)
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			tc := c.(*tls.Conn)
			res := serverSide{err: tc.Handshake()}
			if peers := tc.ConnectionState().PeerCertificates; len(peers) > 0 {
				res.client = peers[0]
			}
			c.Close()
			results <- res
		}
	}()
	return lis.Addr().String(), results
}

// handshake dials addr trusting roots, presenting client (if any), and
// returns the serial number of the server's certificate and the server's
// side of the handshake.
func handshake(t *testing.T, addr string, results <-chan serverSide, roots *x509.CertPool, client *tls.Certificate) (*big.Int, serverSide) {
	t.Helper()
	cfg := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	if client != nil {
		cfg.Certificates = []tls.Certificate{*client}
	}
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	serial := conn.ConnectionState().PeerCertificates[0].SerialNumber
	conn.Close()
	select {
	case res := <-results:
		return serial, res
	case <-time.After(5 * time.Second):
		t.Fatal("the server did not finish the handshake")
		return nil, serverSide{}
	}
}

// TestServerTLSReloadsRotatedFiles: the gRPC server's certificate, key and
// client CA are read again when the files change (a rotation by
// cert-manager, a Secret update, `furrow certs` into a fresh volume), with
// no restart: new handshakes get the new certificate and the new CA's
// clients, the old CA's clients are refused. Files that do not load (a key
// half written, a mismatched pair) keep the previous ones.
func TestServerTLSReloadsRotatedFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile, caFile := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"), filepath.Join(dir, "ca.crt")
	write := func(name string, data []byte) {
		t.Helper()
		// As a rotation does: a new file renamed over the old one.
		tmp := name + ".tmp"
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, name); err != nil {
			t.Fatal(err)
		}
	}
	issue := func(name string) (*devcert.CA, devcert.Pair, tls.Certificate) {
		t.Helper()
		ca, err := devcert.NewCA(name)
		if err != nil {
			t.Fatal(err)
		}
		server, err := ca.Server("furrow", "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		c, err := ca.Client(name+"-client", RoleURI(RoleOperator))
		if err != nil {
			t.Fatal(err)
		}
		client, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return ca, server, client
	}
	serial := func(p devcert.Pair) *big.Int {
		c, err := tls.X509KeyPair(p.CertPEM, p.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf.SerialNumber
	}

	ca1, server1, client1 := issue("CA one")
	write(caFile, ca1.CertPEM)
	write(certFile, server1.CertPEM)
	write(keyFile, server1.KeyPEM)
	var logs syncBuffer
	cfg, err := ServerTLS(certFile, keyFile, caFile, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	addr, results := tlsProbe(t, cfg)
	roots := x509.NewCertPool()
	roots.AddCert(ca1.Cert)
	if got, res := handshake(t, addr, results, roots, &client1); res.err != nil || res.client == nil || got.Cmp(serial(server1)) != 0 {
		t.Fatalf("before the rotation: serial %v, %+v; want %v, the client verified", got, res, serial(server1))
	}

	// Rotate everything to a new CA.
	ca2, server2, client2 := issue("CA two")
	roots.AddCert(ca2.Cert)
	write(caFile, ca2.CertPEM)
	write(keyFile, server2.KeyPEM)
	write(certFile, server2.CertPEM)
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, res := handshake(t, addr, results, roots, &client2)
		if res.err == nil && res.client != nil && got.Cmp(serial(server2)) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10 s after the rotation the server still presents serial %v (want %v) or does not verify the new CA's client: %+v", got, serial(server2), res)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The old CA is not asked for, so the client sends no certificate:
	// the role table then refuses it (Unauthenticated).
	if _, res := handshake(t, addr, results, roots, &client1); res.err == nil && res.client != nil {
		t.Errorf("after the rotation the server verified a client of the old CA: %s", res.client.Subject)
	}

	// A broken rotation (the key of another pair) keeps what works.
	_, server3, _ := issue("CA three")
	write(keyFile, server3.KeyPEM)
	time.Sleep(1500 * time.Millisecond) // past the reload check's interval
	if got, res := handshake(t, addr, results, roots, &client2); res.err != nil || res.client == nil || got.Cmp(serial(server2)) != 0 {
		t.Errorf("after a broken rotation: serial %v, %+v; want %v still served", got, res, serial(server2))
	}
	for _, want := range []string{`msg="TLS certificates reloaded"`, `msg="TLS files changed but do not load; keeping the certificates loaded before"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log lacks %s:\n%s", want, logs.String())
		}
	}
}
