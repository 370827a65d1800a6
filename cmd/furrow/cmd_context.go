package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
)

// A context names a Furrow deployment the client commands talk to: its
// gRPC address and the client certificate to call it with, as the nats
// CLI's and kubectl's contexts do. The contexts live in one file,
// contexts.json in $FURROW_CONFIG_DIR (default: the user's configuration
// directory, e.g. ~/.config/furrow), with the one in use.
//
// A context supplies defaults only: a flag (--addr, --tls-*) or a variable
// (FURROW_ADDR, FURROW_CLIENT_*) given for a call wins over it. It is
// chosen by --context NAME on any command, else FURROW_CONTEXT, else the
// one `furrow context use` selected.

// endpoint is one context's settings.
type endpoint struct {
	Addr    string `json:"addr"`
	TLSCA   string `json:"tls_ca,omitempty"`
	TLSCert string `json:"tls_cert,omitempty"`
	TLSKey  string `json:"tls_key,omitempty"`
}

// contextFile is contexts.json.
type contextFile struct {
	Current  string              `json:"current,omitempty"`
	Contexts map[string]endpoint `json:"contexts"`
}

// contextVars maps the variables a context supplies to its fields.
var contextVars = map[string]func(endpoint) string{
	"FURROW_ADDR":        func(e endpoint) string { return e.Addr },
	"FURROW_CLIENT_CA":   func(e endpoint) string { return e.TLSCA },
	"FURROW_CLIENT_CERT": func(e endpoint) string { return e.TLSCert },
	"FURROW_CLIENT_KEY":  func(e endpoint) string { return e.TLSKey },
}

// contextCommands are the commands that call a deployment's gRPC API:
// the ones a context applies to.
var contextCommands = map[string]bool{
	"ledger": true, "reconcile": true, "trace": true, "streams": true, "events": true, "projections": true, "dlq": true,
}

var contextName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

func contextPath(getenv func(string) string) (string, error) {
	dir := getenv("FURROW_CONFIG_DIR")
	if dir == "" {
		base, err := os.UserConfigDir()
		if err != nil {
			return "", fmt.Errorf("contexts: no configuration directory (set FURROW_CONFIG_DIR): %w", err)
		}
		dir = filepath.Join(base, "furrow")
	}
	return filepath.Join(dir, "contexts.json"), nil
}

// loadContexts reads contexts.json; a missing file holds no contexts.
func loadContexts(getenv func(string) string) (contextFile, string, error) {
	cf := contextFile{Contexts: map[string]endpoint{}}
	path, err := contextPath(getenv)
	if err != nil {
		return cf, "", err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return cf, path, nil
	}
	if err != nil {
		return cf, path, fmt.Errorf("contexts: %w", err)
	}
	if err := json.Unmarshal(b, &cf); err != nil {
		return cf, path, fmt.Errorf("contexts: %s: %w", path, err)
	}
	if cf.Contexts == nil {
		cf.Contexts = map[string]endpoint{}
	}
	return cf, path, nil
}

