package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	adminv1 "github.com/furrow/furrow/proto/furrow/admin/v1"
)

const eventsUsage = `Usage: furrow events <command> [flags]

Read events, decoded: envelope (type, ids, correlation, actor, times) and
payload as JSON. The server decodes them, so the CLI needs no schemas.
`

var eventsCommands = []opCommand{
	{"list", "list events of a stream or of an aggregate (--aggregate ID)", runEventsList},
	{"get", "show one event: STREAM SEQ (or STREAM:SEQ)", runEventsGet},
	{"tail", "follow a stream as events are appended (Ctrl-C to stop)", runEventsTail},
}

func runEvents(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	return runGroup(ctx, "events", eventsUsage, eventsCommands, args, stdout, stderr, getenv)
}

func runEventsList(ctx context.Context, o *opEnv, args []string) error {
	fs := o.flags("furrow events list", `Usage: furrow events list [STREAM] [flags]

Lists events in stream order. Without STREAM (or --stream) it searches
every event stream. --aggregate ID selects one aggregate's events across
its event kinds (subjects <service>.<type>.ID.<kind>), e.g. a farmer's
history; --subject takes any subject filter (wildcards allowed).

Examples:
  furrow events list --aggregate F-1001
  furrow events list LEDGER --subject 'ledger.farmer.*.entry_posted' --limit 20
  furrow events list PROCUREMENT --after 1200 --json
`)
	stream := fs.String("stream", "", "the stream (or give it as the argument)")
	agg := fs.String("aggregate", "", "only this aggregate's events (its id)")
	subject := fs.String("subject", "", "only events on subjects matching this filter")
	after := fs.Uint64("after", 0, "start after this stream sequence")
	limit := fs.Int("limit", 100, "at most this many events (up to 10000)")
	payload := fs.Bool("payload", true, "print each event's payload under it")
	pos, err := o.parse(fs, args, 0, 1, "[STREAM]")
	if err != nil {
		return err
	}
	if len(pos) == 1 {
		*stream = pos[0]
	}
	c, ctx, done, err := o.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	res, err := c.ListEvents(ctx, &adminv1.ListEventsRequest{
		Stream: *stream, Aggregate: *agg, Subject: *subject, AfterSequence: *after, Limit: int32(*limit),
	})
	if err != nil {
		return o.callErr("list events", err)
	}
	if o.json {
		return o.printJSON(res)
	}
	if len(res.GetEvents()) == 0 {
		fmt.Fprintln(o.stdout, "no events")
		return nil
	}
	for _, ev := range res.GetEvents() {
		printEventLine(o.stdout, ev, *payload)
	}
	if res.GetTruncated() {
		last := res.GetEvents()[len(res.GetEvents())-1]
		fmt.Fprintf(o.stdout, "… more: --after %d (or a larger --limit)\n", last.GetSequence())
	}
	return nil
}

// printEventLine prints an event in two lines: where and what, then the
// payload.
func printEventLine(w io.Writer, ev *adminv1.Event, payload bool) {
	typ := ev.GetType()
	if typ == "" {
		typ = "(not a Furrow event)"
	}
	fmt.Fprintf(w, "%s:%d  %s  %s  %s", ev.GetStream(), ev.GetSequence(), stamp(ev.GetStoredAt()), ev.GetSubject(), typ)
	if ev.GetActor() != "" {
		fmt.Fprintf(w, "  actor=%s", ev.GetActor())
	}
	if ev.GetCorrelationId() != "" {
		fmt.Fprintf(w, "  correlation=%s", ev.GetCorrelationId())
	}
	fmt.Fprintln(w)
	if !payload {
		return
	}
	switch {
	case ev.GetPayloadJson() != "":
		fmt.Fprintf(w, "    %s\n", ev.GetPayloadJson())
	case ev.GetPayloadError() != "":
		fmt.Fprintf(w, "    (payload not decoded: %s; %d bytes)\n", ev.GetPayloadError(), len(ev.GetPayload()))
	}
}

