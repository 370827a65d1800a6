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
                           clients for the servers (ca.key: mode 0600)
  server.crt server.key    one server certificate for every --hosts name
  nats.crt nats.key        the NATS nodes' certificate, for clients and routes
                           (server and client authentication), for every
                           --nats-hosts name
  platform.crt/.key        a client with role platform (furrow://role/platform)
  finance.crt/.key         a client with role finance
  operator.crt/.key        a client with role operator
  console.crt/.key         the console's gateway: role gateway (it calls on
                           behalf of signed-in users) and the three roles

With --service-dir it also copies what the services and the NATS nodes
mount (ca.crt, server.crt/.key, nats.crt/.key) to that directory: no CA key
and no client key, so a service cannot issue itself a role or act as an
operator. Keep --dir where only you (the certs step) can read it.

Keys are unencrypted and valid for a year. For production use your own CA
and issue certificates with the same role URIs (deploy/README.md). If
ca.crt exists the command keeps everything and writes nothing to --dir.

Flags:
`

// serviceFiles are what a service or NATS node needs of the files runCerts
// writes: never a CA or client private key.
var serviceFiles = []string{"ca.crt", "server.crt", "server.key", "nats.crt", "nats.key"}

// runCerts is `furrow certs`.
func runCerts(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fset := newFlagSet("furrow certs", certsUsage, stderr)
	dir := fset.String("dir", "certs", "directory to write the files to")
	serviceDir := fset.String("service-dir", "", "also copy the files services and NATS nodes need (no CA or client key) to this directory")
	hosts := fset.String("hosts", "localhost,127.0.0.1,procurement,brand-incubation,farmer-ledger",
		"comma-separated DNS names and IP addresses of the server certificate")
	natsHosts := fset.String("nats-hosts", "localhost,127.0.0.1,nats-1,nats-2,nats-3",
		"comma-separated DNS names and IP addresses of the NATS certificate")
	if err := parseFlags(fset, args); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(*dir, "ca.crt")); err == nil {
		fmt.Fprintf(stdout, "%s already holds a CA; keeping its certificates\n", *dir)
		return copyServiceFiles(*dir, *serviceDir, stdout)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	names, natsNames := splitHosts(*hosts), splitHosts(*natsHosts)
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
	files := map[string][]byte{"ca.crt": ca.CertPEM}
	server, err := ca.Server("furrow", names...)
	if err != nil {
		return err
	}
	files["server.crt"], files["server.key"] = server.CertPEM, server.KeyPEM
	nats, err := ca.Node("nats", natsNames...)
	if err != nil {
		return err
	}
	files["nats.crt"], files["nats.key"] = nats.CertPEM, nats.KeyPEM
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
	// Only the CA's owner reads its key. The others stay readable by the
	// services' unprivileged users in their containers: these are
	// development keys.
	if err := os.WriteFile(filepath.Join(*dir, "ca.key"), caKey, 0o600); err != nil {
		return err
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(*dir, name), data, 0o644); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "wrote a development CA and certificates to %s (server names: %s; NATS names: %s)\n",
		*dir, strings.Join(names, ", "), strings.Join(natsNames, ", "))
	return copyServiceFiles(*dir, *serviceDir, stdout)
}

// copyServiceFiles copies serviceFiles from dir to serviceDir (if set).
// A file missing from dir (written by an older furrow certs) is skipped.
func copyServiceFiles(dir, serviceDir string, stdout io.Writer) error {
	if serviceDir == "" {
		return nil
	}
	if err := os.MkdirAll(serviceDir, 0o755); err != nil {
		return err
	}
	var copied []string
	for _, name := range serviceFiles {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(serviceDir, name), data, 0o644); err != nil {
			return err
		}
		copied = append(copied, name)
	}
	fmt.Fprintf(stdout, "copied %s to %s\n", strings.Join(copied, ", "), serviceDir)
	return nil
}

// splitHosts splits a comma-separated list, dropping blanks.
func splitHosts(list string) []string {
	var names []string
	for h := range strings.SplitSeq(list, ",") {
		if h = strings.TrimSpace(h); h != "" {
			names = append(names, h)
		}
	}
	return names
}