// save writes the file whole, readable by its owner only (it names
// private keys), through a temporary file so a crash leaves the old one.
func (cf contextFile) save(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("contexts: %w", err)
	}
	b, err := json.MarshalIndent(cf, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".contexts-*.json")
	if err != nil {
		return fmt.Errorf("contexts: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("contexts: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("contexts: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o600); err != nil {
		return fmt.Errorf("contexts: %w", err)
	}
	return os.Rename(tmp.Name(), path)
}

// withContext takes --context NAME out of args (anywhere after the
// command) and returns a getenv that answers the variables a context
// supplies from the chosen context when the environment does not set
// them. No context chosen, and none in use: getenv unchanged.
func withContext(args []string, getenv func(string) string) ([]string, func(string) string, error) {
	if len(args) == 0 || !contextCommands[args[0]] {
		return args, getenv, nil
	}
	var name string
	rest := args
	if len(args) > 1 {
		rest = []string{args[0]}
		for i := 1; i < len(args); i++ {
			a := args[i]
			switch {
			case a == "--context" || a == "-context":
				if i+1 >= len(args) {
					return nil, nil, usagef("--context needs a context name")
				}
				name = args[i+1]
				i++
			case strings.HasPrefix(a, "--context="), strings.HasPrefix(a, "-context="):
				name = a[strings.IndexByte(a, '=')+1:]
			case a == "--":
				rest = append(rest, args[i:]...)
				i = len(args)
			default:
				rest = append(rest, a)
			}
		}
	}
	if name == "" {
		name = getenv("FURROW_CONTEXT")
	}
	cf, path, err := loadContexts(getenv)
	if err != nil {
		if name == "" {
			return rest, getenv, nil // no context asked for: an unreadable file is no reason to fail
		}
		return nil, nil, err
	}
	if name == "" {
		name = cf.Current
	}
	if name == "" {
		return rest, getenv, nil
	}
	ep, ok := cf.Contexts[name]
	if !ok {
		return nil, nil, usagef("context %q does not exist (furrow context ls lists those in %s)", name, path)
	}
	return rest, func(k string) string {
		if v := getenv(k); v != "" {
			return v
		}
		if field, ok := contextVars[k]; ok {
			return field(ep)
		}
		return getenv(k)
	}, nil
}

const contextUsage = `Usage: furrow context <command> [flags]

Named deployments for the client commands (operator, finance, trace):
their gRPC address and client certificate, kept in contexts.json in
$FURROW_CONFIG_DIR (default ~/.config/furrow). A context supplies
defaults: --addr/--tls-* flags and FURROW_ADDR/FURROW_CLIENT_* variables
win. Choose one with --context NAME on any command, FURROW_CONTEXT, or
'furrow context use NAME'.

Commands:
  add NAME --addr HOST:PORT [--tls-ca F --tls-cert F --tls-key F] [--use]
             add a context (the same again is a no-op; --replace changes one)
  use NAME   use NAME from now on ('use --none': no context)
  ls         list the contexts (-o json); * marks the one in use
  show [NAME]  the settings of NAME or of the context in use (-o json)
  rm NAME    remove a context
`

func runContext(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, contextUsage)
		return usagef("furrow context: no command given")
	}
	cmd, args := args[0], args[1:]
	fs := newFlagSet("furrow context "+cmd, contextUsage, stderr)
	switch cmd {
	case "help", "-h", "--help":
		fmt.Fprint(stdout, contextUsage)
		return nil
	case "add":
		var ep endpoint
		fs.StringVar(&ep.Addr, "addr", "", "Furrow's gRPC address, HOST:PORT (required)")
		fs.StringVar(&ep.TLSCA, "tls-ca", "", "CA certificate that verifies Furrow's servers; turns TLS on")
		fs.StringVar(&ep.TLSCert, "tls-cert", "", "your client certificate")
		fs.StringVar(&ep.TLSKey, "tls-key", "", "key of --tls-cert")
		use := fs.Bool("use", false, "use the context from now on")
		replace := fs.Bool("replace", false, "change an existing context")
		name, err := oneName(fs, args)
		if err != nil {
			return err
		}
		if err := ep.check(); err != nil {
			return err
		}
		return updateContexts(getenv, stdout, func(cf *contextFile) (string, error) {
			old, exists := cf.Contexts[name]
			switch {
			case exists && old == ep:
				if *use {
					cf.Current = name
				}
				return fmt.Sprintf("context %s unchanged", name), nil
			case exists && !*replace:
				return "", usagef("context %s exists with other settings (--replace changes it)", name)
			}
			cf.Contexts[name] = ep
			if *use {
				cf.Current = name
			}
			verb := "added"
			if exists {
				verb = "replaced"
			}
			if *use {
				return fmt.Sprintf("context %s %s; in use", name, verb), nil
			}
			return fmt.Sprintf("context %s %s", name, verb), nil
		})
	case "use":
		none := fs.Bool("none", false, "use no context")
		if err := fs.Parse(args); err != nil {
			return asUsage(err)
		}
		if *none {
			if fs.NArg() != 0 {
				return usagef("furrow context use --none takes no name")
			}
			return updateContexts(getenv, stdout, func(cf *contextFile) (string, error) {
				cf.Current = ""
				return "no context in use", nil
			})
		}
		name, err := oneName(fs, fs.Args())
		if err != nil {
			return err
		}
		return updateContexts(getenv, stdout, func(cf *contextFile) (string, error) {
			if _, ok := cf.Contexts[name]; !ok {
				return "", callError{codeNotFound, fmt.Errorf("context %s does not exist", name)}
			}
			cf.Current = name
			return fmt.Sprintf("using context %s", name), nil
		})
	case "rm":
		name, err := oneName(fs, args)
		if err != nil {
			return err
		}
		return updateContexts(getenv, stdout, func(cf *contextFile) (string, error) {
			if _, ok := cf.Contexts[name]; !ok {
				return "", callError{codeNotFound, fmt.Errorf("context %s does not exist", name)}
			}
			delete(cf.Contexts, name)
			if cf.Current == name {
				cf.Current = ""
			}
			return fmt.Sprintf("context %s removed", name), nil
		})
	case "ls", "show":
		out := addOutput(fs, "json")
		if err := fs.Parse(args); err != nil {
			return asUsage(err)
		}
		cf, path, err := loadContexts(getenv)
		if err != nil {
			return err
		}
		if cmd == "ls" {
			if fs.NArg() != 0 {
				return usagef("furrow context ls takes no arguments")
			}
			return listContexts(stdout, cf, out.is("json"))
		}
		name := cf.Current
		if v := getenv("FURROW_CONTEXT"); v != "" {
			name = v
		}
		if fs.NArg() > 1 {
			return usagef("furrow context show: want [NAME]")
		}
		if fs.NArg() == 1 {
			name = fs.Arg(0)
		}
		if name == "" {
			return callError{codeNotFound, fmt.Errorf("no context in use (%s)", path)}
		}
		ep, ok := cf.Contexts[name]
		if !ok {
			return callError{codeNotFound, fmt.Errorf("context %s does not exist", name)}
		}
		if out.is("json") {
			b, _ := json.MarshalIndent(map[string]any{"name": name, "current": name == cf.Current, "endpoint": ep}, "", "  ")
			_, err := fmt.Fprintf(stdout, "%s\n", b)
			return err
		}
		fmt.Fprintf(stdout, "context   %s\naddr      %s\ntls-ca    %s\ntls-cert  %s\ntls-key   %s\n", name, ep.Addr, dash(ep.TLSCA), dash(ep.TLSCert), dash(ep.TLSKey))
		return nil
	}
	fmt.Fprint(stderr, contextUsage)
	return usagef("furrow context: unknown command %q", cmd)
}

