package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestContexts: a named context supplies the address (and certificates)
// of the client commands; flags and variables win over it; managing
// contexts is idempotent, refuses bad input with a usage error, and keeps
// the file private.
func TestContexts(t *testing.T) {
	t.Parallel()
	s := startOpStack(t)
	dir := t.TempDir()
	env := map[string]string{"FURROW_CONFIG_DIR": dir}
	cli := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(context.Background(), args, &out, &out, func(k string) string { return env[k] })
		return out.String(), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := cli(args...)
		if err != nil {
			t.Fatalf("furrow %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	// No context, no FURROW_ADDR: the default address, where nothing listens.
	env["FURROW_ADDR"] = "127.0.0.1:1"
	if _, err := cli("streams", "ls", "--timeout", "2s"); exitCode(err) != exitUnreachable {
		t.Fatalf("streams ls at a dead address: %v, want unreachable", err)
	}
	delete(env, "FURROW_ADDR")

	if out := must("context", "ls"); !strings.Contains(out, "no contexts") {
		t.Errorf("context ls with none: %q", out)
	}
	if out := must("context", "ls", "-o", "json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("context ls -o json with none: %q, want []", out)
	}
	if out := must("context", "add", "dev", "--addr", s.st.GRPCAddr()); !strings.Contains(out, "context dev added") {
		t.Errorf("add: %q", out)
	}
	if out := must("context", "add", "dev", "--addr", s.st.GRPCAddr()); !strings.Contains(out, "unchanged") {
		t.Errorf("add again: %q, want unchanged", out)
	}
	must("context", "add", "dead", "--addr", "127.0.0.1:1")
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"context", "add", "dev", "--addr", "127.0.0.1:2"}, exitUsage}, // exists, other settings
		{[]string{"context", "add", "bad name", "--addr", "127.0.0.1:2"}, exitUsage},
		{[]string{"context", "add", "x", "--addr", "no-port"}, exitUsage},
		{[]string{"context", "add", "x"}, exitUsage},
		{[]string{"context", "add", "x", "--addr", "h:1", "--tls-cert", "a.crt"}, exitUsage},
		{[]string{"context", "add", "x", "--addr", "h:1", "--tls-ca", filepath.Join(dir, "missing.crt")}, exitUsage},
		{[]string{"context", "use", "nosuch"}, exitNotFound},
		{[]string{"context", "rm", "nosuch"}, exitNotFound},
		{[]string{"streams", "ls", "--context", "nosuch"}, exitUsage},
		{[]string{"context", "frob"}, exitUsage},
	} {
		if out, err := cli(tc.args...); exitCode(err) != tc.want {
			t.Errorf("furrow %s: %v (exit %d), want exit %d\n%s", strings.Join(tc.args, " "), err, exitCode(err), tc.want, out)
		}
	}

	// --context on the command line.
	if out := must("streams", "ls", "--context", "dev"); !strings.Contains(out, "LEDGER") {
		t.Errorf("streams ls --context dev:\n%s", out)
	}
	// The context in use.
	must("context", "use", "dead")
	if _, err := cli("streams", "ls", "--timeout", "2s"); exitCode(err) != exitUnreachable {
		t.Errorf("streams ls with context dead in use: %v, want unreachable", err)
	}
	must("context", "use", "dev")
	if out := must("events", "list", "LEDGER"); out == "" {
		t.Error("events list with context dev in use printed nothing")
	}
	// FURROW_CONTEXT beats the one in use; --addr and FURROW_ADDR beat both.
	env["FURROW_CONTEXT"] = "dead"
	if _, err := cli("streams", "ls", "--timeout", "2s"); exitCode(err) != exitUnreachable {
		t.Errorf("FURROW_CONTEXT=dead: %v, want unreachable", err)
	}
	must("streams", "ls", "--addr", s.st.GRPCAddr())
	env["FURROW_ADDR"] = s.st.GRPCAddr()
	must("streams", "ls")
	delete(env, "FURROW_ADDR")
	delete(env, "FURROW_CONTEXT")

	var rows []struct {
		Name    string `json:"name"`
		Current bool   `json:"current"`
		Addr    string `json:"addr"`
	}
	if err := json.Unmarshal([]byte(must("context", "ls", "-o", "json")), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Name != "dead" || rows[1].Name != "dev" || !rows[1].Current || rows[1].Addr != s.st.GRPCAddr() {
		t.Errorf("context ls -o json: %+v", rows)
	}
	if out := must("context", "show"); !strings.Contains(out, s.st.GRPCAddr()) {
		t.Errorf("context show:\n%s", out)
	}
	fi, err := os.Stat(filepath.Join(dir, "contexts.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("contexts.json: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	must("context", "rm", "dev")
	if out := must("context", "ls"); strings.Contains(out, "dev") || strings.Contains(out, "*") || !strings.Contains(out, "dead") {
		t.Errorf("context ls after removing dev, the context in use:\n%s", out)
	}
	if _, err := cli("context", "show"); exitCode(err) != exitNotFound {
		t.Errorf("context show with none in use: %v, want not found", err)
	}
}
