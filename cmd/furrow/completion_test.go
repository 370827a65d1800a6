package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestMain lets the test binary stand in for furrow in a shell: with
// FURROW_TEST_AS_CLI=1 it runs its arguments as furrow would.
func TestMain(m *testing.M) {
	if os.Getenv("FURROW_TEST_AS_CLI") == "1" {
		err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
		if err != nil {
			os.Stderr.WriteString("furrow: " + err.Error() + "\n")
		}
		os.Exit(exitCode(err))
	}
	os.Exit(m.Run())
}

// TestCompletionTree: every command and subcommand the completion offers
// answers -h (so none is misspelled), and every command furrow -h lists
// is offered.
func TestCompletionTree(t *testing.T) {
	t.Parallel()
	var help bytes.Buffer
	if err := run(context.Background(), []string{"-h"}, &help, &help, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	tree := commandTree()
	for _, line := range strings.Split(help.String(), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && strings.HasPrefix(line, "  ") && !strings.HasPrefix(line, "   ") && !strings.HasPrefix(f[0], "-") && f[0] != "furrow" {
			if _, ok := tree[f[0]]; !ok && f[0] != "0" && len(f[0]) > 1 {
				t.Errorf("furrow -h lists %q; the completion does not offer it", f[0])
			}
		}
	}
	for cmd, subs := range tree {
		if cmd == "completion" {
			subs = nil // its words are shells, not commands
		}
		for _, sub := range append([]string{""}, subs...) {
			args := []string{cmd}
			if sub != "" {
				args = append(args, sub)
			}
			if cmd == "admin" && sub == "streams" {
				args = append(args, "apply")
			}
			if cmd == "trace" && sub != "" {
				args = append(args, "X")
			}
			args = append(args, "-h")
			var out bytes.Buffer
			err := run(context.Background(), args, &out, &out, func(string) string { return "" })
			if code := exitCode(err); err != nil && code != 0 && !strings.Contains(err.Error(), "help requested") {
				t.Errorf("furrow %s: %v (exit %d)\n%s", strings.Join(args, " "), err, code, out.String())
			}
		}
	}
}

// TestBashCompletion sources the script in bash and completes as a user
// would press tab: commands, subcommands, a command's flags (read from its
// -h) and context names.
func TestBashCompletion(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	if err := os.Symlink(self, filepath.Join(bin, "furrow")); err != nil {
		t.Fatal(err)
	}
	config := t.TempDir()
	env := append(os.Environ(), "FURROW_TEST_AS_CLI=1", "FURROW_CONFIG_DIR="+config, "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	var out bytes.Buffer
	if err := run(context.Background(), []string{"context", "add", "prod-east", "--addr", "10.0.0.1:7070"}, &out, &out,
		func(k string) string { return map[string]string{"FURROW_CONFIG_DIR": config}[k] }); err != nil {
		t.Fatal(err)
	}
	script, err := completionScript("bash")
	if err != nil {
		t.Fatal(err)
	}
	complete := func(line string) []string {
		t.Helper()
		words := strings.Fields(line)
		if strings.HasSuffix(line, " ") {
			words = append(words, "")
		}
		var quoted []string
		for _, w := range words {
			quoted = append(quoted, "'"+w+"'")
		}
		cmd := exec.Command("bash", "--norc", "--noprofile", "-c", script+`
COMP_WORDS=(`+strings.Join(quoted, " ")+`); COMP_CWORD=`+strconv.Itoa(len(words)-1)+`
_furrow; printf '%s\n' "${COMPREPLY[@]}"`)
		cmd.Env = env
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("complete %q: %v\n%s", line, err, b)
		}
		return strings.Fields(string(b))
	}
	for _, tc := range []struct {
		line string
		want []string
	}{
		{"furrow pro", []string{"projections"}},
		{"furrow projections re", []string{"rebuild", "resume"}},
		{"furrow ledger statement --fa", []string{"--farmer"}},
		{"furrow streams ls -", []string{"--addr", "--json", "-o", "--timeout", "--tls-ca"}},
		{"furrow admin streams ap", []string{"apply"}},
		{"furrow events list --context ", []string{"prod-east"}},
		{"furrow completion ", []string{"bash", "zsh"}},
	} {
		got := complete(tc.line)
		for _, w := range tc.want {
			if !slices.Contains(got, w) {
				t.Errorf("complete %q: %v, want it to offer %s", tc.line, got, w)
			}
		}
	}
	if _, err := completionScript("fish"); exitCode(err) != exitUsage {
		t.Errorf("completion fish: %v, want a usage error", err)
	}
}