// oneName parses fs's flags around exactly one context name.
func oneName(fs *flag.FlagSet, args []string) (string, error) {
	pos, err := interleaved(fs, args)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 {
		return "", usagef("%s: want one context NAME, got %q", fs.Name(), strings.Join(pos, " "))
	}
	if !contextName.MatchString(pos[0]) {
		return "", usagef("%s: context name %q: want letters, digits, '.', '_' or '-' (at most 63)", fs.Name(), pos[0])
	}
	return pos[0], nil
}

// check validates a context's settings and makes its files' paths
// absolute, so the context works from any directory.
func (ep *endpoint) check() error {
	if ep.Addr == "" {
		return usagef("--addr is required")
	}
	if _, port, err := net.SplitHostPort(ep.Addr); err != nil || port == "" {
		return usagef("--addr %q: want HOST:PORT", ep.Addr)
	}
	if (ep.TLSCert == "") != (ep.TLSKey == "") {
		return usagef("--tls-cert and --tls-key go together")
	}
	for _, f := range []*string{&ep.TLSCA, &ep.TLSCert, &ep.TLSKey} {
		if *f == "" {
			continue
		}
		abs, err := filepath.Abs(*f)
		if err != nil {
			return err
		}
		if _, err := os.Stat(abs); err != nil {
			return usagef("%s: %v", *f, err)
		}
		*f = abs
	}
	return nil
}

// updateContexts reads the file, applies change, writes it back (unless
// change fails) and prints change's message.
func updateContexts(getenv func(string) string, stdout io.Writer, change func(*contextFile) (string, error)) error {
	cf, path, err := loadContexts(getenv)
	if err != nil {
		return err
	}
	msg, err := change(&cf)
	if err != nil {
		return err
	}
	if err := cf.save(path); err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, msg)
	return err
}

func listContexts(w io.Writer, cf contextFile, asJSON bool) error {
	names := make([]string, 0, len(cf.Contexts))
	for n := range cf.Contexts {
		names = append(names, n)
	}
	slices.Sort(names)
	if asJSON {
		type row struct {
			Name    string `json:"name"`
			Current bool   `json:"current"`
			endpoint
		}
		rows := []row{}
		for _, n := range names {
			rows = append(rows, row{n, n == cf.Current, cf.Contexts[n]})
		}
		b, _ := json.MarshalIndent(rows, "", "  ")
		_, err := fmt.Fprintf(w, "%s\n", b)
		return err
	}
	if len(names) == 0 {
		_, err := fmt.Fprintln(w, "no contexts (furrow context add NAME --addr HOST:PORT adds one)")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\tNAME\tADDR\tTLS")
	for _, n := range names {
		ep, mark, tls := cf.Contexts[n], "", "plain"
		if n == cf.Current {
			mark = "*"
		}
		if ep.TLSCA != "" || ep.TLSCert != "" {
			tls = "mTLS"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", mark, n, ep.Addr, tls)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
