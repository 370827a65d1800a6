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

// TestTimeAndSequenceFlags: times are --since/--until and sequences
// --from-seq everywhere; the older spellings (--from, --to, --from-time)
// still work and mean the same.
func TestTimeAndSequenceFlags(t *testing.T) {
	t.Parallel()
	s := startOpStack(t)
	s.register(t, "F1")
	s.buy(t, "F1")
	for _, pair := range [][2][]string{
		{{"events", "tail", "PROCUREMENT", "--from-seq", "2", "--limit", "1", "-o", "json"}, {"events", "tail", "PROCUREMENT", "--from", "2", "--limit", "1", "-o", "json"}},
		{{"ledger", "statement", "--farmer", "F1", "--since", "2000-01-01", "--until", "2099-01-01", "-o", "csv"}, {"ledger", "statement", "--farmer", "F1", "--from", "2000-01-01", "--to", "2099-01-01", "-o", "csv"}},
		{{"trace", "farmer", "F1", "--since", "2000-01", "-o", "json"}, {"trace", "farmer", "F1", "--from", "2000-01", "-o", "json"}},
	} {
		now, before := s.mustCLI(t, pair[0]...), s.mustCLI(t, pair[1]...)
		if now != before || strings.TrimSpace(now) == "" {
			t.Errorf("furrow %s and furrow %s differ:\n%s\n---\n%s", strings.Join(pair[0], " "), strings.Join(pair[1], " "), now, before)
		}
	}
	for _, args := range [][]string{
		{"ledger", "statement", "--farmer", "F1", "--since", "yesterday"},
		{"events", "tail", "PROCUREMENT", "--from", "first"},
		{"projections", "rebuild", "procurement_purchases", "--since", "last week"},
	} {
		if _, err := s.cli(t, args...); exitCode(err) != exitUsage {
			t.Errorf("furrow %s: %v (exit %d), want a usage error", strings.Join(args, " "), err, exitCode(err))
		}
	}
}
