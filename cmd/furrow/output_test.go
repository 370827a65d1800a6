package main

import (
	"bufio"
	"encoding/json"
	"strings"
	"testing"
)

// TestOutputJSON: every command that prints a result over gRPC takes
// -o json and prints JSON (one document, or one per line for listings of
// events), and refuses a format it does not have as a usage error.
func TestOutputJSON(t *testing.T) {
	t.Parallel()
	s := startOpStack(t)
	s.register(t, "F1")
	s.buy(t, "F1")
	for _, args := range [][]string{
		{"streams", "ls"},
		{"streams", "info", "LEDGER"},
		{"events", "list", "PROCUREMENT"},
		{"events", "get", "PROCUREMENT", "1"},
		{"projections", "ls"},
		{"projections", "status"},
		{"dlq", "ls"},
		{"ledger", "trial-balance"},
		{"ledger", "statement", "--farmer", "F1"},
		{"trace", "farmer", "F1"},
	} {
		out, err := s.cli(t, append(args, "-o", "json")...)
		if err != nil {
			t.Errorf("furrow %s -o json: %v\n%s", strings.Join(args, " "), err, out)
			continue
		}
		if !json.Valid([]byte(out)) {
			// A listing may print one JSON document per line.
			sc := bufio.NewScanner(strings.NewReader(out))
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				if !json.Valid(sc.Bytes()) {
					t.Errorf("furrow %s -o json: not JSON:\n%s", strings.Join(args, " "), out)
					break
				}
			}
		}
		if strings.TrimSpace(out) == "" {
			t.Errorf("furrow %s -o json printed nothing", strings.Join(args, " "))
		}
	}
	for _, args := range [][]string{
		{"streams", "ls", "-o", "csv"},
		{"trace", "farmer", "F1", "-o", "yaml"},
		{"ledger", "trial-balance", "-o", "xml"},
	} {
		if _, err := s.cli(t, args...); exitCode(err) != exitUsage {
			t.Errorf("furrow %s: %v (exit %d), want a usage error", strings.Join(args, " "), err, exitCode(err))
		}
	}
}