func runEventsGet(ctx context.Context, o *opEnv, args []string) error {
	fs := o.flags("furrow events get", `Usage: furrow events get STREAM SEQ [flags]
       furrow events get STREAM:SEQ [flags]

Shows one event: every envelope field and header, and the payload as JSON.
`)
	pos, err := o.parse(fs, args, 1, 2, "STREAM SEQ")
	if err != nil {
		return err
	}
	stream, seqText := pos[0], ""
	if len(pos) == 2 {
		seqText = pos[1]
	} else if i := strings.LastIndexByte(stream, ':'); i > 0 {
		stream, seqText = stream[:i], stream[i+1:]
	}
	seq, err := seqArg("sequence", seqText)
	if err != nil {
		return err
	}
	c, ctx, done, err := o.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	res, err := c.GetEvent(ctx, &adminv1.GetEventRequest{Stream: stream, Sequence: seq})
	if err != nil {
		return o.callErr(fmt.Sprintf("event %s:%d", stream, seq), err)
	}
	if o.json {
		return o.printJSON(res)
	}
	printEvent(o, res.GetEvent())
	return nil
}

// printEvent prints an event in full.
func printEvent(o *opEnv, ev *adminv1.Event) {
	tw := o.table()
	for _, kv := range [][2]string{
		{"Position", fmt.Sprintf("%s:%d", ev.GetStream(), ev.GetSequence())},
		{"Subject", ev.GetSubject()},
		{"Type", fmt.Sprintf("%s (schema v%d)", ev.GetType(), ev.GetSchemaVersion())},
		{"Event id", ev.GetId()},
		{"Occurred", stamp(ev.GetOccurredAt())},
		{"Stored", stamp(ev.GetStoredAt())},
		{"Correlation", ev.GetCorrelationId()},
		{"Causation", ev.GetCausationId()},
		{"Actor", ev.GetActor()},
		{"Idempotency key", ev.GetIdempotencyKey()},
	} {
		if kv[1] != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
		}
	}
	_ = tw.Flush()
	fmt.Fprintln(o.stdout, "Payload:")
	switch {
	case ev.GetPayloadJson() != "":
		fmt.Fprintf(o.stdout, "  %s\n", ev.GetPayloadJson())
	default:
		fmt.Fprintf(o.stdout, "  (not decoded: %s; %d bytes)\n", ev.GetPayloadError(), len(ev.GetPayload()))
	}
	fmt.Fprintln(o.stdout, "Headers:")
	keys := make([]string, 0, len(ev.GetHeaders()))
	for k := range ev.GetHeaders() {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	tw = o.table()
	for _, k := range keys {
		fmt.Fprintf(tw, "  %s:\t%s\n", k, ev.GetHeaders()[k])
	}
	_ = tw.Flush()
}

func runEventsTail(ctx context.Context, o *opEnv, args []string) error {
	fs := o.flags("furrow events tail", `Usage: furrow events tail STREAM [flags]

Follows STREAM, printing events as they are appended, until Ctrl-C (or
--limit events). --last N starts with the last N events, --from-seq SEQ at a
sequence. With --json it prints one JSON object per line.

Examples:
  furrow events tail LEDGER --last 5
  furrow events tail PROCUREMENT --subject 'procurement.*.*.delivery_recorded'
`)
	subject := fs.String("subject", "", "only events on subjects matching this filter")
	from := fs.Uint64("from-seq", 0, "start at this stream sequence")
	fs.Var(uint64Alias{from}, "from", "the same as --from-seq")
	last := fs.Uint("last", 0, "start with the last N events")
	limit := fs.Int("limit", 0, "stop after this many events (0: follow until Ctrl-C)")
	payload := fs.Bool("payload", true, "print each event's payload under it")
	pos, err := o.parse(fs, args, 1, 1, "STREAM")
	if err != nil {
		return err
	}
	c, _, done, err := o.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	// A tail follows until Ctrl-C: --timeout bounds it only when given.
	timed := false
	fs.Visit(func(f *flag.Flag) { timed = timed || f.Name == "timeout" })
	var cancel context.CancelFunc
	if timed {
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
	} else {
		ctx, cancel = context.WithCancel(ctx)
	}
	defer cancel()
	st, err := c.TailEvents(ctx, &adminv1.TailEventsRequest{Stream: pos[0], Subject: *subject, FromSequence: *from, Last: uint32(*last)})
	if err != nil {
		return o.callErr("tail "+pos[0], err)
	}
	n := 0
	for *limit == 0 || n < *limit {
		res, err := st.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil // Ctrl-C, or the --timeout given
			}
			return o.callErr("tail "+pos[0], err)
		}
		n++
		if o.json {
			if err := o.printJSONLine(res.GetEvent()); err != nil {
				return err
			}
			continue
		}
		printEventLine(o.stdout, res.GetEvent(), *payload)
	}
	return nil
}
