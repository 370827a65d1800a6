package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/furrow/furrow/pkg/serve"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestCertsWritesAUsablePKI: the server certificate verifies for its
// hosts, each client certificate carries its role, and a second run keeps
// what is there.
func TestCertsWritesAUsablePKI(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "certs")
	var out, errOut strings.Builder
	args := []string{"certs", "--dir", dir, "--hosts", "farmer-ledger, 127.0.0.1"}
	if err := run(context.Background(), args, &out, &errOut, func(string) string { return "" }); err != nil {
		t.Fatalf("furrow certs: %v\n%s", err, errOut.String())
	}
	roots := x509.NewCertPool()
	roots.AddCert(readCert(t, filepath.Join(dir, "ca.crt")))
	server := readCert(t, filepath.Join(dir, "server.crt"))
	for _, host := range []string{"farmer-ledger", "127.0.0.1"} {
		if _, err := server.Verify(x509.VerifyOptions{DNSName: host, Roots: roots}); err != nil {
			t.Errorf("server certificate for %s: %v", host, err)
		}
	}
	for _, r := range []serve.Role{serve.RolePlatform, serve.RoleFinance, serve.RoleOperator} {
		c := readCert(t, filepath.Join(dir, string(r)+".crt"))
		if got := serve.RolesOf(c); !slices.Equal(got, []serve.Role{r}) {
			t.Errorf("%s.crt roles = %v, want [%s]", r, got, r)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("%s.crt as a client certificate: %v", r, err)
		}
		if _, err := serve.ClientTLS(filepath.Join(dir, "ca.crt"), filepath.Join(dir, string(r)+".crt"), filepath.Join(dir, string(r)+".key")); err != nil {
			t.Errorf("%s key pair: %v", r, err)
		}
	}
	gw := readCert(t, filepath.Join(dir, "console.crt"))
	if got := serve.RolesOf(gw); !slices.Equal(got, []serve.Role{serve.RoleGateway, serve.RolePlatform, serve.RoleFinance, serve.RoleOperator}) {
		t.Errorf("console.crt roles = %v, want gateway and the three it forwards", got)
	}

	before, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	out.Reset()
	if err := run(context.Background(), args, &out, &errOut, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if string(before) != string(after) || !strings.Contains(out.String(), "keeping") {
		t.Errorf("second run replaced the CA (output %q)", out.String())
	}
}

// TestCertsServiceDirHoldsNoPrivateCAKey: --service-dir gets what the
// services and the NATS nodes mount (the CA certificate, the server and
// NATS key pairs) and no private key they must not hold: not the CA's,
// not a client's. A second run fills it from the kept CA.
func TestCertsServiceDirHoldsNoPrivateCAKey(t *testing.T) {
	t.Parallel()
	dir, svc := filepath.Join(t.TempDir(), "certs"), filepath.Join(t.TempDir(), "service-certs")
	args := []string{"certs", "--dir", dir, "--service-dir", svc}
	for range 2 {
		var out, errOut strings.Builder
		if err := run(context.Background(), args, &out, &errOut, func(string) string { return "" }); err != nil {
			t.Fatalf("furrow certs: %v\n%s", err, errOut.String())
		}
		entries, err := os.ReadDir(svc)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		want := []string{"ca.crt", "nats.crt", "nats.key", "server.crt", "server.key"}
		if !slices.Equal(names, want) {
			t.Errorf("--service-dir holds %v, want %v", names, want)
		}
		for _, name := range want {
			a, _ := os.ReadFile(filepath.Join(dir, name))
			b, _ := os.ReadFile(filepath.Join(svc, name))
			if string(a) != string(b) {
				t.Errorf("%s in --service-dir differs from the one in --dir", name)
			}
		}
		if err := os.RemoveAll(svc); err != nil {
			t.Fatal(err)
		}
	}
	if st, err := os.Stat(filepath.Join(dir, "ca.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("ca.key: %v, mode %v; want 0600", err, st.Mode().Perm())
	}
}

// TestCertsNATSCertificate: nats.crt serves NATS clients and routes: it
// verifies as a server and as a client (a route dials the other nodes with
// it, and verify: true checks it) for the compose nodes' names and
// localhost.
func TestCertsNATSCertificate(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "certs")
	var out, errOut strings.Builder
	if err := run(context.Background(), []string{"certs", "--dir", dir}, &out, &errOut, func(string) string { return "" }); err != nil {
		t.Fatalf("furrow certs: %v\n%s", err, errOut.String())
	}
	roots := x509.NewCertPool()
	roots.AddCert(readCert(t, filepath.Join(dir, "ca.crt")))
	nats := readCert(t, filepath.Join(dir, "nats.crt"))
	for _, host := range []string{"nats-1", "nats-2", "nats-3", "localhost", "127.0.0.1"} {
		for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
			if _, err := nats.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
				t.Errorf("nats.crt for %s, usage %v: %v", host, usage, err)
			}
		}
	}
	if _, err := serve.ClientTLS(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "nats.crt"), filepath.Join(dir, "nats.key")); err != nil {
		t.Errorf("nats key pair: %v", err)
	}
	if len(serve.RolesOf(nats)) != 0 {
		t.Errorf("nats.crt carries roles %v: a NATS node is nobody's client on gRPC", serve.RolesOf(nats))
	}
}
