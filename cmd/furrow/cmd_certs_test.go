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
