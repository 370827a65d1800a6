package main

import (
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// outputFlag is -o, the output format of every command that prints a
// result: table (for people, the default) or one of the machine formats
// the command has (json, csv).
type outputFlag struct {
	value   string
	formats []string
}

// addOutput registers -o on fs with table and the given formats.
func addOutput(fs *flag.FlagSet, formats ...string) *outputFlag {
	o := &outputFlag{value: "table", formats: append([]string{"table"}, formats...)}
	fs.Var(o, "o", "output format: "+strings.Join(o.formats, ", "))
	return o
}

// alias registers an older spelling: a boolean flag (--json, --csv)
// meaning -o format, or, with an empty format, a flag (--format) that
// takes the same values as -o.
func (o *outputFlag) alias(fs *flag.FlagSet, name, format string) {
	if format == "" {
		fs.Var(o, name, "the same as -o")
		return
	}
	fs.BoolFunc(name, "the same as -o "+format, func(string) error { o.value = format; return nil })
}

func (o *outputFlag) String() string {
	if o == nil {
		return ""
	}
	return o.value
}

// Set implements flag.Value.
func (o *outputFlag) Set(v string) error {
	if !slices.Contains(o.formats, v) {
		return fmt.Errorf("%q: want %s", v, strings.Join(o.formats, ", "))
	}
	o.value = v
	return nil
}

// is reports whether the chosen format is f.
func (o *outputFlag) is(f string) bool { return o.value == f }

// stringAlias and uint64Alias give a flag an older name: times are
// --since/--until and sequences --from-seq in every command, and the
// names some commands used before (--from, --to, --from-time) still work.
type stringAlias struct{ p *string }

func (a stringAlias) String() string {
	if a.p == nil {
		return ""
	}
	return *a.p
}
func (a stringAlias) Set(v string) error { *a.p = v; return nil }

type uint64Alias struct{ p *uint64 }

func (a uint64Alias) String() string {
	if a.p == nil {
		return ""
	}
	return strconv.FormatUint(*a.p, 10)
}
func (a uint64Alias) Set(v string) error {
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return fmt.Errorf("%q: want a stream sequence", v)
	}
	*a.p = n
	return nil
}
