package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/furrow/furrow/pkg/devcert"
	"github.com/furrow/furrow/pkg/serve"
)

const certsUsage = `Usage: furrow certs [flags]

Writes a throwaway certificate authority and the certificates to try the
production shape with mutual TLS (docker-compose.yml runs it first):

  ca.crt ca.key            the CA: services trust it for client certificates,
                           clients for the servers
  server.crt server.key    one server certificate for every --hosts name
  platform.crt/.key        a client with role platform (furrow://role/platform)
  finance.crt/.key         a client with role finance
  operator.crt/.key        a client with role operator
  console.crt/.key         the console's gateway: role gateway (it calls on
                           behalf of signed-in users) and the three roles

Keys are unencrypted and valid for a year. For production use your own CA
and issue certificates with the same role URIs (deploy/README.md). If
ca.crt exists the command keeps everything and writes nothing.

Flags:
`

// runCerts is `furrow certs`.
func runCerts(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fset := newFlagSet("furrow certs", certsUsage, stderr)
	dir := fset.String("dir", "certs", "directory to write the files to")
	hosts := fset.String("hosts", "localhost,127.0.0.1,procurement,brand-incubation,farmer-ledger",
		"comma-separated DNS names and IP addresses of the server certificate")
	if err := parseFlags(fset, args); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(*dir, "ca.crt")); err == nil {
		fmt.Fprintf(stdout, "%s already holds a CA; keeping its certificates\n", *dir)
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	var names []string
	for h := range strings.SplitSeq(*hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			names = append(names, h)
		}
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	ca, err := devcert.NewCA("Furrow development CA")
	if err != nil {
		return err
	}
	caKey, err := ca.KeyPEM()
	if err != nil {
		return err
	}
	files := map[string][]byte{"ca.crt": ca.CertPEM, "ca.key": caKey}
	server, err := ca.Server("furrow", names...)
	if err != nil {
		return err
	}
	files["server.crt"], files["server.key"] = server.CertPEM, server.KeyPEM
	for _, r := range []serve.Role{serve.RolePlatform, serve.RoleFinance, serve.RoleOperator} {
		c, err := ca.Client(string(r)+"-dev", serve.RoleURI(r))
		if err != nil {
			return err
		}
		files[string(r)+".crt"], files[string(r)+".key"] = c.CertPEM, c.KeyPEM
	}
	// The console's gateway calls on behalf of its signed-in users: the
	// gateway role, and every role a user of it may hold.
	gw, err := ca.Client("console-gateway", serve.RoleURI(serve.RoleGateway),
		serve.RoleURI(serve.RolePlatform), serve.RoleURI(serve.RoleFinance), serve.RoleURI(serve.RoleOperator))
	if err != nil {
		return err
	}
	files["console.crt"], files["console.key"] = gw.CertPEM, gw.KeyPEM
	for name, data := range files {
		// Readable by the services' unprivileged users in their containers:
		// these are development keys.
		if err := os.WriteFile(filepath.Join(*dir, name), data, 0o644); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "wrote a development CA and certificates to %s (server names: %s)\n", *dir, strings.Join(names, ", "))
	return nil
}
