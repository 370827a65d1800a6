package doctest

import (
	"regexp"
	"strings"
)

// Rule is one normalisation: every match of RE becomes Repl, in the
// documented output and in the actual output alike.
type Rule struct {
	Name string
	RE   *regexp.Regexp
	Repl string
}

// Rules is the whole normaliser, applied in this order to each line. What no
// rule covers must match exactly. Each rule names something that differs from
// run to run on a fresh server; keep the table short.
var Rules = []Rule{
	// Clock times: "2026-11-28T11:41:53.231266186Z", "2026-11-28 11:41:48",
	// "2026-11-28 11:47:09Z", "+08:00" offsets. Must run before "date".
	{"time", regexp.MustCompile(`\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?`), "<time>"},
	// Calendar days: walkthroughs work on the day they run (TODAY=$(date -u +%F)),
	// so statements, file names and periods carry that day.
	{"date", regexp.MustCompile(`\d{4}-\d{2}-\d{2}`), "<date>"},
	// Elapsed and remaining times: "514ms ago", "~2s left", "oldest waiting 3s",
	// "2m4s". A duration is one or more number+unit pairs.
	{"duration", regexp.MustCompile(`~?\b(\d+(\.\d+)?(h|ms|µs|us|ns|m|s))+\b`), "<dur>"},
	// Rates: "2,344/s".
	{"rate", regexp.MustCompile(`\b\d[\d,]*(\.\d+)?/s\b`), "<rate>/s"},
	// Sizes of stored messages ("2.9 KiB"): they grow with headers that carry
	// times and trace context.
	{"size", regexp.MustCompile(`\b\d+(\.\d+)? (B|KiB|MiB|GiB)\b`), "<size>"},
	// Durable consumer names chosen by the server (NUIDs such as
	// "7lkK6xT3lJKAANfWEyJcW0_1").
	{"consumer", regexp.MustCompile(`\b[0-9A-Za-z]{22}_\d+\b`), "<consumer>"},
	// Protobuf's JSON encoder (grpcurl's replies, decoded event payloads) adds
	// an extra space after every comma of one-line output, or after every
	// "key": of indented output, or not, depending on a hash of the binary:
	// it changes with every build of furrow, on purpose.
	{"protojson-comma", regexp.MustCompile(`([\]}"\deul]), (["{\[\d-])`), "$1,$2"},
	{"protojson-colon", regexp.MustCompile(`^(\s*"[^"]*"):  `), "$1: "},
	// Table padding: a column is as wide as its widest cell, and normalised
	// cells change widths, so any run of two or more blanks after a cell is
	// two blanks. Leading indentation is kept.
	{"padding", regexp.MustCompile(`(\S) {2,}`), "$1  "},
}

// Normalise applies Rules to every line of s and drops trailing blanks on
// each line and trailing empty lines.
func Normalise(s string) []string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		for _, r := range Rules {
			l = r.RE.ReplaceAllString(l, r.Repl)
		}
		lines[i] = strings.TrimRight(l, " \t")
	}
	for len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}
