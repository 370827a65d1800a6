package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/furrow/furrow/proto/furrow/admin/v1"

	"github.com/furrow/furrow/pkg/grpcx"
)

// The operator commands (streams, events, projections, dlq) share this
// file's plumbing: they talk to furrow.admin.v1.AdminService over gRPC at
// --addr, print tables for people or JSON (--json) for machines, and exit
// non-zero on failure. Streams and events are read through the server too,
// so one address is all an operator needs, and payloads come back decoded.

// opCommand is one operator subcommand.
type opCommand struct {
	name    string
	summary string
	run     func(ctx context.Context, o *opEnv, args []string) error
}

// opEnv is what an operator subcommand runs with.
type opEnv struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	// Set by the common flags.
	addr    string
	json    bool // -o json
	out     *outputFlag
	timeout time.Duration
	tls     clientTLS
}

// runGroup dispatches `furrow <group> <command> …`.
func runGroup(ctx context.Context, group, usage string, cmds []opCommand, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	help := func(w io.Writer) {
		fmt.Fprint(w, usage)
		fmt.Fprintf(w, "\nCommands:\n")
		for _, c := range cmds {
			fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
		}
		fmt.Fprintf(w, "\nRun 'furrow %s <command> -h' for its flags. Every command takes --addr\n(default %s, or FURROW_ADDR) and --json.\n", group, opDefaultAddr)
	}
	if len(args) == 0 {
		help(stderr)
		return usagef("furrow %s: no command given", group)
	}
	switch args[0] {
	case "help", "-h", "--help":
		help(stdout)
		return nil
	}
	for _, c := range cmds {
		if c.name == args[0] {
			o := &opEnv{stdout: stdout, stderr: stderr, getenv: getenv}
			return c.run(ctx, o, args[1:])
		}
	}
	help(stderr)
	return usagef("furrow %s: unknown command %q", group, args[0])
}

// opDefaultAddr is where the operator commands find the AdminService.
const opDefaultAddr = "127.0.0.1:7070"

// flags returns a flag set with the common flags; usage is printed by -h
// before the flags.
func (o *opEnv) flags(name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(o.stderr)
	fs.Usage = func() {
		fmt.Fprint(o.stderr, usage)
		fmt.Fprintln(o.stderr, "\nFlags:")
		fs.PrintDefaults()
	}
	addr := o.getenv("FURROW_ADDR")
	if addr == "" {
		addr = opDefaultAddr
	}
	fs.StringVar(&o.addr, "addr", addr, "address of Furrow's gRPC API [FURROW_ADDR]")
	o.out = addOutput(fs, "json")
	o.out.alias(fs, "json", "json")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "give up on the server after this long")
	o.tls.register(fs, o.getenv)
	return fs
}

// parse parses flags and positional arguments in any order (flags may
// follow the names they apply to) and checks the number of positionals.
func (o *opEnv) parse(fs *flag.FlagSet, args []string, minArgs, maxArgs int, names string) ([]string, error) {
	pos, err := interleaved(fs, args)
	if err != nil {
		return nil, err
	}
	o.json = o.out.is("json")
	if len(pos) < minArgs || len(pos) > maxArgs {
		fs.Usage()
		if names == "" {
			return nil, usagef("%s takes no arguments, got %q", fs.Name(), strings.Join(pos, " "))
		}
		return nil, usagef("%s: want %s, got %q", fs.Name(), names, strings.Join(pos, " "))
	}
	return pos, nil
}

// interleaved parses fs's flags wherever they stand among the positional
// arguments, which it returns in order.
func interleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, asUsage(err)
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// dial connects to the AdminService. Calls made with the returned context
// are bounded by --timeout.
func (o *opEnv) dial(ctx context.Context) (adminv1.AdminServiceClient, context.Context, func(), error) {
	conn, ctx, done, err := dialFurrow(ctx, o.addr, o.tls, o.timeout)
	if err != nil {
		return nil, nil, nil, err
	}
	return adminv1.NewAdminServiceClient(conn), ctx, done, nil
}

