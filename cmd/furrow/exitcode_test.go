package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// TestExitCodes: a script can tell a bad command line (2), a server that
// does not answer (3) and a name that does not exist (4) from any other
// failure (1), and `furrow -h` lists the codes. Every failure exited 1
// before. (A check that finds a problem, 5, is in TestFinanceCommands.)
func TestExitCodes(t *testing.T) {
	t.Parallel()
	var help bytes.Buffer
	if err := run(context.Background(), []string{"-h"}, &help, &help, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Exit codes:", "2  usage", "3  unreachable", "4  not found", "5  problem found"} {
		if !strings.Contains(help.String(), want) {
			t.Errorf("furrow -h does not list %q:\n%s", want, help.String())
		}
	}

	// A port nobody listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()

	s := startOpStack(t)
	s.register(t, "F1")
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"nosuch"}, exitUsage},
		{[]string{}, exitUsage},
		{[]string{"events", "list", "--bogus"}, exitUsage},
		{[]string{"events", "get"}, exitUsage},
		{[]string{"events", "get", "LEDGER", "zero"}, exitUsage},
		{[]string{"projections", "nosuch"}, exitUsage},
		{[]string{"ledger", "statement"}, exitUsage},
		{[]string{"dev", "extra"}, exitUsage},
		{[]string{"trace", "lot"}, exitUsage},
		{[]string{"streams", "ls", "--addr", closed, "--timeout", "2s"}, exitUnreachable},
		{[]string{"ledger", "trial-balance", "--addr", closed}, exitUnreachable},
		{[]string{"events", "get", "LEDGER", "999999"}, exitNotFound},
		{[]string{"projections", "status", "no_such_projection"}, exitNotFound},
		{[]string{"ledger", "statement", "--farmer", "F-nobody"}, exitNotFound},
	} {
		start := time.Now()
		out, err := s.cli(t, tc.args...)
		if got := exitCode(err); got != tc.want {
			t.Errorf("furrow %s: exit code %d (%v), want %d\n%s", strings.Join(tc.args, " "), got, err, tc.want, out)
		}
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("furrow %s took %v", strings.Join(tc.args, " "), d)
		}
	}
}