// dialFurrow connects the client commands to Furrow's gRPC API at addr,
// over mTLS when tls names certificates, retrying UNAVAILABLE
// (grpcx.RetryServiceConfig). Calls made with the returned context are
// bounded by timeout; done closes both.
func dialFurrow(ctx context.Context, addr string, tls clientTLS, timeout time.Duration) (*grpc.ClientConn, context.Context, func(), error) {
	creds, err := tls.dialOption()
	if err != nil {
		return nil, nil, nil, err
	}
	conn, err := grpc.NewClient(addr, creds, grpc.WithDefaultServiceConfig(grpcx.RetryServiceConfig))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	return conn, ctx, func() { cancel(); conn.Close() }, nil
}

// callErr turns a failed call into an error an operator can act on.
func (o *opEnv) callErr(what string, err error) error {
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.Unavailable:
			return callError{st.Code(), fmt.Errorf("%s: cannot reach Furrow at %s (is it running? --addr or FURROW_ADDR): %s", what, o.addr, st.Message())}
		case codes.Unimplemented:
			return callError{st.Code(), fmt.Errorf("%s: the server at %s has no AdminService (an older furrow?)", what, o.addr)}
		}
		// Server messages usually repeat the operation; say it once.
		return callError{st.Code(), fmt.Errorf("%s: %s: %s", what, st.Code(), strings.TrimPrefix(st.Message(), what+": "))}
	}
	return fmt.Errorf("%s: %w", what, err)
}

var opJSON = protojson.MarshalOptions{Multiline: true, Indent: "  ", UseProtoNames: true}

// printJSON writes m as indented JSON.
func (o *opEnv) printJSON(m proto.Message) error {
	b, err := opJSON.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(o.stdout, "%s\n", b)
	return err
}

// printJSONLine writes m as one line of JSON (for streams of events).
func (o *opEnv) printJSONLine(m proto.Message) error {
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(o.stdout, "%s\n", b)
	return err
}

func (o *opEnv) table() *tabwriter.Writer {
	return tabwriter.NewWriter(o.stdout, 0, 0, 2, ' ', 0)
}

// stamp renders a timestamp in UTC, "-" when absent.
func stamp(t *timestamppb.Timestamp) string {
	if t == nil {
		return "-"
	}
	return t.AsTime().UTC().Format("2006-01-02 15:04:05Z")
}

// ago renders how long ago t was, "-" when absent.
func ago(t *timestamppb.Timestamp) string {
	if t == nil {
		return "-"
	}
	return human(time.Since(t.AsTime())) + " ago"
}

// human renders a duration for people: 850ms, 12s, 4m10s, 4m, 3h20m, 3h,
// 2d4h. It rounds to the unit it shows last, before it picks the units, so
// that 59.6s is "1m", not "60s".
func human(d time.Duration) string {
	d = max(d, 0)
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	if s := d.Round(time.Second); s < time.Hour {
		m, sec := s/time.Minute, (s%time.Minute)/time.Second
		switch {
		case m == 0:
			return fmt.Sprintf("%ds", sec)
		case sec == 0:
			return fmt.Sprintf("%dm", m)
		}
		return fmt.Sprintf("%dm%ds", m, sec)
	}
	if m := d.Round(time.Minute); m < 48*time.Hour {
		h, mins := m/time.Hour, (m%time.Hour)/time.Minute
		if mins == 0 {
			return fmt.Sprintf("%dh", h)
		}
		return fmt.Sprintf("%dh%dm", h, mins)
	}
	days := d / (24 * time.Hour)
	return fmt.Sprintf("%dd%dh", days, (d-days*24*time.Hour)/time.Hour)
}

// dur renders a proto duration, "-" when absent or zero.
func dur(d *durationpb.Duration) string {
	if d == nil || d.AsDuration() == 0 {
		return "-"
	}
	return human(d.AsDuration())
}

// count renders n with thousands separators.
func count[T ~int | ~int32 | ~int64 | ~uint32 | ~uint64](n T) string {
	s := strconv.FormatUint(uint64(max(n, 0)), 10)
	if n < 0 {
		return "-" + count(-n)
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// seqArg parses a sequence argument.
func seqArg(what, s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return 0, usagef("%s %q: want a positive stream sequence", what, s)
	}
	return n, nil
}

// errUnhealthy makes a command exit non-zero after it printed its report.
var errUnhealthy = errors.New("unhealthy")

// plural renders "1 event", "3 events".
func plural(n uint64, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return count(n) + " " + word + "s"
}
